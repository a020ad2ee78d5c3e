"""Running a study: what to run, where it runs, and what is recorded of each trial.

- :mod:`sweep.run.trial`: one trial as it crosses Ray Tune (its bookkeeping, its TrialConfig,
  its typed :class:`~sweep.run.trial.TrialResult`).

Importing this package (or any module of it) does not import Ray.
"""
