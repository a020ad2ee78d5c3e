"""The run record of a study, ``<study folder>/run.json``, written by the driver itself: which
code ran it, on what machine, when and under what load, and the command that ran it. A study
run several times (``resume``) has one entry per run, in order.

Format (``format`` 1)::

    {"format": 1, "study": "<name>", "runs": [{
        "command": ["infovae-sweep", "run", "studies/digits.yaml"],
        "status": "running" | "finished" | "interrupted" | "failed",
        "started_at": "2026-12-06T09:30:00+00:00", "ended_at": ... | null,
        "wall_seconds": 123.4 | null,
        "load_average": {"start": [1 min, 5 min, 15 min], "end": [...] | null},
        "trials_recorded": {"start": 0, "end": 26 | null},
        "code": {"version": "0.1.0", "commit": "<sha>" | null, "dirty": false | null,
                 "infovae_core_sha256": "<hash of the infovae_core source that ran>"},
        "packages": {"torch": "2.13.0", ...}, "python": "3.11.7", "os": "Linux-...",
        "cpu": {"model": "...", "cores": 2}, "gpus": ["NVIDIA H100 ..."]}]}

``code.commit`` and ``code.dirty`` come from git: the checkout the running ``sweep`` package
was imported from, else the working directory when it is a checkout of this project; both are
null when neither is. ``code.infovae_core_sha256`` hashes the training code that actually ran,
whatever the install, so a result can be tied to it even without git. Readers use
:func:`sweep.analysis.load.read_run_record`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

import infovae_core
from sweep import names
from sweep.atomic_files import atomic_write_text

FORMAT = 1
RunStatus = Literal["running", "finished", "interrupted", "failed"]
_GIT_TIMEOUT_S = 10


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # not available on this platform
        return None


def _git(folder: Path, *args: str) -> str | None:
    git = shutil.which("git")
    if git is None:
        return None
    try:
        done = subprocess.run(
            [git, "-C", str(folder), *args],
            capture_output=True,
            text=True,
            timeout=_GIT_TIMEOUT_S,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def _checkout(candidates: list[Path]) -> Path | None:
    """The first candidate inside a git checkout of this project (it has ``infovae_core/``)."""
    for folder in candidates:
        top = _git(folder, "rev-parse", "--show-toplevel")
        if top and (Path(top.strip()) / "infovae_core").is_dir():
            return Path(top.strip())
    return None


def source_sha256(package: Path) -> str:
    """SHA-256 over the package's ``.py`` files (relative path and bytes, in path order)."""
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()


def code_version() -> dict[str, Any]:
    """``version``, git ``commit`` and ``dirty`` (null outside a checkout), and the hash of the
    ``infovae_core`` source that is imported."""
    core = Path(infovae_core.__file__).resolve().parent
    checkout = _checkout([core.parent, Path.cwd()])
    commit = dirty = None
    if checkout is not None:
        head = _git(checkout, "rev-parse", "HEAD")
        status = _git(checkout, "status", "--porcelain", "--untracked-files=no")
        commit = head.strip() if head else None
        dirty = bool(status.strip()) if status is not None else None
    try:
        version = metadata.version("infovae-sweep")
    except metadata.PackageNotFoundError:
        version = None
    return {
        "version": version,
        "commit": commit,
        "dirty": dirty,
        "infovae_core_sha256": source_sha256(core),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _gpus() -> list[str]:
    """GPU names from ``nvidia-smi`` (the driver need not import torch to know them)."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        done = subprocess.run(
            [smi, "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=_GIT_TIMEOUT_S,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in done.stdout.splitlines() if line.strip()]


def package_versions() -> dict[str, str]:
    """The installed version of each of :data:`sweep.names.LIBRARIES` ("not installed" when
    absent)."""
    found = {}
    for name in names.LIBRARIES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def command_line(argv: list[str] | None = None) -> list[str]:
    """The command as the user typed it: the program by its name, not its installed path."""
    argv = list(sys.argv if argv is None else argv)
    if argv:
        argv[0] = Path(argv[0]).name
        if argv[0] in ("__main__.py", "cli.py"):
            argv[0] = "infovae-sweep"
    return argv


@dataclass
class RunRecorder:
    """One run's entry of ``run.json``: :meth:`start` writes it as ``running``, :meth:`finish`
    completes it. Each write replaces the file atomically."""

    folder: Path
    study: str
    entry: dict[str, Any] = field(default_factory=dict)
    _clock: float = 0.0

    @property
    def path(self) -> Path:
        return self.folder / names.RUN_RECORD_FILE

    def _runs(self) -> list[dict[str, Any]]:
        try:
            document = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return []
        runs = document.get("runs") if isinstance(document, dict) else None
        return [run for run in runs if isinstance(run, dict)] if isinstance(runs, list) else []

    def _write(self, runs: list[dict[str, Any]]) -> None:
        document = {"format": FORMAT, "study": self.study, "runs": runs}
        atomic_write_text(self.path, json.dumps(document, indent=2) + "\n")

    def start(self, trials_recorded: int, argv: list[str] | None = None) -> None:
        self._clock = time.monotonic()
        self.entry = {
            "command": command_line(argv),
            "status": "running",
            "started_at": _now(),
            "ended_at": None,
            "wall_seconds": None,
            "load_average": {"start": _load_average(), "end": None},
            "trials_recorded": {"start": trials_recorded, "end": None},
            "code": code_version(),
            "packages": package_versions(),
            "python": platform.python_version(),
            "os": platform.platform(),
            "cpu": {"model": _cpu_model(), "cores": os.cpu_count()},
            "gpus": _gpus(),
        }
        self._write([*self._runs(), self.entry])

    def finish(self, status: RunStatus, trials_recorded: int) -> None:
        if not self.entry:
            return
        started = self.entry["started_at"]
        self.entry.update(
            status=status,
            ended_at=_now(),
            wall_seconds=round(time.monotonic() - self._clock, 1),
        )
        self.entry["load_average"]["end"] = _load_average()
        self.entry["trials_recorded"]["end"] = trials_recorded
        runs = self._runs()
        # This run's entry is the last one that started when it did (another driver cannot
        # have written meanwhile: the study's lock is held).
        for index in range(len(runs) - 1, -1, -1):
            if runs[index].get("started_at") == started:
                runs[index] = self.entry
                break
        else:
            runs.append(self.entry)
        self._write(runs)
