"""The `fjord` command line on awkward input: text that looks like rich markup, JSON under FORCE_COLOR, a render
that fails half-way, `--host-vars` of the wrong shape, and small option checks. Each is rejected (or printed)
with a one-line reason that shows the input verbatim, never a traceback."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from fjord.cli.main import EXIT_REJECTED, app

from .conftest import STACKS

runner = CliRunner()


def one_line(result: Result) -> str:
    """The only line a rejected command printed on stderr (a traceback or a second line fails the test)."""
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == EXIT_REJECTED, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


# --- user text is never read as rich markup ---------------------------------------------------------------


@pytest.mark.parametrize("stack", ["[/x]", "uk[bold]", "[secret]", "[not shown]", "[hidden]", "[red]a[/red]"])
def test_stack_names_that_look_like_markup_print_verbatim(stack: str) -> None:
    line = one_line(runner.invoke(app, ["validate", stack, "--stacks-dir", str(STACKS)]))
    assert f"Pulumi.{stack}.yaml" in line
    assert "allowed stacks: " in line


def test_a_value_whose_allowed_text_holds_brackets_is_reported(tmp_path: Path) -> None:
    """The registry's allowed form is `host[:port][/path]`: a wrong registry once crashed the report."""
    text = (STACKS / "Pulumi.narvik.yaml").read_text(encoding="utf-8")
    assert 'registry: "registry.narvik.fjord.example/nvidia"' in text
    (tmp_path / "Pulumi.n2.yaml").write_text(
        text.replace('registry: "registry.narvik.fjord.example/nvidia"', 'registry: "https://registry.x"'),
        encoding="utf-8",
    )
    line = one_line(runner.invoke(app, ["validate", "n2", "--stacks-dir", str(tmp_path)]))
    assert "air_gap.registry" in line
    assert "host[:port][/path]" in line
    assert "https://registry.x" in line


def test_bmc_limit_that_looks_like_markup_prints_verbatim(tmp_path: Path) -> None:
    result = runner.invoke(app, ["bmc", "dev", "status", "--limit", "[/x]", "--stacks-dir", str(tmp_path)])
    assert "--limit [/x] matches no node of stack dev" in one_line(result)


def test_every_problem_line_prints_verbatim(capsys: pytest.CaptureFixture[str]) -> None:
    from fjord.cli.common import reject

    exit_ = reject("[b]src[/b]", ["a: :smile: (got [secret])", "b: [/path]"])
    assert exit_.exit_code == EXIT_REJECTED
    assert capsys.readouterr().err.splitlines() == [
        "error: [b]src[/b]: 2 problems",
        "  - a: :smile: (got [secret])",
        "  - b: [/path]",
    ]


# --- --json is plain JSON, whatever the terminal ------------------------------------------------------------


