"""Write a synthetic study folder with known answers, for tests, benchmarks and demos.

The folder is written as the runner writes one (docs/results.md): the study file through the
spec (:class:`sweep.spec.StudySpec`, so :func:`sweep.spec.load_study` accepts it) and the trials
and epochs through the store (:class:`sweep.store.ResultsStore`), plus optionally ``optuna.db``
and ``artifacts/<trial_id>/`` with ``latents.npy``, ``samples.png`` and ``reconstructions.png``.
Metrics are drawn from normal distributions whose means are given per arm, so a report built
from it has a known verdict.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from sweep import names
from sweep.images import encode_png
from sweep.spec import StudySpec
from sweep.store import ResultsStore


@dataclass(frozen=True)
class SyntheticArm:
    """An arm of the synthetic study.

    ``alpha``/``lambda_`` are fixed unless ``search_lambda`` (then lambda is drawn
    log-uniformly in [1, 1000] and the kernel from rbf/imq in search trials).
    ``means``/``sds`` give the normal distribution of each ``metric.<name>`` in the confirm
    phase (search trials add extra spread). ``latent_scale`` scales the stored latents' axes.
    ``still_rising``: the per-epoch curves still improve linearly at the last epoch (7 % per
    epoch over 8 epochs: not converged by :mod:`sweep.analysis.convergence`'s rule); otherwise they
    decay exponentially with a time constant of a tenth of the epochs (at least 0.8) and are
    flat, to well within 0.5 %, by the end.
    """

    alpha: float = 0.0
    lambda_: float = 1.0
    search_lambda: bool = False
    means: Mapping[str, float] = field(default_factory=dict)
    sds: Mapping[str, float] = field(default_factory=dict)
    latent_scale: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0)
    still_rising: bool = False


ELBO_MEANS = {
    "mmd": 0.05,
    "log_det_cov": -3.0,
    "mutual_info": 2.0,
    "nll_iwae": 95.0,
    "elbo": -100.0,
    "recon": -80.0,
    "kl": 20.0,
    "active_units": 5.0,
    "probe_acc_100": 0.70,
}
INFO_MEANS = {
    "mmd": 0.005,
    "log_det_cov": -0.3,
    "mutual_info": 3.0,
    "nll_iwae": 94.0,
    "elbo": -99.0,
    "recon": -75.0,
    "kl": 24.0,
    "active_units": 8.0,
    "probe_acc_100": 0.80,
}
DEFAULT_SD = {
    "mmd": 0.002,
    "log_det_cov": 0.2,
    "mutual_info": 0.1,
    "nll_iwae": 0.5,
    "elbo": 0.5,
    "recon": 0.5,
    "kl": 0.5,
    "active_units": 0.5,
    "probe_acc_100": 0.01,
}


def default_arms() -> dict[str, SyntheticArm]:
    """An ELBO arm and an InfoVAE arm where InfoVAE is clearly better on every claim."""
    return {
        "elbo": SyntheticArm(
            alpha=0.0, lambda_=1.0, means=ELBO_MEANS, latent_scale=(1.5, 1.0, 0.2, 0.05)
        ),
        "infovae": SyntheticArm(alpha=0.0, lambda_=100.0, search_lambda=True, means=INFO_MEANS),
    }


def png_bytes(pixels: np.ndarray) -> bytes:
    """Encode a grey image [h, w] with values in [0, 1] as an 8-bit PNG."""
    return encode_png((np.clip(pixels, 0, 1) * 255).astype(np.uint8))


#: Decoder widths the synthetic search draws from (a ``choice`` in the study file).
SEARCH_WIDTHS: tuple[int, ...] = (64, 128, 256, 512)
#: Decoder width of the confirmed configuration.
CONFIRM_WIDTH = 256
#: The ``log_uniform`` range of a searched lambda and the searched kernels.
LAMBDA_RANGE: tuple[float, float] = (1.0, 1000.0)
KERNELS: tuple[str, ...] = ("rbf", "imq")


def synthetic_spec(
    arms: Mapping[str, SyntheticArm],
    *,
    n_search: int,
    n_seeds: int,
    failed_per_arm: int,
    name: str = "synthetic",
) -> StudySpec:
    """The study file of the synthetic study, validated by the project's loader
    (:meth:`StudySpec.from_yaml_text`, the parser of :func:`sweep.spec.load_study`): what a
    runner given it would search (``n_search + failed_per_arm`` trials per arm) and confirm
    (``n_seeds`` seeds from 0)."""
    spec_arms: dict[str, object] = {}
    for arm, truth in arms.items():
        fixed: dict[str, object] = {"objective.alpha": float(truth.alpha)}
        search: dict[str, object] = {"model.decoder.width": {"choice": list(SEARCH_WIDTHS)}}
        if truth.search_lambda:
            low, high = LAMBDA_RANGE
            search["objective.lambda"] = {"log_uniform": {"low": low, "high": high}}
            search["objective.kernel"] = {"choice": list(KERNELS)}
        else:
            fixed["objective.lambda"] = float(truth.lambda_)
        spec_arms[arm] = {"fixed": fixed, "search": search}
    document = {
        "name": name,
        "description": "Synthetic study with known answers.",
        "data": {"dataset": "digits"},
        "defaults": {"model": {"latent_dim": 4, "decoder": {"kind": "mlp", "depth": 2}}},
        "arms": spec_arms,
        "search": {
            "sampler": "tpe",
            "trials_per_arm": max(1, n_search + failed_per_arm),
            "objectives": [
                {"metric": names.metric("nll_iwae"), "direction": "minimize"},
                {"metric": names.metric("mmd"), "direction": "minimize"},
            ],
        },
        "confirm": {"top_k": 1, "seeds": n_seeds, "seed_start": 0},
    }
    return StudySpec.from_yaml_text(yaml.safe_dump(document, sort_keys=False), source=name)


def write_synthetic_study(
    folder: Path,
    *,
    arms: Mapping[str, SyntheticArm] | None = None,
    n_search: int = 12,
    n_seeds: int = 5,
    n_epochs: int = 8,
    failed_per_arm: int = 1,
    artifacts: bool = True,
    optuna_db: bool = False,
    seed: int = 0,
    name: str = "synthetic",
) -> Path:
    """Write a synthetic study into ``folder`` (created; it must not hold another study) and
    return it.

    Per arm: ``n_search`` completed search trials, ``n_seeds`` completed confirm trials of one
    configuration and ``failed_per_arm`` failed search trials; ``n_epochs`` epochs per
    completed trial. The study file is :func:`synthetic_spec`'s and every trial is recorded
    through :class:`~sweep.store.ResultsStore`, as the runner does, then compacted into
    ``trials.parquet`` and ``epochs.parquet``. With ``optuna_db`` the search trials are also
    stored in ``optuna.db`` (one Optuna study per arm, named after it).
    """
    arms = dict(arms) if arms is not None else default_arms()
    spec = synthetic_spec(
        arms, n_search=n_search, n_seeds=n_seeds, failed_per_arm=failed_per_arm, name=name
    )
    store = ResultsStore.create(folder, spec.to_yaml())
    rng = np.random.default_rng(seed)
    t0 = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
    recorded = 0
    with store.lock():  # released: the parts are compacted into the two Parquet files
        for arm_index, (arm, truth) in enumerate(arms.items()):
            plan = (
                [(names.SEARCH, names.COMPLETED, i) for i in range(n_search)]
                + [(names.SEARCH, names.FAILED, n_search + i) for i in range(failed_per_arm)]
                + [(names.CONFIRM, names.COMPLETED, i) for i in range(n_seeds)]
            )
            for phase, status, k in plan:
                row = _trial_row(name, arm, truth, phase, status, k, rng, t0, recorded)
                epochs = (
                    _epoch_rows(truth, arm_index, n_epochs, rng)
                    if status == names.COMPLETED
                    else []
                )
                store.record_trial(row, epochs)
                recorded += 1
    trials = store.trials()
    if artifacts:
        _write_artifacts(store.folder, trials, arms, rng)
    if optuna_db:
        _write_optuna(store.folder, trials, spec)
    return store.folder


def _trial_row(
    study: str,
    arm: str,
    truth: SyntheticArm,
    phase: str,
    status: str,
    k: int,
    rng: np.random.Generator,
    t0: dt.datetime,
    position: int,
) -> dict[str, object]:
    """One trial's row: search trials draw lambda, kernel and width; confirm trials repeat
    the arm's configuration with seed ``k``; metrics are drawn around the arm's means."""
    searched = truth.search_lambda and phase == names.SEARCH
    low, high = LAMBDA_RANGE
    lam = float(np.exp(rng.uniform(np.log(low), np.log(high)))) if searched else truth.lambda_
    kernel = str(rng.choice(KERNELS)) if searched else KERNELS[0]
    width = int(rng.choice(SEARCH_WIDTHS)) if phase == names.SEARCH else CONFIRM_WIDTH
    trial_id = f"{arm}-{phase[0]}{k:05d}"
    row: dict[str, object] = {
        names.STUDY: study,
        names.ARM: arm,
        names.PHASE: phase,
        names.TRIAL_ID: trial_id,
        names.SEED: k if phase == names.CONFIRM else 0,
        names.STATUS: status,
        names.ERROR: None,
        names.STARTED_AT: t0 + dt.timedelta(minutes=position),
        names.ENDED_AT: t0 + dt.timedelta(minutes=position + 1),
        names.TRAIN_SECONDS: 50.0,
        names.EVAL_SECONDS: 10.0,
        names.HOST: "node-1",
        names.DEVICE: "cpu",
        names.param("objective.alpha"): float(truth.alpha),
        names.param("objective.lambda"): float(lam),
        names.param("objective.kernel"): kernel,
        names.param("objective.divergence"): "mmd",
        names.param("objective.scales"): [1.0],
        names.param("model.decoder.kind"): "mlp",
        names.param("model.decoder.width"): width,
        names.param("model.decoder.depth"): 2,
        names.param("model.latent_dim"): 4,
        names.param("data.dataset"): "digits",
        names.param("train.seed"): k,
    }
    spread = 3.0 if phase == names.SEARCH else 1.0
    for metric, mean in truth.means.items():
        sd = truth.sds.get(metric, DEFAULT_SD.get(metric, 0.1)) * spread
        row[names.metric(metric)] = (
            float(rng.normal(mean, sd)) if status == names.COMPLETED else None
        )
    if status == names.FAILED:
        row[names.ERROR] = f"RuntimeError: synthetic failure in {trial_id}\n  at step 3"
        row[names.TRAIN_SECONDS] = 5.0
    return row


def _epoch_rows(
    truth: SyntheticArm, arm_index: int, n_epochs: int, rng: np.random.Generator
) -> list[dict[str, object]]:
    """Per-epoch loss terms of a completed trial (see :class:`SyntheticArm` for the shape)."""
    if not n_epochs:
        return []
    e = np.arange(n_epochs, dtype=float)
    if truth.still_rising:  # improving by 0.5 / (n_epochs - 1) of base each epoch
        decay = 1.5 - 0.5 * e / max(n_epochs - 1, 1)
    else:
        decay = 1 + 4 * np.exp(-e / max(0.8, n_epochs / 10))
    base = -float(truth.means.get("elbo", -100.0))
    terms: dict[str, np.ndarray] = {}
    for split in (names.TRAIN, names.VAL):
        noise = rng.normal(0, 0.05, size=n_epochs)
        terms[f"{split}loss"] = base * decay + noise
        terms[f"{split}recon"] = 0.8 * base * decay + noise
        terms[f"{split}kl"] = 0.2 * base + noise
        terms[f"{split}divergence"] = 0.01 * decay + arm_index * 0.001
        terms[f"{split}elbo"] = -base * decay + noise
    return [
        {names.EPOCH: epoch, **{column: float(v[epoch]) for column, v in terms.items()}}
        for epoch in range(n_epochs)
    ]


def _write_artifacts(
    folder: Path, trials: pd.DataFrame, arms: Mapping[str, SyntheticArm], rng: np.random.Generator
) -> None:
    confirm = trials[names.PHASE] == names.CONFIRM
    done = trials[confirm & (trials[names.STATUS] == names.COMPLETED)]
    for arm, truth in arms.items():
        ids = done.loc[done[names.ARM] == arm, names.TRIAL_ID]
        for trial_id in ids:
            path = folder / names.ARTIFACTS_DIR / str(trial_id)
            path.mkdir(parents=True, exist_ok=True)
            scale = np.asarray(truth.latent_scale, dtype=np.float32)
            z = rng.standard_normal((300, scale.size)).astype(np.float32) * scale
            np.save(path / "latents.npy", z, allow_pickle=False)
            grid = rng.uniform(size=(8 * 4, 8 * 4))
            (path / "samples.png").write_bytes(png_bytes(grid))
            (path / "reconstructions.png").write_bytes(png_bytes(grid[::-1]))


def _write_optuna(folder: Path, trials: pd.DataFrame, spec: StudySpec) -> None:
    """The completed search trials of each arm as an Optuna study named after the arm, with
    the arm's search space as the study file gives it (:meth:`StudySpec.optuna_space`)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(f"sqlite:///{folder / names.OPTUNA_FILE}")
    search = trials[
        (trials[names.PHASE] == names.SEARCH) & (trials[names.STATUS] == names.COMPLETED)
    ]
    for arm, part in search.groupby(names.ARM, sort=False):
        study = optuna.create_study(
            study_name=str(arm), storage=storage, directions=list(spec.search.directions)
        )
        distributions = spec.optuna_space(str(arm))
        batch = []
        for record in part.to_dict("records"):
            params = {key: _plain(record[names.param(key)]) for key in distributions}
            batch.append(
                optuna.trial.create_trial(
                    params=params,
                    distributions=distributions,
                    values=[record[metric] for metric in spec.search.metrics],
                )
            )
        study.add_trials(batch)
    storage.remove_session()
    storage.engine.dispose()


def _plain(value: object) -> object:
    """A numpy scalar from a DataFrame as the Python value Optuna checks against its space."""
    return value.item() if isinstance(value, np.generic) else value
