"""The study's trials through Ray Tune: one Tuner per run, search and confirm alike.

- :mod:`sweep.tune.environment`: the environment Tune reads; starting or attaching to Ray.
- :mod:`sweep.tune.searcher`: Optuna through its public ask/tell interface, one study per arm,
  repeats recorded as copies, each arm's confirm trials suggested once its search is over.
- :mod:`sweep.tune.confirm`: which search trials each arm's confirm phase re-trains.
- :mod:`sweep.tune.scheduler`: ASHA early stopping per arm.
- :mod:`sweep.tune.callback`: the driver-side record of every finished trial in the store.
- :mod:`sweep.tune.events`: per-arm progress for the live view and the mirror.
- :mod:`sweep.tune.storage`: the storage-path guard, the Optuna storage choice, the mirror.
- :mod:`sweep.tune.resume`: what a resumed run finds already done.

:mod:`sweep.runner` composes them in :func:`sweep.runner.run_study`. Importing this package
(or any module of it) does not import Ray: Ray's base classes are subclassed on first use.
"""
