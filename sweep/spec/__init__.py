"""Study files: one YAML file validated into one frozen :class:`StudySpec`.

A study compares *arms* (families of objectives such as the ELBO and InfoVAE-MMD), giving every
arm the same search budget over its own space, then re-trains the best configurations of each
arm with fresh seeds (the *confirm* phase). ``load_study(path)`` reads and checks a file; after
that the spec is the only source of truth for the runner, the CLI and the report.

The format (every key is checked; unknown keys are refused)::

    name: digits                 # study name = results folder name; [A-Za-z0-9_.-]+
    description: free text       # optional
    data:                        # -> TrialConfig.data (data.* keys are set here, except that
                                 #    an arm may fix or search data.train_size, see below)
      dataset: digits            # digits | mnist | fashion_mnist | array           (required)
      binarize: dynamic          # dynamic | static | none                 (default dynamic)
      seed: 0                    # split, static-binarisation and train_size-subset seed
      data_dir: null             # null: $INFOVAE_DATA_DIR, else the per-user cache
      train_size: null           # null: the whole training split; N: a subset of N training
                                 # images chosen by data.seed (the same for every arm and
                                 # train.seed; validation and test whole). 2 <= N <= the split
                                 # (digits 1,258; mnist, fashion_mnist 50,000; array: the
                                 # file's training split)
      path: null                 # array only: the .npz / .npy file (docs/studies.md)
      val_fraction: 0.1          # array without its own splits: validation and test shares
      test_fraction: 0.2         # (rounded to whole images); the rest trains
    defaults:                    # TrialConfig settings shared by every arm, nested or dotted:
      model: {latent_dim: 8, encoder: {kind: mlp, width: 256, depth: 2}}
      train.epochs: 20           # (see infovae_core/config.py for every key)
      eval: {iwae_samples: 100, probe_labels: [100]}
    arms:                        # at least one; names [A-Za-z0-9_-]+; order = arm index
      elbo:
        fixed: {objective.alpha: 0, objective.lambda: 1}     # dotted (or nested) settings
        search:                                              # dotted key -> distribution
          model.decoder.width: {choice: [64, 128, 256]}
      infovae-mmd:
        fixed: {objective.divergence: mmd}
        search:
          objective.lambda: {log_uniform: {low: 1, high: 10000}}
          objective.alpha: {uniform: {low: 0, high: 1}}
          objective.kernel: {choice: [rbf, imq]}
          objective.scales: {choice: [[1.0], [0.5, 1.0, 2.0]]}
    search:
      sampler: tpe               # tpe | random | cmaes | grid | nsga2                (default tpe)
      trials_per_arm: 12         # search trials per arm (grid: may be left out, see below)
      max_concurrent: 2          # trials running at once                            (default 1)
      seed: 0                    # sampler seed; each arm derives its own            (default 0)
      seed_policy: fixed         # fixed: every search trial trains with train.seed;
                                 # per_trial: train.seed + trial index
      tpe_window: 500            # tpe only: condition on the arm's latest N >= 10 trials,
                                 # which bounds the time per suggestion  (default: all)
      objectives:                # one or more; metric.<name> from docs/metrics.md
        - {metric: metric.mmd, direction: minimize}
      early_stopping:            # optional, single-objective only
        {scheduler: asha, metric: val.loss, mode: min, grace_period: 2, reduction_factor: 3}
    confirm:                     # optional; default {top_k: 1, seeds: 3}
      top_k: 1                   # best configurations per arm re-trained ...
      seeds: 3                   # ... with this many seeds (0 disables the confirm phase)
      seed_start: 1000           # confirm seeds are seed_start, seed_start + 1, ...
      rank_by: null              # objective metric that ranks trials (default: the first)
    resources: {cpu: 1, gpu: 0}  # per trial; fractions allowed, gpu > 1 must be whole
    storage: null                # Ray Tune storage (bucket URI or shared mount) for clusters
    convergence:                 # optional: how the report and `show` judge each trial's
      metric: val.elbo           # curve (sweep.analysis.convergence); val.<term> or train.<term>
      tolerance: 0.005           # converged when the relative change of the metric's mean over
                                 # the last tenth of the epochs is <= this (> 0)

``data.train_size`` is the one data setting an arm may also set, in ``fixed`` or ``search``
(``{grid: [100, 300, 1258]}`` with ``sampler: grid`` for the paper's small-data experiment): it
does not change the dataset the runner loads once per study, only the subset each trial trains
on. An arm's value overrides ``data.train_size`` of the ``data:`` block, like ``fixed`` overrides
``defaults``. Every other data.* key is refused in ``defaults``, ``fixed`` and ``search``.

Distributions (see :mod:`sweep.space`): ``{uniform: {low, high}}``, ``{log_uniform: {low, high}}``
(``low > 0``), ``{int: {low, high, step: 1, log: false}}``, ``{choice: [values]}``,
``{grid: [values]}`` (grid axes need ``sampler: grid``).

Rules checked at load, each error naming the file, line and YAML path of the offending key
(``studies/x.yaml:14: arms.infovae.search.objective.lambda.log_uniform.low: must be > 0 ...``):

- every arm's TrialConfig is *built* from ``data`` + ``defaults`` + ``fixed`` at every corner
  of its search space (low and high of each range, every choice/grid value, all combinations up
  to 4096 points, else one key at a time), so e.g. a lambda range where
  ``alpha + lambda - 1 < 0`` or a width of 0 is refused with the searched key named;
- a key is fixed or searched in an arm, not both; integer settings take ``int``/``choice``
  ranges only; ``uniform``/``log_uniform`` need numeric settings;
- objectives: ``metric.{mmd, log_det_cov, mutual_info, nll_iwae, elbo, recon, kl,
  active_units}`` or ``metric.probe_acc_<n>`` with n in every arm's ``eval.probe_labels``;
  directions ``minimize``/``maximize``; no metric twice;
- ``data.train_size`` (in ``data:`` or an arm) is an integer >= 2, at most the training split
  of the dataset, at every corner of a searched range;
- ``convergence.metric`` is ``val.<term>`` or ``train.<term>`` with term in ``loss, recon, kl,
  divergence, elbo``; ``convergence.tolerance > 0``;
- samplers: ``nsga2`` needs >= 2 objectives; several objectives need ``tpe``, ``random``,
  ``grid`` or ``nsga2`` (``cmaes`` is single-objective); ASHA early stopping is
  single-objective; its metric is ``val.<term>`` or ``train.<term>`` with term in
  ``loss, recon, kl, divergence, elbo``; ``mode`` (min/max) may be left out and is then implied
  (max for elbo, min otherwise); its grace period must be below every arm's ``train.epochs``;
- the grid sampler takes only ``grid``/``choice`` distributions; ``grid`` needs the grid
  sampler. Each arm runs its whole grid: ``trials_per_arm`` may be left out, and when given it
  must equal every arm's grid size (a mismatch is refused rather than silently truncated);
- an arm with no search space needs ``seed_policy: per_trial`` (or the grid sampler), else
  every trial would train the same configuration; ``per_trial`` cannot be combined with a
  searched ``train.seed``;
- ``confirm.top_k`` is at most the number of search trials per arm; ``rank_by`` is one of the
  objectives; ``max_concurrent >= 1``; ``cpu > 0``; ``gpu >= 0``.

Numbers like ``1e-3`` are read as floats (plain PyYAML would read a string); otherwise the file
is read with ``yaml.SafeLoader`` (no tags that build objects). Duplicate keys are refused.

The package, in the order a file flows through it: :mod:`sweep.spec.yaml` reads the text and
the line of every key, :mod:`sweep.spec.study_spec` validates it into a :class:`StudySpec` (with
:mod:`sweep.spec.checks` for the settings against TrialConfig), and :mod:`sweep.spec.spec_errors`
turns what is wrong into ``file:line: path: message``. What a spec will run is
:mod:`sweep.plan`.
"""

from __future__ import annotations

from sweep.spec.checks import ARM_DATA_KEYS
from sweep.spec.spec_errors import StudyIssue, StudySpecError
from sweep.spec.study_spec import (
    EPOCH_TERMS,
    EVAL_METRICS,
    ArmSpec,
    ConfirmSpec,
    ConvergenceSpec,
    DataSpec,
    EarlyStoppingSpec,
    ObjectiveSpec,
    ResourcesSpec,
    SearchSpec,
    StudySpec,
    load_study,
)

__all__ = [
    "ARM_DATA_KEYS",
    "EPOCH_TERMS",
    "EVAL_METRICS",
    "ArmSpec",
    "ConfirmSpec",
    "ConvergenceSpec",
    "DataSpec",
    "EarlyStoppingSpec",
    "ObjectiveSpec",
    "ResourcesSpec",
    "SearchSpec",
    "StudyIssue",
    "StudySpec",
    "StudySpecError",
    "load_study",
]
