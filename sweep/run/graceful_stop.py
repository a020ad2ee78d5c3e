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
default ``KillMode``), Ray's own processes receive the signal as well and end; the driver then
stops the same way, bounded by :data:`STOP_SECONDS`.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["STOP_SECONDS", "GracefulStop", "StopRequested", "graceful_stop"]

#: Longest a graceful stop may take before the driver ends at once. Below the 30 seconds that
#: Slurm (``KillWait``) and Kubernetes (``terminationGracePeriodSeconds``) leave by default
#: between SIGTERM and SIGKILL.
STOP_SECONDS = 20.0

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


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

    def __init__(self, seconds: float = STOP_SECONDS) -> None:
        self.seconds = seconds
        self.signum: int | None = None
        self._done = threading.Event()
        self._saved: dict[int, object] = {}

    def handle(self, signum: int, frame) -> None:
        name = signal.Signals(signum).name
        if self.signum is not None:
            _say(f"{name} again: stopping at once; recorded trials are kept")
            os._exit(128 + self.signum)
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

    def _deadline(self) -> None:
        if self._done.wait(self.seconds):
            return  # the driver finished its stop in time
        _say(f"the stop took over {self.seconds:.0f} s: stopping at once; recorded trials are kept")
        os._exit(128 + (self.signum or signal.SIGTERM))

    def raise_if_stopped(self) -> None:
        """:class:`StopRequested` when a signal arrived (the Tune run ended early for it)."""
        if self.signum is not None:
            raise StopRequested(self.signum)

    def install(self) -> GracefulStop:
        """Handle SIGINT and SIGTERM (after Ray's start, whose handlers they replace); in a
        thread other than the main one nothing is installed."""
        if threading.current_thread() is not threading.main_thread():
            return self
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
def graceful_stop(seconds: float = STOP_SECONDS) -> Iterator[GracefulStop]:
    """Handle SIGINT and SIGTERM as a graceful stop for the duration of the block (main thread
    only: elsewhere the block runs with the handlers it had)."""
    stop = GracefulStop(seconds).install()
    try:
        yield stop
    finally:
        stop.close()
