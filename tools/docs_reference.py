"""The docs site's reference pages, generated from the code at build time (an MkDocs hook, see mkdocs.yml).

- `reference/site.md`: every site field, from the JSON Schema pydantic builds of fjord's models (`fjord schema`);
- `reference/cli.md`: every command and option, from Typer's command tree;
- `reference/roles.md`: every role variable, from the roles' `meta/argument_specs.yml`.

Nothing is written to docs/: the pages exist only in the built site, so they cannot go stale. Pages other
helpers add to docs/ but not yet to mkdocs.yml's nav are appended to it under "More guides", so every page is
reachable from the navigation.
"""

from __future__ import annotations

import json
import types
import typing
from pathlib import Path
from typing import Any

import typer
import yaml
from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files

REPO = Path(__file__).resolve().parents[1]
ROLES = REPO / "playbooks" / "roles"
GENERATED = {"reference/site.md", "reference/cli.md", "reference/roles.md"}


# --- site fields --------------------------------------------------------------------------------------------


def _anchor(name: str) -> str:
    return name.lower()


def _type(prop: dict[str, Any]) -> str:
    """A JSON Schema property as a short, human type: `int > 0`, `one of: a, b`, `list of [Hall](#hall)`."""
    if "$ref" in prop:
        name = prop["$ref"].rsplit("/", 1)[-1]
        return f"[{name}](#{_anchor(name)})"
    if "anyOf" in prop:
        kinds = [_type(p) for p in prop["anyOf"]]
        return " or ".join(k for k in kinds if k != "null") + (" or null" if "null" in kinds else "")
    if "enum" in prop:
        return "one of: " + ", ".join(f"`{json.dumps(v)}`" for v in prop["enum"])
    if "const" in prop:
        return f"`{json.dumps(prop['const'])}`"
    kind = prop.get("type", "any")
    if kind == "array":
        text = f"list of {_type(prop.get('items', {}))}"
    elif kind == "object" and "additionalProperties" in prop:
        extra = prop["additionalProperties"]
        text = f"map of {_type(extra) if isinstance(extra, dict) else 'any'}"
    else:
        text = {"integer": "int", "number": "number", "string": "string", "boolean": "bool"}.get(str(kind), str(kind))
    bounds = [
        f"{op} {prop[key]}"
        for key, op in (("exclusiveMinimum", ">"), ("minimum", ">="), ("exclusiveMaximum", "<"), ("maximum", "<="))
        if key in prop
    ]
    bounds += [f"{key} {prop[key]}" for key in ("minItems", "maxItems", "minLength", "maxLength") if key in prop]
    if "pattern" in prop:
        bounds.append(f"matching `{prop['pattern']}`")
    return text + (f" ({', '.join(bounds)})" if bounds else "")


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _model_section(name: str, schema: dict[str, Any]) -> list[str]:
    lines = [f"## {name}", ""]
    if schema.get("description"):
        lines += [" ".join(schema["description"].split()), ""]
    if "enum" in schema:
        return [*lines, "One of: " + ", ".join(f"`{v}`" for v in schema["enum"]), ""]
    required = set(schema.get("required", []))
    lines += ["| field | type | default | description |", "|---|---|---|---|"]
    for field, prop in schema.get("properties", {}).items():
        default = "required" if field in required else f"`{json.dumps(prop.get('default'))}`"
        lines.append(f"| `{field}` | {_cell(_type(prop))} | {default} | {_cell(prop.get('description', ''))} |")
    return [*lines, ""]


def site_page() -> str:
    from fjord.spec.schema import site_schema

    schema = site_schema()
    defs: dict[str, Any] = schema.pop("$defs", {})
    order = ["Site"]
    models = {"Site": schema, **defs}
    for name in order:  # breadth-first from Site: each model after the first one that uses it
        for ref in _refs(models[name]):
            if ref not in order:
                order.append(ref)
    order += sorted(set(models) - set(order))
    lines = [
        "# Site fields",
        "",
        "Every field of a site description (`fjord:site` in `stacks/Pulumi.<stack>.yaml`), generated when the docs"
        " are built from the JSON Schema of fjord's pydantic models, the same schema `fjord schema --site` prints."
        " Unknown keys are rejected everywhere. Rules that span fields (power against the grid budget, address"
        " space, hall capacity, tenants' quotas) are checked by `fjord validate`, which names the field, the value"
        " and what is allowed.",
        "",
    ]
    for name in order:
        lines += _model_section(name, models[name])
    return "\n".join(lines)


def _refs(node: Any) -> list[str]:
    found: list[str] = []
    if isinstance(node, dict):
        if "$ref" in node:
            found.append(node["$ref"].rsplit("/", 1)[-1])
        for value in node.values():
            found += _refs(value)
    elif isinstance(node, list):
        for value in node:
            found += _refs(value)
    return found


# --- commands -----------------------------------------------------------------------------------------------


# Typer builds on its own copy of Click (typer._click), so the command tree is read through Click's public
# attributes rather than isinstance checks against the click package.


