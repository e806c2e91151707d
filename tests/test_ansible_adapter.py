"""The ansible-runner wrapper on this machine (local connection, no testbed): fjord's fact cache outlives a run."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from fjord.adapters.ansible import AnsibleSettings, ProgressEvent, run_playbook

PLAY = """
- name: Facts
  hosts: all
  gather_facts: true
  tasks:
    - name: Facts | Use one
      ansible.builtin.debug:
        msg: "{{ ansible_facts.distribution }}"
"""


def _inventory() -> dict[str, object]:
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    return {"all": {"hosts": {"localhost": local}}}


def _run(project: Path, settings: AnsibleSettings) -> list[str]:
    events: list[ProgressEvent] = []
    result = run_playbook(
        "play.yml", _inventory(), site="t", playbooks_dir=project, settings=settings, on_event=events.append
    )
    assert result.ok, (result.error, result.hosts)
    return [e.task for e in events if e.kind == "task"]


def test_fjord_settings_gather_facts_once_across_runs(tmp_path: Path) -> None:
    (tmp_path / "play.yml").write_text(PLAY)
    settings = AnsibleSettings(state_dir=tmp_path / "state")
    assert "Gathering Facts" in _run(tmp_path, settings)
    assert [p.name for p in settings.fact_cache_dir("t").iterdir() if p.name.endswith("localhost")]
    # The second run reads the cache (gathering = smart): no play gathers again.
    assert "Gathering Facts" not in _run(tmp_path, settings)


def test_stock_settings_gather_facts_every_run(tmp_path: Path) -> None:
    (tmp_path / "play.yml").write_text(PLAY)
    settings = AnsibleSettings.stock()
    assert settings.runner_fact_cache("t") == {"fact_cache_type": "memory"}
    for _ in range(2):
        assert "Gathering Facts" in _run(tmp_path, settings)


POLL_PLAY = """\
- name: Report the settings the run uses
  hosts: all
  gather_facts: false
  tasks:
    - name: Write the strategy loop's poll interval
      ansible.builtin.copy:
        dest: "{{ out }}"
        content: "{{ lookup('ansible.builtin.config', 'DEFAULT_INTERNAL_POLL_INTERVAL') }}"
        mode: "0600"
"""


@pytest.mark.parametrize(("profile", "expected"), [("fjord", "0.005"), ("stock", "0.001")])
def test_runs_read_fjords_config_and_no_stray_ansible_cfg(tmp_path: Path, profile: str, expected: str) -> None:
    settings = AnsibleSettings(state_dir=tmp_path / "state") if profile == "fjord" else AnsibleSettings.stock()
    # A stray ansible.cfg next to the playbooks (ansible-core reads ./ansible.cfg) must not change the run.
    (tmp_path / "play.yml").write_text(POLL_PLAY)
    (tmp_path / "ansible.cfg").write_text("[defaults]\ninternal_poll_interval = 0.5\n")
    out = tmp_path / "poll.txt"
    result = run_playbook(
        "play.yml", _inventory(), site="t", playbooks_dir=tmp_path, settings=settings, extra_vars={"out": str(out)}
    )
    assert result.ok, (result.error, result.hosts)
    assert out.read_text() == expected


AFFINITY_PLAY = """\
- name: Report where the controller's workers may run
  hosts: all
  gather_facts: false
  tasks:
    - name: Write the status of this task's worker process
      ansible.builtin.copy:
        # A lookup runs on the controller, in the worker process Ansible forked for this task.
        content: "{{ lookup('ansible.builtin.file', '/proc/self/status') }}"
        dest: "{{ out }}"
        mode: "0600"
