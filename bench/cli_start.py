"""How long the `fjord` command takes to start and answer, each figure beside a baseline measured in the same run.

Run `.venv/bin/python bench/cli_start.py [--repeat N] [--against REV] [--json]`. It prints and never asserts.

Every command runs as `python -m fjord <args>` in a fresh process from the repository root (wall time around
the whole process: interpreter start, imports, the command's work and its output), stdout to a pipe as in a
CI job. Each row has a baseline doing the same work without fjord's command line:

- `--help`, `stacks`: a bare Typer application (Typer and rich, one command printing a line), the floor of any
  Typer command line;
- `validate dev`, `size dev --json`: the library alone (`read_stack`, `load_site`, `size_site`, one line out);
- `plan dev --json`: the plan worker alone (`python -m fjord.plan.worker dev stacks`), which the command runs.

Commands and baselines run interleaved, one run of each per round, so a drift of the machine's speed weighs on
both; medians of --repeat rounds. `--against REV` adds a column: the same commands from a git worktree of REV
(made in a temporary folder, run with PYTHONPATH pointing at its `components/`), e.g. `--against HEAD~1` to
see what a change did. fjord's modules (and REV's) are byte-compiled first, as `make install` does: where
PYTHONDONTWRITEBYTECODE is set, Python would otherwise compile them again in every process.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

BARE_TYPER = """
import typer
from rich.console import Console
app = typer.Typer(add_completion=False)
@app.command()
def stacks(folder: str = "stacks") -> None:
    '''List something.'''
    Console().print(folder)
@app.command()
def other() -> None:
    '''A second command, so that Typer shows a command list.'''
app()
"""

LIBRARY = """
import sys
from fjord.sizing.site import size_site
from fjord.spec.load import load_site, read_stack
cfg = read_stack(sys.argv[1])
size = size_site(load_site(cfg.site, cfg.stack))
print(cfg.stack, size.gpus, size.nodes)
"""

CASES: list[tuple[list[str], str, list[str]]] = [
    (["--help"], "bare Typer app", ["-c", BARE_TYPER, "--help"]),
    (["stacks"], "bare Typer app", ["-c", BARE_TYPER, "stacks"]),
    (["validate", "dev"], "library alone", ["-c", LIBRARY, "dev"]),
    (["size", "dev", "--json"], "library alone", ["-c", LIBRARY, "dev"]),
    (["plan", "dev", "--json"], "plan worker alone", ["-m", "fjord.plan.worker", "dev", "stacks"]),
]


def run(args: list[str], pythonpath: Path | None = None) -> float:
    env = dict(os.environ)
    env.pop("COLUMNS", None)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args[:3])}... exited {proc.returncode}: {proc.stderr.strip()[-400:]}")
    return wall


def worktree(rev: str, into: Path) -> Path:
    subprocess.run(["git", "worktree", "add", "--detach", "-q", str(into), rev], cwd=ROOT, check=True)
    return into / "components"


def measure(repeat: int, against: Path | None) -> list[dict[str, Any]]:
    times: dict[str, list[float]] = {}
    for _ in range(repeat):
        for cmd, _, base in CASES:
            key = " ".join(cmd)
            times.setdefault(f"fjord {key}", []).append(run(["-m", "fjord", *cmd]))
            times.setdefault(f"base {key}", []).append(run(base))
            if against is not None:
                times.setdefault(f"rev {key}", []).append(run(["-m", "fjord", *cmd], pythonpath=against))
    rows = []
    for cmd, base_name, _ in CASES:
        key = " ".join(cmd)
        fjord_s, base_s = statistics.median(times[f"fjord {key}"]), statistics.median(times[f"base {key}"])
        row: dict[str, Any] = {"command": f"fjord {key}", "fjord_s": fjord_s, "baseline": base_name}
        row |= {"baseline_s": base_s, "ratio": fjord_s / base_s}
        if against is not None:
            row["against_s"] = statistics.median(times[f"rev {key}"])
        rows.append(row)
    return rows


def print_table(rows: list[dict[str, Any]], rev: str | None) -> None:
    head = ["command", "fjord wall s", "baseline", "baseline wall s", "ratio"]
    if rev is not None:
        head += [f"{rev} wall s", f"now / {rev}"]
    body = []
    for r in rows:
        line = [r["command"], f"{r['fjord_s']:.3f}", r["baseline"], f"{r['baseline_s']:.3f}", f"{r['ratio']:.2f}"]
        if rev is not None:
            line += [f"{r['against_s']:.3f}", f"{r['fjord_s'] / r['against_s']:.2f}"]
        body.append(line)
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body, strict=True)]
    for i, line in enumerate([head, ["-" * w for w in widths], *body]):
        left = (0, 2) if i != 1 else range(len(line))  # text columns left-aligned, numbers right-aligned
        cells = [c.ljust(w) if j in left else c.rjust(w) for j, (c, w) in enumerate(zip(line, widths, strict=True))]
        print("  ".join(cells).rstrip())


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7, help="rounds; the median is shown")
    parser.add_argument("--against", metavar="REV", help="also time the commands of this git revision")
    parser.add_argument("--json", action="store_true", help="also print the results as JSON")
    args = parser.parse_args(argv)
    print(f"fjord cli_start: repeat={args.repeat}, {os.cpu_count()} CPUs, python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory(prefix="fjord-cli-start-") as tmp:
        against = worktree(args.against, Path(tmp) / "rev") if args.against else None
        for components in (ROOT / "components", against):
            if components is not None and not compileall.compile_dir(components, quiet=1):
                raise SystemExit(f"byte-compiling {components} failed")
        try:
            rows = measure(args.repeat, against)
        finally:
            if against is not None:
                subprocess.run(["git", "worktree", "remove", "--force", str(against.parent)], cwd=ROOT, check=False)
    print_table(rows, args.against)
    if args.json:
        print(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
