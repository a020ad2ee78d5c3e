"""Write a synthetic study folder with known answers, for tests, benchmarks and demos.

The folder has the layout the runner writes (docs/results.md): ``study.yaml``, ``trials.parquet``,
``epochs.parquet``, optionally ``optuna.db`` and ``artifacts/<trial_id>/`` with
``latents.npy``, ``samples.png`` and ``reconstructions.png``. Metrics are drawn from normal
distributions whose means are given per arm, so a report built from it has a known verdict.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from sweep.images import encode_png


@dataclass(frozen=True)
class SyntheticArm:
    """An arm of the synthetic study.

    ``alpha``/``lambda_`` are fixed unless ``search_lambda`` (then lambda is drawn
    log-uniformly in [1, 1000] and the kernel from rbf/imq in search trials).
    ``means``/``sds`` give the normal distribution of each ``metric.<name>`` in the confirm
    phase (search trials add extra spread). ``latent_scale`` scales the stored latents' axes.
    ``still_rising``: the per-epoch curves still improve linearly at the last epoch (7 % per
    epoch over 8 epochs: not converged by :mod:`sweep.convergence`'s rule); otherwise they
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
    """Write a synthetic study into ``folder`` (created) and return it.

    Per arm: ``n_search`` completed search trials, ``n_seeds`` completed confirm trials of one
    configuration and ``failed_per_arm`` failed search trials; ``n_epochs`` epochs per
    completed trial. With ``optuna_db`` the search trials are also stored in
    ``optuna.db`` (one Optuna study per arm, named after it).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    arms = dict(arms) if arms is not None else default_arms()
    rng = np.random.default_rng(seed)
    t0 = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
    rows: list[dict[str, object]] = []
    epochs: list[pd.DataFrame] = []
    spec_arms: dict[str, object] = {}
    for arm_index, (arm, truth) in enumerate(arms.items()):
        fixed = {"objective.alpha": truth.alpha, "model.decoder.kind": "mlp"}
        search: dict[str, object] = {"model.decoder.width": {"type": "int", "low": 64, "high": 512}}
        if truth.search_lambda:
            search["objective.lambda"] = {"type": "float", "low": 1.0, "high": 1000.0, "log": True}
            search["objective.kernel"] = {"type": "categorical", "choices": ["rbf", "imq"]}
        else:
            fixed["objective.lambda"] = truth.lambda_
        spec_arms[arm] = {"fixed": fixed, "search": search}
        plan = (
            [("search", "completed", i) for i in range(n_search)]
            + [("search", "failed", n_search + i) for i in range(failed_per_arm)]
            + [("confirm", "completed", i) for i in range(n_seeds)]
        )
        for phase, status, k in plan:
            trial_id = f"{arm}-{phase[0]}{k:05d}"
            lam = (
                float(np.exp(rng.uniform(0, np.log(1000))))
                if truth.search_lambda and phase == "search"
                else truth.lambda_
            )
            kernel = (
                str(rng.choice(["rbf", "imq"]))
                if truth.search_lambda and phase == "search"
                else "rbf"
            )
            width = int(rng.choice([64, 128, 256, 512])) if phase == "search" else 256
            row: dict[str, object] = {
                "study": name,
                "arm": arm,
                "phase": phase,
                "trial_id": trial_id,
                "seed": k if phase == "confirm" else 0,
                "status": status,
                "error": None,
                "started_at": t0 + dt.timedelta(minutes=len(rows)),
                "ended_at": t0 + dt.timedelta(minutes=len(rows) + 1),
                "train_seconds": 50.0,
                "eval_seconds": 10.0,
                "host": "node-1",
                "device": "cpu",
                "param.objective.alpha": truth.alpha,
                "param.objective.lambda": lam,
                "param.objective.kernel": kernel,
                "param.objective.divergence": "mmd",
                "param.objective.scales": [1.0],
                "param.model.decoder.kind": "mlp",
                "param.model.decoder.width": width,
                "param.model.decoder.depth": 2,
                "param.model.latent_dim": 4,
                "param.data.dataset": "digits",
                "param.train.seed": k,
            }
            spread = 3.0 if phase == "search" else 1.0
            for metric, mean in truth.means.items():
                sd = truth.sds.get(metric, DEFAULT_SD.get(metric, 0.1)) * spread
                row[f"metric.{metric}"] = (
                    float(rng.normal(mean, sd)) if status == "completed" else np.nan
                )
            if status == "failed":
                row["error"] = f"RuntimeError: synthetic failure in {trial_id}\n  at step 3"
                row["train_seconds"] = 5.0
            rows.append(row)
            if status == "completed" and n_epochs:
                e = np.arange(n_epochs, dtype=float)
                if truth.still_rising:  # improving by 0.5 / (n_epochs - 1) of base each epoch
                    decay = 1.5 - 0.5 * e / max(n_epochs - 1, 1)
                else:
                    decay = 1 + 4 * np.exp(-e / max(0.8, n_epochs / 10))
                base = -float(truth.means.get("elbo", -100.0))
                frame = pd.DataFrame(
                    {
                        "study": name,
                        "arm": arm,
                        "trial_id": trial_id,
                        "epoch": e.astype(int),
                    }
                )
                for split in ("train", "val"):
                    noise = rng.normal(0, 0.05, size=n_epochs)
                    frame[f"{split}.loss"] = base * decay / 5 * 5 + noise
                    frame[f"{split}.recon"] = 0.8 * base * decay + noise
                    frame[f"{split}.kl"] = 0.2 * base + noise
                    frame[f"{split}.divergence"] = 0.01 * decay + arm_index * 0.001
                    frame[f"{split}.elbo"] = -base * decay + noise
                epochs.append(frame)
    trials = pd.DataFrame(rows)
    trials.to_parquet(folder / "trials.parquet", index=False)
    if epochs:
        pd.concat(epochs, ignore_index=True).to_parquet(folder / "epochs.parquet", index=False)
    spec = {
        "name": name,
        "description": "Synthetic study with known answers.",
        "data": {"dataset": "digits"},
        "arms": spec_arms,
        "search": {
            "objectives": [
                {"metric": "nll_iwae", "direction": "minimize"},
                {"metric": "mmd", "direction": "minimize"},
            ],
            "sampler": "tpe",
        },
        "confirm": {"top_k": 1, "seeds": n_seeds},
    }
    (folder / "study.yaml").write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    if artifacts:
        _write_artifacts(folder, trials, arms, rng)
    if optuna_db:
        _write_optuna(folder, trials)
    return folder


def _write_artifacts(
    folder: Path, trials: pd.DataFrame, arms: Mapping[str, SyntheticArm], rng: np.random.Generator
) -> None:
    done = trials[(trials["phase"] == "confirm") & (trials["status"] == "completed")]
    for arm, truth in arms.items():
        ids = done.loc[done["arm"] == arm, "trial_id"]
        for trial_id in ids:
            path = folder / "artifacts" / str(trial_id)
            path.mkdir(parents=True, exist_ok=True)
            scale = np.asarray(truth.latent_scale, dtype=np.float32)
            z = rng.standard_normal((300, scale.size)).astype(np.float32) * scale
            np.save(path / "latents.npy", z, allow_pickle=False)
            grid = rng.uniform(size=(8 * 4, 8 * 4))
            (path / "samples.png").write_bytes(png_bytes(grid))
            (path / "reconstructions.png").write_bytes(png_bytes(grid[::-1]))


def _write_optuna(folder: Path, trials: pd.DataFrame) -> None:
    import optuna
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(f"sqlite:///{folder / 'optuna.db'}")
    search = trials[(trials["phase"] == "search") & (trials["status"] == "completed")]
    for arm, part in search.groupby("arm", sort=False):
        study = optuna.create_study(
            study_name=str(arm), storage=storage, directions=["minimize", "minimize"]
        )
        distributions: dict[str, object] = {
            "model.decoder.width": IntDistribution(64, 512),
        }
        if part["param.objective.lambda"].nunique() > 1:
            distributions["objective.lambda"] = FloatDistribution(1.0, 1000.0, log=True)
            distributions["objective.kernel"] = CategoricalDistribution(["rbf", "imq"])
        batch = []
        for record in part.to_dict("records"):
            params = {key: record[f"param.{key}"] for key in distributions}
            params["model.decoder.width"] = int(params["model.decoder.width"])
            batch.append(
                optuna.trial.create_trial(
                    params=params,
                    distributions=distributions,
                    values=[record["metric.nll_iwae"], record["metric.mmd"]],
                )
            )
        study.add_trials(batch)
    storage.remove_session()
    storage.engine.dispose()
