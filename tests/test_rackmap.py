"""`fjord size --svg`: a well-formed SVG with every rack position of every hall, and the committed picture of
the uk site in the docs is what fjord draws today."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from typer.testing import CliRunner

from fjord.cli.main import app
from fjord.cli.rackmap import rack_power_kw
from fjord.sizing.alloc import read as read_alloc
from fjord.sizing.site import size_site
from fjord.spec.load import load_site, read_stack

REPO = Path(__file__).resolve().parents[1]
NS = {"svg": "http://www.w3.org/2000/svg"}
COMMITTED = REPO / "docs" / "images" / "uk-size.svg"


def _racks(root: ET.Element) -> dict[str, ET.Element]:
    return {
        el.get("id", "")[len("rack-") :]: el
        for el in root.iterfind(".//svg:rect[@id]", NS)
        if el.get("id", "").startswith("rack-")
    }


def test_the_svg_holds_every_rack_of_every_hall(tmp_path: Path) -> None:
    out = tmp_path / "uk.svg"
    result = CliRunner().invoke(app, ["size", "uk", "--stacks-dir", str(REPO / "stacks"), "--svg", str(out)])
    assert result.exit_code == 0, result.output
    root = ET.fromstring(out.read_text())  # well-formed XML, or this raises
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    site = load_site(read_stack("uk", REPO / "stacks").site)
    size = size_site(site, read_alloc("uk", REPO / "stacks"))  # as `fjord size` does: the stack's record
    racks = _racks(root)
    positions = {f"{h.name}-r{p:04d}" for h in size.halls for p in range(1, h.positions + 1)}
    assert set(racks) == positions
    for r in size.placement:  # each used rack drawn as its kind, its tooltip naming its owner
        for p in range(r.first, r.last + 1):
            el = racks[f"{r.hall}-r{p:04d}"]
            assert el.get("class") == f"rack {r.kind}"
            tip = el.find("svg:title", NS)
            assert tip is not None
            assert r.owner in (tip.text or "")
    free = sum(h.positions - h.used for h in size.halls)
    assert sum(1 for el in racks.values() if el.get("class") == "rack free") == free


def test_rack_power_adds_up_to_the_site_it_power() -> None:
    site = load_site(read_stack("uk", REPO / "stacks").site)
    size = size_site(site)
    per_rack = rack_power_kw(site, size)
    drawn = sum(per_rack[(r.kind, r.owner)] * r.racks for r in size.placement)
    assert abs(drawn - size.power.it_kw) < 0.01 * size.power.it_kw


def test_the_committed_uk_picture_shows_every_rack() -> None:
    """docs/images/uk-size.svg, shown in the README and the docs: well-formed, every rack position of the uk site
    as sized today. Regenerate it with `fjord size uk --svg docs/images/uk-size.svg` when uk's halls change."""
    root = ET.fromstring(COMMITTED.read_text())
    size = size_site(load_site(read_stack("uk", REPO / "stacks").site), read_alloc("uk", REPO / "stacks"))
    racks = _racks(root)
    assert set(racks) == {f"{h.name}-r{p:04d}" for h in size.halls for p in range(1, h.positions + 1)}
    used = {f"{r.hall}-r{p:04d}": r.kind for r in size.placement for p in range(r.first, r.last + 1)}
    assert {name: el.get("class") for name, el in racks.items() if name in used} == {
        name: f"rack {kind}" for name, kind in used.items()
    }


def test_an_unwritable_svg_path_is_rejected(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["size", "dev", "--svg", str(tmp_path / "no" / "such" / "dir.svg")])
    assert result.exit_code == 1
    assert "--svg" in result.stderr
