"""The one list of the names that the results store, the runner, the report and the CLI share.

Column names, column prefixes, statuses, phases, evaluation metric names and file names of a
study folder (docs/results.md and docs/metrics.md). They are part of the
contract with users' own analyses (pandas, DuckDB, Polars read the files by these names), so
each is written out here once and imported wherever it is used; a typo elsewhere is then an
``AttributeError`` at import time rather than a silently empty column.
"""

from __future__ import annotations

__all__ = [
    "ARM",
    "ARTIFACTS_DIR",
    "ATTEMPT",
    "COMPLETED",
    "CONFIRM",
    "COPY_OF",
    "DEVICE",
    "ENDED_AT",
    "EPOCH",
    "EPOCHS_FILE",
    "EPOCH_FIXED_COLUMNS",
    "ERROR",
    "EVAL_SECONDS",
    "FAILED",
    "FIGURES_DIR",
    "HOST",
    "LOCK_FILE",
    "METRIC",
    "METRIC_NAMES",
    "NODE_ID",
    "MIRROR_STATE_FILE",
    "OPTUNA_FILE",
    "OPTUNA_JOURNAL_FILE",
    "PARAM",
    "PARTS_DIR",
    "PHASE",
    "PHASES",
    "CLAIM_IDS",
    "LIBRARIES",
    "PROBE_ACC",
    "RAY_DIR",
    "REPORT_FILE",
    "RUN_RECORD_FILE",
    "RESUMED_FROM_EPOCH",
    "SEARCH",
    "SEED",
    "STARTED_AT",
    "STATUS",
    "STATUSES",
    "STOPPED",
    "STORAGE_FILE",
    "STUDY",
    "STUDY_FILE",
    "TENSORBOARD_DIR",
    "TRAIN",
    "TRAIN_SECONDS",
    "TRIALS_FILE",
    "TRIAL_FIXED_COLUMNS",
    "TRIAL_ID",
    "VAL",
    "metric",
    "param",
    "strip",
]

# ---- files of a study folder ------------------------------------------------------------------

STUDY_FILE = "study.yaml"
TRIALS_FILE = "trials.parquet"
EPOCHS_FILE = "epochs.parquet"
LOCK_FILE = ".lock"
#: Trials recorded since the last compaction of the two Parquet files (see sweep.store).
PARTS_DIR = ".parts"
#: One Optuna study per arm, named after it.
OPTUNA_FILE = "optuna.db"
#: The same, as Optuna's file journal (``--optuna-storage journal``), for a shared mount.
OPTUNA_JOURNAL_FILE = "optuna.journal"
#: Where the study's storages are: Ray Tune's storage path or URI, the Optuna storage.
STORAGE_FILE = "storage.yaml"
#: The driver's record of what its mirror (``<storage URI>/<study>/``) holds; never mirrored.
MIRROR_STATE_FILE = ".mirror.json"
#: ``artifacts/<trial_id>/``: latents and image grids of a completed trial, for the report.
ARTIFACTS_DIR = "artifacts"
REPORT_FILE = "report.html"
#: The driver's record of each run of the study: code, machine, times, load, command.
RUN_RECORD_FILE = "run.json"
#: ``figures/``: the report's figures as SVG, PDF or PNG files (``report --figures``).
FIGURES_DIR = "figures"
#: Ray Tune's storage path inside the study folder when no shared storage is given.
RAY_DIR = "ray"
#: ``--log-to tensorboard`` without a folder: event files under ``tensorboard/<phase>/<trial_id>/``.
TENSORBOARD_DIR = "tensorboard"

# ---- columns -----------------------------------------------------------------------------------

STUDY = "study"
ARM = "arm"
PHASE = "phase"
TRIAL_ID = "trial_id"
ATTEMPT = "attempt"
#: The epoch of the checkpoint a retried trial resumed from (0: the trial started fresh).
RESUMED_FROM_EPOCH = "resumed_from_epoch"
SEED = "seed"
STATUS = "status"
ERROR = "error"
STARTED_AT = "started_at"
ENDED_AT = "ended_at"
TRAIN_SECONDS = "train_seconds"
EVAL_SECONDS = "eval_seconds"
HOST = "host"
NODE_ID = "node_id"
DEVICE = "device"
#: The ``trial_id`` of the completed trial that a search trial repeated (not trained again).
COPY_OF = "copy_of"
EPOCH = "epoch"

#: Fixed columns of ``trials.parquet``, in file order (types in sweep.store.TRIAL_SCHEMA).
TRIAL_FIXED_COLUMNS: tuple[str, ...] = (
    STUDY,
    ARM,
    PHASE,
    TRIAL_ID,
    ATTEMPT,
    RESUMED_FROM_EPOCH,
    SEED,
    STATUS,
    ERROR,
    STARTED_AT,
    ENDED_AT,
    TRAIN_SECONDS,
    EVAL_SECONDS,
    HOST,
    NODE_ID,
    DEVICE,
    COPY_OF,
)
#: Fixed columns of ``epochs.parquet``, in file order.
EPOCH_FIXED_COLUMNS: tuple[str, ...] = (STUDY, ARM, TRIAL_ID, EPOCH)

#: Prefixes of the dynamic columns: hyperparameters and metrics (trials), loss terms (epochs).
PARAM = "param."
METRIC = "metric."
TRAIN = "train."
VAL = "val."

# ---- values --------------------------------------------------------------------------------------

SEARCH = "search"
CONFIRM = "confirm"
PHASES: tuple[str, ...] = (SEARCH, CONFIRM)
#: The libraries whose versions can change a result: recorded in each run's run.json and shown
#: in the report.
LIBRARIES: tuple[str, ...] = (
    "infovae-sweep",
    "torch",
    "numpy",
    "scipy",
    "scikit-learn",
    "pandas",
    "pyarrow",
    "optuna",
    "ray",
    "plotly",
)
#: The paper's claims a study can test (its ``claims:``), defined in sweep.analysis.claims.
CLAIM_IDS: tuple[str, ...] = (
    "aggregate_mmd",
    "log_det_cov",
    "mutual_info",
    "probe_accuracy",
    "information_preference",
    "small_data",
)

COMPLETED = "completed"
FAILED = "failed"
STOPPED = "stopped"
STATUSES: tuple[str, ...] = (COMPLETED, FAILED, STOPPED)

#: The evaluation metrics every completed trial reports (infovae_core.evaluation), without the
#: prefix; ``probe_acc_<n>`` adds one per labelled-set size. ``mutual_info_cap`` is log N of
#: the evaluation points behind ``mutual_info``: the most that estimator can show.
METRIC_NAMES: tuple[str, ...] = (
    "mmd",
    "log_det_cov",
    "mutual_info",
    "mutual_info_cap",
    "nll_iwae",
    "elbo",
    "recon",
    "kl",
    "active_units",
)
PROBE_ACC = "probe_acc_"


def param(key: str) -> str:
    """``param.<dotted.key>``: the column of a hyperparameter."""
    return PARAM + key


def metric(name: str) -> str:
    """``metric.<name>``: the column of an evaluation metric."""
    return METRIC + name


def strip(column: str, prefix: str) -> str:
    """The column name without ``prefix`` (which it must start with)."""
    if not column.startswith(prefix):
        raise ValueError(f"{column!r} does not start with {prefix!r}")
    return column[len(prefix) :]
