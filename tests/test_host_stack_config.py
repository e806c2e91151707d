"""The stack keys that say how `fjord up` reaches and configures the hosts: `fjord:hostVars` and `fjord:hostTags`.

Under the mocks: the HostConfig each unit registers carries the host variables in its inventory and the tags as
an input; the provider's check and its playbook run take the tags. Through the CLI: a wrong value is rejected
(exit 1) before the engine would start. The engine run on real hosts is tests/test_engine_hosts.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pulumi
import pytest
from typer.testing import CliRunner

from fjord.cli.main import app
from fjord.components.site import Site, SiteArgs
from fjord.hosts.stack_config import stack_host_tags, stack_host_vars
from fjord.providers.playbook import (
    PACKED,
    HostConfigProvider,
    check_inputs,
    playbook_tags,
    unpack_inventory,
    update_runs,
)
from fjord.sizing.site import size_site
from fjord.spec.errors import SiteError
from fjord.spec.load import default_site, load_site

from .test_cli import write_stack

HOST = "dev-h100-su000-n001"
CONNECT = {HOST: {"ansible_host": "10.9.9.9", "ansible_port": 2222}}
HOST_CONFIG = "pulumi-python:dynamic/hosts:HostConfig"
runner = CliRunner()


@pytest.fixture
def dev() -> tuple[Any, Any]:
    site = load_site(default_site(), "dev")
    return site, size_site(site)


def test_host_vars_inline_as_pulumi_hands_them_or_from_a_file(tmp_path: Path, dev: tuple[Any, Any]) -> None:
    site, size = dev
    assert stack_host_vars(None, site, size, tmp_path) == {}
    assert stack_host_vars(CONNECT, site, size, tmp_path) == CONNECT  # as the stack file holds it
    assert stack_host_vars(json.dumps(CONNECT), site, size, tmp_path) == CONNECT  # as Pulumi hands it: JSON text
    (tmp_path / "hosts.json").write_text(json.dumps(CONNECT), encoding="utf-8")
    assert stack_host_vars("hosts.json", site, size, tmp_path) == CONNECT  # relative to the stacks folder
    assert stack_host_vars(json.dumps("hosts.json"), site, size, tmp_path) == CONNECT


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ({"web-01": {}}, "fjord:hostVars: 'web-01' is no host of site dev"),
        ({HOST: 3}, f"fjord:hostVars: '{HOST}': 3 is a number; allowed: an object of variables"),
        ({HOST: {"ansible_password": "hunter2"}}, f"fjord:hostVars.{HOST}.ansible_password: holds a password"),
        ({HOST: {"ansible_become_pass": "x"}}, "stored in the state in plain text"),
        ("missing.json", "fjord:hostVars: cannot be read (No such file or directory)"),
    ],
)
def test_bad_host_vars_are_named(tmp_path: Path, dev: tuple[Any, Any], value: Any, says: str) -> None:
    site, size = dev
    with pytest.raises(SiteError) as caught:
        stack_host_vars(value, site, size, tmp_path)
    assert says in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_host_tags() -> None:
    assert stack_host_tags(None) == ()
    assert stack_host_tags(["base"]) == ("base",)
    assert stack_host_tags('["base", "dcgm"]') == ("base", "dcgm")  # a list as Pulumi hands it: JSON text
    assert stack_host_tags("base, dcgm") == ("base", "dcgm")
    with pytest.raises(SiteError, match=r"fjord:hostTags\[0\]: is no tag name"):
        stack_host_tags(["base;rm"])


def test_known_tags_come_from_the_playbooks() -> None:
    from fjord.adapters.playbooks import default_playbooks_dir

    tags = playbook_tags(default_playbooks_dir())
    assert {"base", "dcgm", "slurm", "gpu", "always"} <= tags
    news = {"site": "dev", "group": "su_h100_000", "playbook": "site.yml", "tags": ["base", "bsae"]}
    problems = dict(check_inputs(news))
    assert list(problems) == ["tags[1]"]
    assert problems["tags[1]"].startswith("'bsae' is no tag of the playbooks; allowed: tags of the playbooks in ")
    assert "base" in problems["tags[1]"]


def test_host_config_inputs_under_the_mocks() -> None:
    """The HostConfig's inputs as the program registers them: the host's variables win over the generated ones,
    the tags are an input; without tags the input is absent (a stack's existing HostConfig sees no change)."""
    spec = load_site(default_site(), "dev")
    seen: dict[str, Any] = {}

    @pulumi.runtime.test
    def run() -> Any:
        site = Site("dev", SiteArgs(spec=spec, size=size_site(spec), host_vars=CONNECT, host_tags=("base",)))
        plain = Site("plain", SiteArgs(spec=spec, size=size_site(spec)))
        (tagged,) = [u for c in site.clusters.values() for u in c.host_configs]
        (untagged,) = [u for c in plain.clusters.values() for u in c.host_configs]
        seen["untagged"] = hasattr(untagged, "tags")
        return pulumi.Output.all(tagged.inventory, tagged.tags, tagged.hosts).apply(lambda v: seen.update(tagged=v))

    run()
    inventory, tags, hosts = seen["tagged"]
    assert inventory.startswith(PACKED)  # registered packed (docs/performance.md); the digest is the JSON's
    record = json.loads(unpack_inventory(inventory))["all"]["children"]["su_h100_000"]["hosts"][HOST]
    assert (record["ansible_host"], record["ansible_port"]) == ("10.9.9.9", 2222)
    assert tags == ["base"]
    assert seen["untagged"] is False
    # A change of tags reruns the playbook; the same tags do not.
    news = {"playbook": "site.yml", "inventory": inventory, "tags": tags, "hosts": hosts}
    olds = news | {"failed_hosts": [], "unreachable_hosts": []}
    assert HostConfigProvider().diff("x", olds, news).changes is False
    assert HostConfigProvider().diff("x", olds, news | {"tags": ["base", "dcgm"]}).changes is True
    (rerun,) = update_runs(olds, news | {"tags": ["base", "dcgm"]})
    assert (rerun.playbook, rerun.limit) == ("site.yml", tuple(hosts))


def test_the_provider_runs_only_the_tags(monkeypatch: pytest.MonkeyPatch) -> None:
    """create and read (refresh's check mode) hand the tags to ansible; the drained rollout never gets them."""
    from fjord.adapters import ansible
    from fjord.adapters.ansible import PlaybookResult

    calls: list[dict[str, Any]] = []

    def fake_run(playbook: str, inventory: Any, **kw: Any) -> PlaybookResult:
        calls.append({"playbook": playbook, **kw})
        return PlaybookResult(playbook, "successful", 0, {}, 0.1)

    monkeypatch.setattr(ansible, "run_playbook", fake_run)
    props = {"site": "dev", "group": "g", "playbook": "site.yml", "inventory": "{}", "tags": ["base"]}
    HostConfigProvider().create(dict(props))
    HostConfigProvider().read("dev/g", dict(props))
    assert [(c["playbook"], tuple(c["tags"]), c.get("check", False)) for c in calls] == [
        ("site.yml", ("base",), False),
        ("site.yml", ("base",), True),
    ]


def test_the_cli_rejects_bad_host_keys_before_the_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("fjord.engine.run", lambda *a, **k: pytest.fail("the engine ran"))
    for extra, says in (
        ({"fjord:hostVars": {"web-01": {}}}, "fjord:hostVars: 'web-01' is no host of site dev"),
        ({"fjord:hostTags": ["bsae"]}, "fjord:hostTags[0]: is no tag of the playbooks; allowed: tags of the"),
        ({"fjord:hostVars": {HOST: {"ansible_ssh_pass": "hunter2"}}}, "ansible_ssh_pass: holds a password"),
    ):
        write_stack(tmp_path, "lab", default_site() | {"name": "dev"}, extra)
        result = runner.invoke(app, ["preview", "lab", "--stacks-dir", str(tmp_path), "--backend", "file:///x"])
        assert result.exit_code == 1, result.output
        assert says in result.stderr
        assert "hunter2" not in result.output


def test_validate_rejects_what_up_would(tmp_path: Path) -> None:
    """A stack file whose host keys `fjord up` refuses does not pass `fjord validate` either; a good one does."""
    for extra, says in (
        ({"fjord:hostVars": {"web-01": {}}}, "fjord:hostVars: 'web-01' is no host of site dev"),
        ({"fjord:hostTags": ["bsae"]}, "fjord:hostTags[0]: is no tag of the playbooks; allowed: tags of the"),
        ({"fjord:hostVars": {HOST: {"ansible_ssh_pass": "hunter2"}}}, "ansible_ssh_pass: holds a password"),
    ):
        write_stack(tmp_path, "lab", default_site() | {"name": "dev"}, extra)
        result = runner.invoke(app, ["validate", "lab", "--stacks-dir", str(tmp_path)])
        assert result.exit_code == 1, result.output
        assert says in result.stderr
        assert "hunter2" not in result.output
    write_stack(tmp_path, "lab", default_site() | {"name": "dev"}, {"fjord:hostTags": ["base"]})
    result = runner.invoke(app, ["validate", "lab", "--stacks-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
