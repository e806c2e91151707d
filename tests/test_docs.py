"""The documentation: the README as a landing page that tells the truth, and the MkDocs site, built strictly, with
reference pages generated from the code that cover every field, command and role variable."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from typer.testing import CliRunner

from fjord.cli.main import app
from fjord.spec.load import default_site, load_site
from fjord.spec.schema import site_schema

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
sys.path.insert(0, str(REPO / "tools"))
import docs_reference  # noqa: E402


def _blocks(text: str, lang: str) -> list[str]:
    """The fenced code blocks of a Markdown text whose info string is `lang` ('' for none), in order."""
    blocks: list[str] = []
    current: list[str] | None = None
    current_lang = ""
    for line in text.splitlines():
        if line.startswith("```"):
            if current is None:
                current, current_lang = [], line[3:].strip()
            else:
                if current_lang == lang:
                    blocks.append("\n".join(current) + "\n")
                current = None
        elif current is not None:
            current.append(line)
    return blocks


def test_readme_is_a_landing_page() -> None:
    text = README.read_text()
    assert len(text.splitlines()) < 200
    for command in ("make dev", "make test"):  # the Quick start, which .ci/run relies on
        assert command in _blocks(text, "sh")[0]
    assert "make test" in (REPO / ".ci" / "run").read_text()


def test_readme_links_point_at_files_that_exist() -> None:
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README.read_text())
    assert links
    generated = {f"docs/{uri}" for uri in docs_reference.GENERATED}
    missing = [link for link in links if not link.startswith("http") and link not in generated]
    missing = [link for link in missing if not (REPO / link).exists()]
    assert missing == []


def test_readme_example_site_and_its_size_output_are_current() -> None:
    """The example is the embedded dev site, and every line of its `fjord size` output is what fjord prints."""
    text = README.read_text()
    example = yaml.safe_load(_blocks(text, "yaml")[0])
    assert load_site(example) == load_site(default_site())
    shown = [line.rstrip() for line in _blocks(text, "")[0].splitlines()]
    result = CliRunner().invoke(app, ["size", "dev"])
    assert result.exit_code == 0, result.output
    printed = {line.rstrip() for line in result.stdout.splitlines()}
    assert [line for line in shown if line not in printed] == []


def test_performance_page_has_a_table_per_benchmark() -> None:
    page = (REPO / "docs" / "performance.md").read_text()
    for bench in sorted((REPO / "bench").glob("*.py")):
        section = page.split(f"`bench/{bench.name}`", 1)
        assert len(section) == 2, f"docs/performance.md has no section for bench/{bench.name}"
        assert "\n| " in section[1].split("\n## ", 1)[0], f"bench/{bench.name}: no table"


def test_site_reference_lists_every_field_of_every_model() -> None:
    page = docs_reference.site_page()
    schema = site_schema()
    models: dict[str, Any] = {"Site": schema, **schema["$defs"]}
    for name, model in models.items():
        section = page.split(f"\n## {name}\n", 1)
        assert len(section) == 2, name
        body = section[1].split("\n## ", 1)[0]
        for field in model.get("properties", {}):
            assert f"| `{field}` |" in body, f"{name}.{field}"


def test_cli_reference_lists_every_command_and_option() -> None:
    page = docs_reference.cli_page()
    root = typer.main.get_command(app)

    def walk(path: list[str], command: Any) -> None:
        heading = f"## `{' '.join(path)}`"
        assert heading in page, heading
        body = page.split(heading + "\n", 1)[1].split("\n## ", 1)[0]
        for param in command.params:
            if param.param_type_name == "option" and param.name != "help":
                assert f"`{param.opts[0]}`" in body, (path, param.opts)
        for name, sub in getattr(command, "commands", {}).items():
            walk([*path, name], sub)

    for name, command in root.commands.items():  # type: ignore[attr-defined]
        walk(["fjord", name], command)


def test_roles_reference_lists_every_role_variable() -> None:
    page = docs_reference.roles_page()
    for specs_file in sorted((REPO / "playbooks" / "roles").glob("*/meta/argument_specs.yml")):
        role = specs_file.parents[1].name
        assert f"\n## {role}\n" in page
        for entry in yaml.safe_load(specs_file.read_text())["argument_specs"].values():
            for option in entry.get("options") or {}:
                assert f"| `{option}` |" in page, (role, option)


@pytest.mark.slow
def test_the_docs_site_builds_strictly(tmp_path: Path) -> None:
    """`mkdocs build --strict`: a broken link or anchor, or a page the nav cannot reach, fails the build."""
    mkdocs = Path(sys.executable).parent / "mkdocs"
    proc = subprocess.run(
        [str(mkdocs), "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin", "NO_MKDOCS_2_WARNING": "1"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    built = tmp_path / "site"
    for page in ("reference/site", "reference/cli", "reference/roles", "tutorial", "concepts", "performance"):
        assert (built / page / "index.html").is_file(), page
    assert "mermaid" in (built / "concepts" / "index.html").read_text()
    assert "fjord configure" in (built / "reference" / "cli" / "index.html").read_text()
