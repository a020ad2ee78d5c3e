"""A graceful stop of a running study on SIGTERM or SIGINT.

Job schedulers and service managers stop a program with SIGTERM (Slurm before a preemption or
at the time limit, Kubernetes when a pod is deleted, systemd, ``timeout``), a user at the
terminal with Ctrl-C (SIGINT). On the first of either signal the driver:

1. stops taking new trials and tells Ray Tune to end the run: Tune stops the trials in flight,
   whose last checkpoints stay in Ray Tune's storage path, so that ``resume`` continues them
   from there (:mod:`sweep.run.checkpoint_index`);
2. keeps every trial that finished (each was recorded as it ended);
3. ends with :class:`StopRequested`, from which the command line writes the report as partial,
   prints the trials done and the ``resume`` command, and exits ``128 + signal``: 130 for
   SIGINT, 143 for SIGTERM.

A second signal, or a stop still going after :data:`STOP_SECONDS`, ends the driver at once
(``os._exit`` with the same code): what was recorded stays recorded, since every results file
is written atomically, and ``resume`` runs the trials that were in flight again.

When a whole process group is signalled (``timeout``, Slurm without ``--signal=B:``, systemd's
default ``KillMode``), Ray's own processes receive the signal as well and end, and Tune can no
longer stop its trials: once the driver sees one of its embedded Ray's servers gone, it waits
:data:`RAY_GONE_SECONDS` for what is being recorded, then ends at once with the same code. The
checkpoints already on disk are where ``resume`` continues the trials that were in flight.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = [
    "BEFORE_EXIT_SECONDS",
    "RAY_GONE_SECONDS",
    "STOP_SECONDS",
    "GracefulStop",
    "StopRequested",
    "graceful_stop",
]

#: Longest a graceful stop may take before the driver ends at once. Below the 30 seconds that
#: Slurm (``KillWait``) and Kubernetes (``terminationGracePeriodSeconds``) leave by default
#: between SIGTERM and SIGKILL.
STOP_SECONDS = 20.0

#: Seconds the driver waits, once its embedded Ray's servers have ended, before it ends.
RAY_GONE_SECONDS = 3.0

#: Seconds the actions registered with :meth:`GracefulStop.before_exit` get when the driver
#: ends at once.
BEFORE_EXIT_SECONDS = 2.0

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_RAY_SERVERS = ("raylet", "gcs_server")


def _ray_servers() -> set[int]:
    """Ids of this process's living children that are an embedded Ray's servers (Linux's
    ``/proc``; elsewhere none are found and only :data:`STOP_SECONDS` bounds a stop)."""
    found: set[int] = set()
    me = os.getpid()
    try:
        entries = [e for e in os.listdir("/proc") if e.isdigit()]
    except OSError:
        return found
    for entry in entries:
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8", errors="replace") as handle:
                stat = handle.read()
        except OSError:
            continue
        name = stat[stat.find("(") + 1 : stat.rfind(")")]
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 1 and fields[1] == str(me) and name in _RAY_SERVERS and fields[0] != "Z":
            found.add(int(entry))
    return found


class StopRequested(KeyboardInterrupt):
    """A signal asked the run to stop; ``exit_code`` is ``128 + signal``."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def _say(text: str) -> None:
    try:
        sys.stderr.write(text + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):  # a closed terminal must not stop the stop
        pass


class GracefulStop:
    """The signal handlers of one run (see the module docstring); ``signum`` is the first signal
    received (None: none)."""

    def __init__(self, seconds: float = STOP_SECONDS, resume: str = "") -> None:
        self.seconds = seconds
        #: The command that continues the study, said when the driver ends at once.
        self.resume = resume
        self.signum: int | None = None
        self._servers: set[int] = set()
        self._done = threading.Event()
        self._saved: dict[int, object] = {}
        self._before_exit: list[Callable[[], None]] = []

    def before_exit(self, action: Callable[[], None]) -> None:
        """Run ``action`` before the driver ends at once (a second signal, a stop past its
        deadline, Ray's processes gone), e.g. to mark the run record interrupted. It gets
        :data:`BEFORE_EXIT_SECONDS` in all; what it raises is ignored."""
        self._before_exit.append(action)

    def handle(self, signum: int, frame) -> None:
        name = signal.Signals(signum).name
        if self.signum is not None:
            self._exit_now(f"{name} again")
        self.signum = signum
        _say(
            f"{name} received: stopping the study; no new trials, trials in flight stop at their "
            f"last checkpoint (send {name} again to stop at once)"
        )
        threading.Thread(target=self._deadline, name="graceful-stop", daemon=True).start()
        tune_stop = signal.getsignal(signal.SIGUSR1)
        if callable(tune_stop):
            # Ray Tune's own stop (it always listens to SIGUSR1 during a run): it ends the
            # trial loop, saves its experiment state and stops the trials in flight.
            tune_stop(signal.SIGUSR1, frame)
        else:  # no Tune run going on yet (or any more): unwind the driver
            raise StopRequested(signum)

    def _exit_now(self, why: str) -> None:
        then = f"; continue with: {self.resume}" if self.resume else ""
        _say(f"{why}: stopping at once; recorded trials are kept{then}")
        # In a thread of their own: an action stuck on a lock the interrupted main thread
        # holds must not keep the driver from ending.
        worker = threading.Thread(target=self._run_before_exit, name="before-exit", daemon=True)
        worker.start()
        worker.join(BEFORE_EXIT_SECONDS)
        os._exit(128 + (self.signum or signal.SIGTERM))

    def _run_before_exit(self) -> None:
        for action in self._before_exit:
            try:
                action()
            except Exception:  # ending at once matters more than any one action
                pass

    def _deadline(self) -> None:
        end = time.monotonic() + self.seconds
        gone_since: float | None = None
        while not self._done.wait(0.5):
            now = time.monotonic()
            if now >= end:
                self._exit_now(f"the stop took over {self.seconds:.0f} s")
            if self._servers - _ray_servers():  # one of them ended: Ray cannot stop trials
                gone_since = now if gone_since is None else gone_since
                if now - gone_since >= RAY_GONE_SECONDS:
                    self._exit_now("Ray's processes ended with the signal")

    def raise_if_stopped(self) -> None:
        """:class:`StopRequested` when a signal arrived (the Tune run ended early for it)."""
        if self.signum is not None:
            raise StopRequested(self.signum)

    def install(self) -> GracefulStop:
        """Handle SIGINT and SIGTERM (after Ray's start, whose handlers they replace); in a
        thread other than the main one nothing is installed."""
        if threading.current_thread() is not threading.main_thread():
            return self
        self._servers = _ray_servers()
        self._saved = {s: signal.getsignal(s) for s in (*_SIGNALS, signal.SIGUSR1)}
        # SIGUSR1 is Ray Tune's to install while its run goes on; until then there is none.
        signal.signal(signal.SIGUSR1, signal.SIG_DFL)
        for signum in _SIGNALS:
            signal.signal(signum, self.handle)
        return self

    def close(self) -> None:
        """The driver is done: no deadline any more, the earlier handlers back."""
        self._done.set()
        for signum, handler in self._saved.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._saved = {}


@contextmanager
def graceful_stop(seconds: float = STOP_SECONDS, resume: str = "") -> Iterator[GracefulStop]:
    """Handle SIGINT and SIGTERM as a graceful stop for the duration of the block (main thread
    only: elsewhere the block runs with the handlers it had)."""
    stop = GracefulStop(seconds, resume).install()
    try:
        yield stop
    finally:
        stop.close()