"""


def _cpus(text: str) -> set[int]:
    cpus: set[int] = set()
    for part in text.strip().split(","):
        first, _, last = part.partition("-")
        cpus |= set(range(int(first), int(last or first) + 1))
    return cpus


@pytest.mark.parametrize(
    ("strategy", "pinning"), [("free", False), ("linear", False), ("host_pinned", False), ("free", True)]
)
def test_mitogen_workers_are_not_pinned_to_one_cpu_unless_asked(tmp_path: Path, strategy: str, pinning: bool) -> None:
    mine = os.sched_getaffinity(0)
    if pinning and len(mine) < 2:
        pytest.skip("Mitogen pins nothing on a machine with one CPU: nothing to compare")
    (tmp_path / "play.yml").write_text(AFFINITY_PLAY)
    out = tmp_path / "cpus.txt"
    settings = AnsibleSettings(state_dir=tmp_path / "state", strategy=strategy, mitogen_cpu_pinning=pinning)
    result = run_playbook(
        "play.yml", _inventory(), site="t", playbooks_dir=tmp_path, settings=settings, extra_vars={"out": str(out)}
    )
    assert result.ok, (result.error, result.hosts)
    status = dict(line.split(":", 1) for line in out.read_text().splitlines() if ":" in line)
    worker = _cpus(status["Cpus_allowed_list"])
    if pinning:
        assert len(worker) == 1, worker  # Mitogen's own scheme: each worker on one CPU
    else:
        assert worker == mine  # fjord's default: the worker may run wherever this test may


def test_a_strategy_mitogen_lacks_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match=r"strategy: 'debug' has no Mitogen strategy; allowed: free, linear"):
        AnsibleSettings(strategy="debug")
    assert AnsibleSettings(strategy="debug", mitogen=False).strategy == "debug"  # plain ansible-core has it


PROBE_LOOKUP = '''
from ansible.plugins.loader import filter_loader, test_loader
from ansible.plugins.lookup import LookupBase


class LookupModule(LookupBase):
    """In the worker that runs the task: were the Jinja filter and test plugins already loaded when it forked?"""

    def run(self, terms, variables=None, **kwargs):
        loaded = [bool(loader._cached_non_collection_wrappers) for loader in (filter_loader, test_loader)]
        return [",".join(str(x) for x in loaded)]
'''

PROBE_PLAY = """
- name: Probe
  hosts: all
  gather_facts: false
  tasks:
    - name: Probe | Write what the worker had loaded before it ran this task
      ansible.builtin.copy:
        content: "{{ lookup('fjord_probe') }}"
        dest: "{{ out }}"
        mode: "0600"
"""


@pytest.mark.parametrize("strategy", ["free", "linear", "host_pinned"])
def test_workers_fork_with_the_jinja_plugins_already_loaded(tmp_path: Path, strategy: str) -> None:
    (tmp_path / "lookup_plugins").mkdir()
    (tmp_path / "lookup_plugins" / "fjord_probe.py").write_text(PROBE_LOOKUP)
    (tmp_path / "play.yml").write_text(PROBE_PLAY)

    def loaded(settings: AnsibleSettings) -> str:
        out = tmp_path / f"{strategy}-{settings.mitogen_cpu_pinning}.txt"
        result = run_playbook(
            "play.yml", _inventory(), site="t", playbooks_dir=tmp_path, settings=settings, extra_vars={"out": str(out)}
        )
        assert result.ok, (result.error, result.hosts)
        return out.read_text()

    # fjord's plugins warm the loaders in the strategy process; Mitogen's own (with its pinning) leave each
    # worker to load every filter and test plugin again, which is what the warm-up saves.
    assert loaded(AnsibleSettings(state_dir=tmp_path / "s1", strategy=strategy)) == "True,True"
    mitogens_own = AnsibleSettings(state_dir=tmp_path / "s2", strategy=strategy, mitogen_cpu_pinning=True)
    assert loaded(mitogens_own) == "False,False"


def test_dependency_scans_compile_each_file_once_and_find_the_same_module_utils() -> None:
    """Mitogen's multiplexer finds each module's module_utils by compiling every file it imports; with fjord's
    strategies a file shared by several modules is compiled once, and each scan's answer is unchanged."""
    import ansible.module_utils
    import ansible.modules.apt
    import ansible.modules.file
    import ansible.modules.stat
    import ansible_mitogen.module_finder as finder

    from fjord.adapters.ansible_strategy import share_dependency_scans

    search = (os.path.dirname(ansible.module_utils.__file__),)
    modules = (ansible.modules.stat, ansible.modules.file, ansible.modules.apt)
    alone = [finder.scan(m.__name__, m.__file__, search) for m in modules]
    try:
        once = share_dependency_scans()
        assert share_dependency_scans() is once  # installed once per process
        shared = [finder.scan(m.__name__, m.__file__, search) for m in modules]
    finally:
        del finder.compile
    assert shared == alone
    assert all(any(name == "ansible.module_utils.basic" for name, _, _ in found) for found in alone)
    files = sum(len(found) + 1 for found in alone)  # each module and every module_utils file it imports
    assert once.compiled + once.reused == files
    # basic.py and its imports are shared by all three: compiled for the first module only.
    assert once.compiled < files / 2, (once.compiled, once.reused)