def _type_name(annotation: Any) -> str:
    """`list[str] | None` -> `str, repeatable`; `pathlib.Path | None` -> `path`."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        return _type_name(args[0])
    if typing.get_origin(annotation) is list and args:
        return f"{_type_name(args[0])}, repeatable"
    name = getattr(annotation, "__name__", str(annotation))
    return {"Path": "path", "str": "text", "bool": "flag"}.get(name, name)


def _param_row(param: Any, annotation: Any) -> str:
    if param.param_type_name == "argument":
        name = f"`{param.name.upper()}`"
        kind = f"argument: {_type_name(annotation)}"
    else:
        name = " / ".join(f"`{n}`" for n in [*param.opts, *param.secondary_opts])
        kind = _type_name(annotation)
    default = param.default
    shown = "" if default in (None, False, (), []) or callable(default) else f"`{default}`"
    if param.required:
        shown = "required"
    return f"| {name} | {_cell(kind)} | {shown} | {_cell(param.help or '')} |"


def _command_section(path: list[str], command: Any) -> list[str]:
    lines = [f"## `{' '.join(path)}`", ""]
    if command.help:
        lines += [command.help.strip(), ""]
    hints = typing.get_type_hints(command.callback, include_extras=False) if command.callback else {}
    params = [p for p in command.params if p.name != "help"]
    if params:
        rows = [_param_row(p, hints.get(p.name, str)) for p in params]
        lines += ["| parameter | kind | default | help |", "|---|---|---|---|", *rows, ""]
    if hasattr(command, "commands"):
        for name in sorted(command.commands):
            lines += _command_section([*path, name], command.commands[name])
    return lines


def cli_page() -> str:
    from fjord.cli import main

    root: Any = typer.main.get_command(main.app)  # a TyperGroup: its sub-commands under .commands
    lines = [
        "# Commands",
        "",
        "Every `fjord` command, generated when the docs are built from the command line's own definitions (Typer),"
        " so it matches `fjord <command> --help`.",
        "",
        main.__doc__.strip() if main.__doc__ else "",
        "",
    ]
    for name in sorted(root.commands):
        lines += _command_section(["fjord", name], root.commands[name])
    return "\n".join(lines)


# --- roles --------------------------------------------------------------------------------------------------


def _option_rows(options: dict[str, Any], prefix: str = "") -> list[str]:
    rows = []
    for name, spec in options.items():
        kind = spec.get("type", "str")
        if kind == "list" and "elements" in spec:
            kind = f"list of {spec['elements']}"
        if "choices" in spec:
            kind += "; one of: " + ", ".join(f"`{c}`" for c in spec["choices"])
        default = "required" if spec.get("required") else f"`{json.dumps(spec.get('default'))}`"
        text = spec.get("description", "")
        text = " ".join(text) if isinstance(text, list) else text
        rows.append(f"| `{prefix}{name}` | {_cell(kind)} | {_cell(default)} | {_cell(text)} |")
        if "options" in spec:
            rows += _option_rows(spec["options"], f"{prefix}{name}.")
    return rows


def roles_page() -> str:
    lines = [
        "# Role variables",
        "",
        "Every role's variables, generated when the docs are built from the roles' `meta/argument_specs.yml`."
        " Ansible checks each role's variables against that file before the role runs: a wrong type or a value"
        " off the list stops the play at the role's start, naming the variable. Many come from the site model:"
        " the inventory fjord builds (`fjord.hosts.inventory`) sets them on the site and cluster groups.",
        "",
    ]
    for role in sorted(p.name for p in ROLES.iterdir() if p.is_dir()):
        specs_file = ROLES / role / "meta" / "argument_specs.yml"
        lines += [f"## {role}", ""]
        if not specs_file.exists():
            lines += ["No `meta/argument_specs.yml` yet: see the role's `defaults/main.yml`.", ""]
            continue
        specs = yaml.safe_load(specs_file.read_text())["argument_specs"]
        for entry, spec in specs.items():
            if entry != "main":
                lines += [f"### entry point `{entry}`", ""]
            if spec.get("short_description"):
                lines += [spec["short_description"], ""]
            description = spec.get("description")
            if description:
                lines += [" ".join(description) if isinstance(description, list) else description, ""]
            options = spec.get("options") or {}
            if options:
                lines += ["| variable | type | default | description |", "|---|---|---|---|", *_option_rows(options)]
                lines.append("")
    return "\n".join(lines)


# --- MkDocs hooks -------------------------------------------------------------------------------------------


def _listed(nav: Any) -> set[str]:
    if isinstance(nav, str):
        return {nav}
    if isinstance(nav, list):
        return {p for item in nav for p in _listed(item)}
    if isinstance(nav, dict):
        return {p for value in nav.values() for p in _listed(value)}
    return set()


def on_config(config: MkDocsConfig) -> MkDocsConfig:
    """Append docs pages that the nav does not list yet, so that every page is reachable."""
    docs = Path(config.docs_dir)
    nav = config.nav or []
    listed = _listed(nav) | GENERATED
    extra = []
    for page in sorted(docs.rglob("*.md")):
        rel = page.relative_to(docs).as_posix()
        if rel not in listed and not any(part.startswith(("_", ".")) for part in page.parts):
            extra.append(rel)
    if extra:
        config.nav = [*nav, {"More guides": extra}]
    return config


def on_files(files: Files, config: MkDocsConfig) -> Files:
    for uri, build in (
        ("reference/site.md", site_page),
        ("reference/cli.md", cli_page),
        ("reference/roles.md", roles_page),
    ):
        files.append(File.generated(config, uri, content=build()))
    return files
