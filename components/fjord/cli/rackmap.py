"""`fjord size --svg FILE`: each hall's rack map and its power against capacity, as one SVG picture.

Pure presentation of the sizing result: every rack position of every hall is a square, coloured by what holds it
(a cluster's compute racks, network racks, storage racks, or free), with a tooltip naming the rack, its owner and
its power; under each hall a bar of the hall's power against what its positions can take, and at the top the
site's facility power against its grid budget. Built with ElementTree, so names are escaped.
"""

from __future__ import annotations

import colorsys
import math
import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fjord.sizing.site import RackRange, SiteSize
    from fjord.spec.models import Site

SVG_NS = "http://www.w3.org/2000/svg"
CELL, GAP, COLUMNS, MARGIN = 14, 3, 40, 20
BAR_W, BAR_H = COLUMNS * (CELL + GAP) - GAP, 14
KIND_COLOUR = {"network": "#7a869a", "storage": "#c9a227", "free": "#ffffff"}
TEXT_STYLE = "font-family: sans-serif; font-size: 12px; fill: #222"


def _compute_colours(owners: list[str]) -> dict[str, str]:
    """One distinct hue per cluster, evenly spread, blue to green to purple."""
    colours = {}
    for i, owner in enumerate(owners):
        r, g, b = colorsys.hls_to_rgb((0.55 + i / max(len(owners), 1) * 0.7) % 1.0, 0.45, 0.6)
        colours[owner] = f"#{int(r * 255):02x}{int(g * 255):02x}{int(b * 255):02x}"
    return colours


def rack_power_kw(site: Site, size: SiteSize) -> dict[tuple[str, str], float]:
    """Max power of one rack of each (kind, owner): a cluster's compute power over its racks, a fabric's switch
    power over its network racks, a storage tier's power over its racks."""
    racks: dict[tuple[str, str], int] = {}
    for r in size.placement:
        racks[(r.kind, r.owner)] = racks.get((r.kind, r.owner), 0) + r.racks
    total: dict[tuple[str, str], float] = {}
    for c in size.clusters:
        total[("compute", c.name)] = c.compute_kw
    for f in size.fabrics:
        total[("network", f.name)] = f.max_power_kw
    for t in site.storage:
        total[("storage", t.name)] = t.power_kw
    return {key: total.get(key, 0.0) / count for key, count in racks.items() if count}


def _text(parent: ET.Element, x: float, y: float, text: str, style: str = TEXT_STYLE) -> None:
    ET.SubElement(parent, "text", x=f"{x:g}", y=f"{y:g}", style=style).text = text


def _bar(parent: ET.Element, y: float, label: str, used: float, capacity: float) -> None:
    share = used / capacity if capacity else 0.0
    colour = "#a5d6a7" if share <= 0.8 else "#ffcc80" if share <= 1.0 else "#ef9a9a"  # light: the label sits on it
    ET.SubElement(parent, "rect", x=str(MARGIN), y=f"{y:g}", width=str(BAR_W), height=str(BAR_H), fill="#eeeeee")
    width = min(share, 1.0) * BAR_W
    ET.SubElement(parent, "rect", x=str(MARGIN), y=f"{y:g}", width=f"{width:.1f}", height=str(BAR_H), fill=colour).set(
        "class", "power-used"
    )
    _text(parent, MARGIN + 4, y + BAR_H - 3, f"{label}: {used:,.0f} of {capacity:,.0f} kW ({share:.0%})")


def render_svg(site: Site, size: SiteSize) -> str:
    """The picture as an SVG document."""
    per_rack = rack_power_kw(site, size)
    halls = {h.name: h for h in site.halls}
    colours = _compute_colours([c.name for c in size.clusters])
    by_hall: dict[str, list[RackRange]] = {}
    for r in size.placement:
        by_hall.setdefault(r.hall, []).append(r)

    svg = ET.Element(
        "svg", {"xmlns": SVG_NS, "version": "1.1", "role": "img", "aria-label": f"Rack map of site {site.name}"}
    )
    title = ET.SubElement(svg, "title")
    title.text = f"fjord size {site.name}: rack map and power"
    y = MARGIN + 12.0
    _text(
        svg,
        MARGIN,
        y,
        f"{site.name}: {size.gpus:,} GPUs, {size.nodes:,} nodes, {size.racks:,} racks in {len(size.halls)} halls",
        style=TEXT_STYLE + "; font-size: 15px; font-weight: bold",
    )
    y += 10
    _bar(svg, y, "site facility power (IT x PUE) against the grid budget", size.power.facility_kw, size.power.budget_kw)
    y += BAR_H + 24

    for hall in size.halls:
        spec = halls[hall.name]
        group = ET.SubElement(svg, "g", id=f"hall-{hall.name}")
        _text(
            group,
            MARGIN,
            y,
            f"hall {hall.name} ({spec.cooling}): {hall.positions} positions of {spec.rack_power_kw:g} kW; "
            f"{hall.compute_racks} compute, {hall.network_racks} network, {hall.storage_racks} storage, "
            f"{hall.positions - hall.used} free",
            style=TEXT_STYLE + "; font-weight: bold",
        )
        y += 8
        owner_of: dict[int, RackRange] = {p: r for r in by_hall.get(hall.name, []) for p in range(r.first, r.last + 1)}
        hall_kw = 0.0
        for position in range(1, hall.positions + 1):
            row, col = divmod(position - 1, COLUMNS)
            left, top = MARGIN + col * (CELL + GAP), y + row * (CELL + GAP)
            name = f"{hall.name}-r{position:04d}"
            rack = owner_of.get(position)
            if rack is None:
                kind, fill, tip = "free", KIND_COLOUR["free"], f"{name}: free"
            else:
                kw = per_rack.get((rack.kind, rack.owner), 0.0)
                hall_kw += kw
                kind = rack.kind
                fill = colours.get(rack.owner, "#1565c0") if kind == "compute" else KIND_COLOUR[kind]
                tip = f"{name}: {kind}, {rack.owner}, {kw:,.1f} of {spec.rack_power_kw:g} kW"
            attrs = {"id": f"rack-{name}", "x": str(left), "y": f"{top:g}", "width": str(CELL), "height": str(CELL)}
            attrs |= {"fill": fill, "stroke": "#999999", "stroke-width": "0.5", "class": f"rack {kind}"}
            cell = ET.SubElement(group, "rect", attrs)
            ET.SubElement(cell, "title").text = tip
        y += math.ceil(hall.positions / COLUMNS) * (CELL + GAP) + 6
        _bar(group, y, f"hall {hall.name} power", hall_kw, hall.positions * spec.rack_power_kw)
        y += BAR_H + 28

    legend = ET.SubElement(svg, "g", id="legend")
    x = float(MARGIN)
    entries = [(f"compute: {owner}", colour) for owner, colour in colours.items()]
    entries += list(KIND_COLOUR.items())
    for label, colour in entries:
        if x + 30 + 7 * len(label) > MARGIN + BAR_W:  # wrap the legend at the width of the bars
            x, y = float(MARGIN), y + 20
        ET.SubElement(
            legend, "rect", x=f"{x:g}", y=f"{y - 11:g}", width="12", height="12", fill=colour, stroke="#999999"
        )
        _text(legend, x + 16, y, label)
        x += 30 + 7 * len(label)
    width = MARGIN * 2 + BAR_W
    svg.set("width", str(width))
    svg.set("height", f"{y + MARGIN:g}")
    svg.set("viewBox", f"0 0 {width} {y + MARGIN:g}")
    ET.indent(svg)
    return ET.tostring(svg, encoding="unicode", xml_declaration=False) + "\n"