def test_mitogen_runs_name_an_ssh_control_socket_where_one_fits(tmp_path: Path) -> None:
    """Under Mitogen fjord names the SSH control socket (ansible-core's ssh plugin names its own); a state
    directory too deep for a Unix socket's path gets none rather than failing every connection."""
    import dataclasses
    import shlex
    import shutil
    import tempfile

    from fjord.adapters.ansible import control_path

    base = Path(tempfile.mkdtemp(prefix="fj-"))
    try:
        args = shlex.split(AnsibleSettings(state_dir=base).env("t")["ANSIBLE_SSH_ARGS"])
        assert args == ["-o", "ControlMaster=auto", "-o", "ControlPersist=600s", "-o", f"ControlPath={base}/cp/%C"]
        assert (base / "cp").stat().st_mode & 0o777 == 0o700
        stock = dataclasses.replace(AnsibleSettings.stock(), state_dir=base)
        assert "ControlPath" not in stock.env("t")["ANSIBLE_SSH_ARGS"]
        # Mitogen's scans and minified sources are kept in the same private folder; stock has no Mitogen.
        assert AnsibleSettings(state_dir=base).env("t")["FJORD_MITOGEN_CACHE"] == f"{base}/mitogen-cache.json"
        assert "FJORD_MITOGEN_CACHE" not in stock.env("t")
        # OpenSSH binds "<path>.<16 characters>" first, 107 bytes in all: the folder may have 49.
        fits = base / ("a" * (49 - len(str(base)) - 1))
        too_deep = base / ("b" * (50 - len(str(base)) - 1))
        assert control_path(fits) == f"{fits}/%C"
        assert control_path(too_deep) is None
        assert not too_deep.exists()
        assert control_path(base / "100%") == f"{base}/100%%/%C"  # OpenSSH expands % tokens in the path
        here = Path.cwd()
        try:
            os.chdir(base)
            assert control_path(Path("rel")) == f"{base}/rel/%C"
        finally:
            os.chdir(here)
    finally:
        shutil.rmtree(base)
    deep = tmp_path / ("d" * 60)
    assert "ControlPath" not in AnsibleSettings(state_dir=deep).env("t")["ANSIBLE_SSH_ARGS"]


def test_mitogen_scans_and_minified_sources_are_kept_between_runs_and_redone_when_stale(tmp_path: Path) -> None:
    """RunCache answers a scan from the file while every stamp holds, and scans again when a found file
    changes or a file appears in a package folder; it never fails on a bad file."""
    from fjord.adapters.ansible_strategy import RunCache

    search, pkg = tmp_path / "module_utils", tmp_path / "module_utils" / "common"
    pkg.mkdir(parents=True)
    module, init, util = tmp_path / "mod.py", pkg / "__init__.py", pkg / "text.py"
    for f in (module, init, util):
        f.write_text("x = 1\n")
    calls: list[str] = []

    def scan(module_name: str, module_path: str, search_path: tuple[str, ...]) -> list[tuple[str, str, bool]]:
        calls.append(module_name)
        common = "ansible.module_utils.common"
        return [(common, str(init), True), (f"{common}.text", str(util), False)]

    path = tmp_path / "cache.json"
    first = RunCache(path).scan(scan, "mod", str(module), [str(search)])
    assert RunCache(path).scan(scan, "mod", str(module), [str(search)]) == first
    assert calls == ["mod"]  # the second run read the answer from the file
    util.write_text("import os\nx = 2\n")
    RunCache(path).scan(scan, "mod", str(module), [str(search)])
    assert calls == ["mod", "mod"]  # a found file changed
    RunCache(path).scan(scan, "mod", str(module), [str(search)])
    (pkg / "new.py").write_text("")
    RunCache(path).scan(scan, "mod", str(module), [str(search)])
    assert calls == ["mod", "mod", "mod"]  # a file appeared where an import could now resolve

    minified: list[str] = []

    def minimize(source: str) -> str:
        minified.append(source)
        return source.upper()

    assert RunCache(path).minimize_source(minimize, "a = 1  # c\n") == "A = 1  # C\n"
    assert RunCache(path).minimize_source(minimize, b"a = 1  # c\n") == "A = 1  # C\n"
    assert minified == ["a = 1  # c\n"]

    path.write_text("{not json")
    assert RunCache(path).scan(scan, "mod", str(module), [str(search)]) == first  # a bad file: just work again
    RunCache(tmp_path / "missing" / "cache.json").minimize_source(minimize, "b")  # cannot write: no error


def test_a_second_mitogen_run_takes_its_scans_and_minified_sources_from_the_cache(tmp_path: Path) -> None:
    import json

    (tmp_path / "play.yml").write_text(PLAY)
    settings = AnsibleSettings(state_dir=tmp_path / "state")
    _run(tmp_path, settings)
    cache = tmp_path / "state" / "mitogen-cache.json"
    data = json.loads(cache.read_text())
    assert any(key.startswith("ansible_module_ansible.legacy.setup\0") for key in data["scans"]), list(data["scans"])
    assert data["minified"]  # Mitogen's own modules, as sent to the host's interpreter
    written = cache.stat().st_mtime_ns
    _run(tmp_path, settings)
    assert cache.stat().st_mtime_ns == written  # every scan and every source came from the file
