"""The latent space of each arm's best trial, read from its artefacts: the latents' 2-D
projection and covariance spectrum, and its sample and reconstruction images."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from sweep import names
from sweep.analysis.descriptive import covariance_spectrum, latent_projection
from sweep.analysis.load import StudyData
from sweep.analysis.ranking import best_trial

#: Latent points drawn per arm (a random subset when the artifact holds more).
MAX_LATENT_POINTS = 1000
#: Largest PNG embedded; bigger files are skipped with a note (keeps the page small).
MAX_PNG_BYTES = 2_000_000
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
#: The images of a trial's artefacts: file name and title.
IMAGES: tuple[tuple[str, str], ...] = (
    ("samples.png", "samples"),
    ("reconstructions.png", "reconstructions"),
)


@dataclass(frozen=True)
class LatentView:
    """The latents of one trial: ``points`` (:func:`latent_projection`'s ``x, y, source``),
    ``spectrum`` (covariance eigenvalues, descending), ``n`` points of dimension ``dim``."""

    points: pd.DataFrame
    spectrum: np.ndarray
    n: int
    dim: int


@dataclass(frozen=True)
class TrialImage:
    """An image of a trial's artefacts: its PNG bytes, or the ``problem`` that kept it out."""

    name: str
    title: str
    png: bytes | None
    problem: str = ""


@dataclass(frozen=True)
class BestTrialArtefacts:
    """The best trial of ``arm`` and what its artefacts folder holds. ``problem`` says why
    there is nothing to show (no trial, no artefacts folder); ``latents_problem`` why its
    latents are missing."""

    arm: str
    trial_id: str = ""
    label: str = ""
    problem: str = ""
    latents: LatentView | None = None
    latents_problem: str = ""
    images: tuple[TrialImage, ...] = ()


def artefact_dir(data: StudyData, trial_id: str) -> Path | None:
    """``artifacts/<trial_id>`` if ``trial_id`` is a plain name (no path tricks) and exists."""
    root = data.study_dir / names.ARTIFACTS_DIR
    if not trial_id or trial_id in {".", ".."} or "/" in trial_id or "\\" in trial_id:
        return None
    folder = root / trial_id
    return folder if folder.is_dir() else None


def load_latents(path: Path) -> tuple[np.ndarray | None, str]:
    try:
        z = np.load(path, allow_pickle=False)
    except Exception as exc:  # corrupt or not an .npy file
        return None, f"latents.npy could not be read ({type(exc).__name__}: {exc})"
    if z.ndim != 2 or z.shape[0] < 2 or z.shape[1] < 1 or not np.issubdtype(z.dtype, np.number):
        return None, f"latents.npy has shape {z.shape} (expected [n >= 2, d >= 1] numbers)"
    z = z.astype(np.float64)
    z = z[np.isfinite(z).all(axis=1)]
    if z.shape[0] < 2:
        return None, "latents.npy has fewer than two finite rows"
    if z.shape[0] > MAX_LATENT_POINTS:
        keep = np.random.default_rng(0).choice(z.shape[0], MAX_LATENT_POINTS, replace=False)
        z = z[np.sort(keep)]
    return z, ""


def _image(folder: Path, name: str, title: str) -> TrialImage:
    path = folder / name
    if not path.is_file():
        return TrialImage(name, title, None, f"no {name}")
    size = path.stat().st_size
    if size > MAX_PNG_BYTES:
        return TrialImage(
            name,
            title,
            None,
            f"{name} is {size} bytes, over the {MAX_PNG_BYTES}-byte limit; not embedded",
        )
    png = path.read_bytes()
    if not png.startswith(_PNG_MAGIC):
        return TrialImage(name, title, None, f"{name} is not a PNG file")
    return TrialImage(name, title, png)


def best_trial_artefacts(data: StudyData, arm: str) -> BestTrialArtefacts:
    """The best trial of ``arm`` (:func:`~sweep.analysis.ranking.best_trial` with the study's
    objectives, confirm phase preferred) with its latents and images."""
    objective = data.rank_objective
    best = best_trial(data.trials, arm, data.objectives, objective) if len(data.trials) else None
    if best is None:
        return BestTrialArtefacts(arm, problem=f"no completed trial with {objective.metric}")
    trial_id = str(best[names.TRIAL_ID])
    value = float(best[objective.column])
    label = f"{arm}: best trial {trial_id} ({best['phase']}, {objective.metric} = {value:.4g})"
    folder = artefact_dir(data, trial_id)
    if folder is None:
        return BestTrialArtefacts(arm, trial_id, label, problem="no artifacts folder")
    latents, latents_problem = None, "no latents.npy"
    if (folder / "latents.npy").is_file():
        z, latents_problem = load_latents(folder / "latents.npy")
        if z is not None:
            latents = LatentView(latent_projection(z, seed=0), covariance_spectrum(z), *z.shape)
    images = tuple(_image(folder, name, title) for name, title in IMAGES)
    return BestTrialArtefacts(arm, trial_id, label, "", latents, latents_problem, images)
