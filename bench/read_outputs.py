"""Snapshot everything the read side prints or writes for some study folders, and compare two
snapshots: a refactor of the analysis layer or of a renderer must leave them unchanged.

    python bench/read_outputs.py snapshot OUT FOLDER [FOLDER ...]
    python bench/read_outputs.py diff BEFORE AFTER

``snapshot`` runs, through the installed command line, ``export`` in every format, ``summary``,
``show``, ``ls`` of each folder's parent, ``compare`` of the first two folders and ``report``,
and writes what each prints or writes under OUT (the report's HTML with its time stamp, the
library versions and Plotly's random element ids blanked). Run it once with the code before a
change (e.g. from a ``git worktree`` of the old commit, with ``PYTHONPATH`` pointing at it) and
once after; ``diff`` lists every file that differs and exits 1 when any does.
"""

from __future__ import annotations

import difflib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

EXPORT_FORMATS = ("csv", "json", "markdown", "latex")
#: Parts of a report that change from one build to the next without the study changing.
_VOLATILE = (
    (re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} UTC"), "<time>"),
    (re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"), "<uuid>"),
    (re.compile(r"<dt>[\w.-]+</dt><dd>[^<]*</dd>"), "<version>"),
)


def _cli(*args: str) -> str:
    """Run ``infovae-sweep ARGS`` with a wide terminal; returns what it printed and its exit
    status (so a refused folder is part of the snapshot too)."""
    env = dict(os.environ, COLUMNS="250", TERM="dumb", NO_COLOR="1")
    done = subprocess.run(
        [sys.executable, "-m", "sweep.cli", *args], capture_output=True, text=True, env=env
    )
    return f"exit {done.returncode}\n{done.stdout}{done.stderr}"


def _normalise(text: str, folder: Path, work: Path) -> str:
    text = text.replace(str(work), "<work>").replace(str(folder), "<folder>")
    text = text.replace(str(work.parent), "<root>")
    for pattern, replacement in _VOLATILE:
        text = pattern.sub(replacement, text)
    return text


def snapshot(out: Path, folders: list[Path]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for folder in folders:
        name = folder.name
        target = out / name
        target.mkdir(exist_ok=True)
        with tempfile.TemporaryDirectory() as scratch:
            work = Path(scratch) / name
            shutil.copytree(folder, work, ignore=shutil.ignore_patterns("export", "*.html"))

            def keep(
                file: str,
                text: str,
                target: Path = target,
                folder: Path = folder,
                work: Path = work,
            ) -> None:
                (target / file).write_text(_normalise(text, folder, work))

            for fmt in EXPORT_FORMATS:
                exported = work / f"export-{fmt}"
                keep(
                    f"export-{fmt}.out",
                    _cli("export", str(work), "--format", fmt, "--out", str(exported)),
                )
                for path in sorted(exported.glob("*")):
                    keep(f"export-{fmt}-{path.name}", path.read_text())
            keep("summary.out", _cli("summary", str(work)))
            keep("show.out", _cli("show", str(work), "--top", "10"))
            keep("ls.out", _cli("ls", str(work.parent)))
            keep("report.out", _cli("report", str(work)))
            page = work / "report.html"
            keep("report.html", page.read_text() if page.is_file() else "(no report)")
    if len(folders) >= 2:
        with tempfile.TemporaryDirectory() as scratch:
            page = Path(scratch) / "compare.html"
            text = _cli("compare", str(folders[0]), str(folders[1]), "--out", str(page))
            (out / "compare.out").write_text(_normalise(text, folders[0], Path(scratch)))
            html = page.read_text() if page.is_file() else "(no page)"
            (out / "compare.html").write_text(_normalise(html, folders[0], Path(scratch)))


def diff(before: Path, after: Path) -> int:
    files = sorted(
        {p.relative_to(before) for p in before.rglob("*") if p.is_file()}
        | {p.relative_to(after) for p in after.rglob("*") if p.is_file()}
    )
    changed = 0
    for rel in files:
        a, b = before / rel, after / rel
        if not a.exists() or not b.exists():
            print(f"only in {'after' if b.exists() else 'before'}: {rel}")
            changed += 1
            continue
        if a.read_text() == b.read_text():
            continue
        changed += 1
        lines = list(
            difflib.unified_diff(
                a.read_text().splitlines(),
                b.read_text().splitlines(),
                str(a),
                str(b),
                n=0,
                lineterm="",
            )
        )
        print(f"differs: {rel} ({len(lines)} diff lines)")
        for line in lines[:12]:
            print("   ", line[:300])
    print(f"{len(files)} files compared, {changed} differ")
    return 1 if changed else 0


def main(argv: list[str]) -> int:
    if len(argv) >= 3 and argv[0] == "snapshot":
        snapshot(Path(argv[1]), [Path(f) for f in argv[2:]])
        return 0
    if len(argv) == 3 and argv[0] == "diff":
        return diff(Path(argv[1]), Path(argv[2]))
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