def test_size_json_is_plain_json_under_force_color() -> None:
    env = {**os.environ, "FORCE_COLOR": "1", "TERM": "xterm-256color"}
    env.pop("NO_COLOR", None)
    done = subprocess.run(
        [sys.executable, "-m", "fjord", "size", "uk", "--json", "--stacks-dir", str(STACKS)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "\x1b[" not in done.stdout
    report = json.loads(done.stdout)
    assert report["site"] == "uk"
    assert report["totals"]["gpus"] == 5112


# --- render: all or nothing -------------------------------------------------------------------------------


def render(out: Path) -> Result:
    return runner.invoke(app, ["render", "uk", "b200", "--stacks-dir", str(STACKS), "--out", str(out)])


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): p.read_text() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_failed_render_leaves_the_previous_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "b200"
    assert render(out).exit_code == 0
    (out / "manifests" / "999-configmap-kept.yaml").write_text("# from the previous render\n")
    (out / "README.md").write_text("not fjord's\n")
    before = snapshot(out)

    real = Path.write_text

    def disk_full(self: Path, data: str, *args: Any, **kwargs: Any) -> int:
        if self.name == "host_vars.yaml":  # the last file written
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
        return real(self, data, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", disk_full)
    line = one_line(render(out))
    assert str(out) in line
    assert "No space left on device" in line
    monkeypatch.undo()
    assert snapshot(out) == before
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "helm", "host_vars.yaml", "manifests"]


def test_render_replaces_a_plain_file_where_its_folder_goes(tmp_path: Path) -> None:
    out = tmp_path / "b200"
    assert render(out).exit_code == 0
    manifests = snapshot(out / "manifests")
    for p in (out / "helm").iterdir():
        p.unlink()
    (out / "helm").rmdir()
    (out / "helm").write_text("in the way\n")
    result = render(out)
    assert result.exit_code == 0, result.output
    assert (out / "helm" / "gpu-operator.values.yaml").is_file()
    assert snapshot(out / "manifests") == manifests
    assert sorted(p.name for p in out.iterdir()) == ["helm", "host_vars.yaml", "manifests"]  # no staging left


def test_render_to_a_file_is_rejected(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("keep me\n")
    line = one_line(render(target))
    assert f"{target}: --out: is not a folder" in line
    assert target.read_text() == "keep me\n"


# --- configure --host-vars: a JSON object of host -> object of variables, hosts of the site -----------------


@pytest.fixture
def no_ansible(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records any playbook run (there must be none when the input is rejected)."""
    import fjord.adapters.ansible as ansible

    runs: list[str] = []

    def run_playbook(playbook: str, *args: Any, **kwargs: Any) -> None:
        runs.append(playbook)
        raise AssertionError("a playbook ran on rejected input")

    monkeypatch.setattr(ansible, "run_playbook", run_playbook)
    return runs


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ("[1, 2]", "--host-vars: the document is an array ([1, 2]); allowed: a JSON object mapping host names"),
        ('"x"', '--host-vars: the document is a string ("x"); allowed: a JSON object mapping host names'),
        ('{"dev-h100-su000-n000": 5}', "--host-vars: 'dev-h100-su000-n000': 5 is a number; allowed: an object"),
        ('{"dev-h100-su000-n001": [1]}', "'dev-h100-su000-n001': [1] is an array; allowed: an object of variables"),
        ('{"dev-h100-su000-n000": null}', "'dev-h100-su000-n000': null is null; allowed: an object of variables"),
        ('{"web-01": {"ansible_port": 2222}}', "--host-vars: 'web-01' is no host of site dev; allowed: a JSON"),
        ('{"dev-h100-su000-n004": {}}', "'dev-h100-su000-n004' is no host of site dev"),  # dev has n000-n003
        ('{"dev-h100-su000-n0001": {}}', "'dev-h100-su000-n0001' is no host of site dev"),
        ("{not json", "--host-vars: cannot read a JSON object of host variables: Expecting property name"),
    ],
)
def test_host_vars_of_the_wrong_shape_are_rejected(
    tmp_path: Path, no_ansible: list[str], document: str, expected: str
) -> None:
    path = tmp_path / "vars.json"
    path.write_text(document, encoding="utf-8")
    result = runner.invoke(app, ["configure", "dev", "--host-vars", str(path), "--stacks-dir", str(tmp_path)])
    line = one_line(result)
    assert line.startswith(f"error: {path}: ")
    assert expected in line
    assert no_ansible == []


def test_unknown_host_vars_host_lists_hosts_of_the_site(tmp_path: Path, no_ansible: list[str]) -> None:
    path = tmp_path / "vars.json"
    path.write_text(json.dumps({"dev-h100-su000-n000": {"ansible_port": 2222}, "nope": {}}), encoding="utf-8")
    result = runner.invoke(app, ["configure", "dev", "--host-vars", str(path), "--stacks-dir", str(tmp_path)])
    line = one_line(result)
    assert "'nope' is no host of site dev" in line
    assert "objects of variables (4 hosts, e.g. dev-h100-su000-n000)" in line
    assert no_ansible == []


def test_host_vars_of_hosts_of_the_site_are_merged() -> None:
    from fjord.hosts.inventory import build_inventory, check_host_vars
    from fjord.sizing.site import size_site
    from fjord.spec.load import default_site, load_site

    site = load_site(default_site(), "dev")
    size = size_site(site)
    extra = check_host_vars(site, size, {"dev-h100-su000-n003": {"ansible_port": 2222}})
    data = build_inventory(site, size, host_vars=extra).data["all"]["children"]
    assert data["su_h100_000"]["hosts"]["dev-h100-su000-n003"]["ansible_port"] == 2222


# --- small option checks --------------------------------------------------------------------------------


@pytest.mark.parametrize("jobs", ["0", "-3"])
def test_plan_jobs_must_be_positive(jobs: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("fjord.cli.main.plan_stacks", lambda *a, **k: pytest.fail("planned with bad --jobs"))
    result = runner.invoke(app, ["plan", "dev", "--jobs", jobs])
    assert result.exit_code == 2, result.output
    assert "--jobs" in result.output


def test_plan_plans_each_stack_once_in_the_order_given(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[list[str]] = []

    def plan_stacks(names: list[str], *args: Any, **kwargs: Any) -> list[Any]:
        asked.append(list(names))
        return []

    monkeypatch.setattr("fjord.cli.main.plan_stacks", plan_stacks)
    result = runner.invoke(app, ["plan", "uk", "dev", "uk", "dev", "--json", "--stacks-dir", str(STACKS)])
    assert result.exit_code == 0, result.output
    assert asked == [["uk", "dev"]]


def test_stacks_in_a_missing_folder_is_rejected(tmp_path: Path) -> None:
    missing = tmp_path / "nonexistent"
    line = one_line(runner.invoke(app, ["stacks", "--stacks-dir", str(missing)]))
    assert line == f"error: {missing}: --stacks-dir: no such folder; allowed: a folder of Pulumi.<stack>.yaml files"


@pytest.mark.parametrize("command", ["put", "list"])
def test_artifacts_unknown_kind_is_a_usage_error(tmp_path: Path, command: str) -> None:
    report = tmp_path / "report.json"
    report.write_text("{}")
    args = ["artifacts", "uk", command, *([str(report)] if command == "put" else []), "--kind", "bad"]
    result = runner.invoke(app, [*args, "--stacks-dir", str(STACKS)])
    assert result.exit_code == 2, result.output
    assert "'bad' is not a kind of artifact; allowed: plan, inventory, validation, report, other" in " ".join(
        result.output.replace("│", " ").split()
    )


@pytest.mark.parametrize("stack", ["t", "dev"])
def test_a_folder_named_like_a_stack_file_is_rejected(tmp_path: Path, stack: str) -> None:
    (tmp_path / f"Pulumi.{stack}.yaml").mkdir()
    line = one_line(runner.invoke(app, ["validate", stack, "--stacks-dir", str(tmp_path)]))
    assert f"Pulumi.{stack}.yaml: stack: Pulumi.{stack}.yaml is a folder; allowed: a Pulumi.<stack>.yaml file" in line
    listed = runner.invoke(app, ["stacks", "--stacks-dir", str(tmp_path)])
    assert listed.exit_code == 0
    assert listed.stdout == ""
