"""Running a study: what to run, where it runs, and what is recorded of each trial.

:mod:`sweep.run.runner` composes the modules below in :func:`~sweep.run.runner.run_study`;
each trial travels through them as one :mod:`sweep.run.trial` (its bookkeeping
:class:`~sweep.run.trial.TrialMeta` on the way in, its typed
:class:`~sweep.run.trial.TrialResult` on the way out).

What to run:

- :mod:`sweep.run.searcher`: Optuna through its public ask/tell interface, one study per arm,
  repeats recorded as copies, each arm's confirm trials suggested once its search is over.
- :mod:`sweep.run.confirm_planner`: which search trials each arm's confirm phase re-trains.
- :mod:`sweep.run.scheduler`: ASHA early stopping per arm.
- :mod:`sweep.run.resume`: what a resumed run finds already done.

Where it runs:

- :mod:`sweep.run.ray_environment`: the environment Tune reads; starting or attaching to Ray.
- :mod:`sweep.run.ray_storage`: Ray Tune's storage path and the guard that refuses a path the
  cluster's nodes cannot reach (the Optuna storage is :mod:`sweep.optuna_storage`, the study
  folder :mod:`sweep.store`).
- :mod:`sweep.run.mirror`: the study folder copied under a storage URI, pulled back to resume
  or read.

What is recorded:

- :mod:`sweep.run.store_callback`: the driver's record of every finished trial in the study
  folder's store.
- :mod:`sweep.run.optuna_record`: every trial in the Optuna storage, as optuna-dashboard
  shows it (the trials Optuna did not sample, and what a killed driver did not tell it).
- :mod:`sweep.run.trackers`: MLflow, TensorBoard and W&B, opt-in.
- :mod:`sweep.run.events`: per-arm progress for the live view and the mirror.

Importing this package (or any module of it) does not import Ray: Ray's base classes are
subclassed on first use.
"""
