"""The `infovae-sweep` command line: thin Typer commands over library functions.

Heavy imports (Ray, Optuna, Plotly) happen inside the commands that need them, so that
`infovae-sweep train` and `validate` start quickly.
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
from collections.abc import Iterator
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, get_args

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperCommand, TyperGroup

from infovae_core.config import (  # light: dataclasses and the Literal choices, no torch
    Binarization,
    DatasetName,
    DecoderKind,
    DivergenceKind,
    EncoderKind,
    KernelKind,
    LearningRateSchedule,
    LikelihoodKind,
)

# Typer's usage line writes a required argument as {NAME} (an optional one as [NAME]).
_REQUIRED_ARGUMENT = re.compile(r"^\{(.+)\}((?:\.\.\.)?)$")


class _PlainHelp:
    """Help that reads as a man page: a flag (``--open``, ``--help``) shows no ``<bool>`` value
    it does not take, and an argument reads ``STUDY`` when required and ``[RESULTS]`` when
    optional (Typer writes ``{STUDY}`` for a required one)."""

    def get_params(self, ctx):
        params = super().get_params(ctx)  # type: ignore[misc]
        for param in params:
            if getattr(param, "is_flag", False) and param.metavar is None:
                param.metavar = ""  # Typer shows a parameter's metavar in place of its type
        return params

    def collect_usage_pieces(self, ctx) -> list[str]:
        pieces = super().collect_usage_pieces(ctx)  # type: ignore[misc]
        return [_REQUIRED_ARGUMENT.sub(r"\1\2", piece) for piece in pieces]


class _Command(_PlainHelp, TyperCommand):
    pass


class _Group(_PlainHelp, TyperGroup):
    pass


def _examples(*lines: str) -> str:
    """A command's epilog: its example command lines, indented (a code block in docs/cli.md)."""
    return "Examples:\n\n" + "\n".join(f"    {line}" for line in lines)


def command(*examples: str, name: str | None = None):
    """``app.command`` with this CLI's help style (flags without a value, capital placeholders)
    and the command's example lines as its epilog."""
    return app.command(name, cls=_Command, epilog=_examples(*examples))


app = typer.Typer(
    name="infovae-sweep",
    cls=_Group,
    help="Studies of InfoVAE against the ELBO: train, search, resume and report.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True, soft_wrap=True)  # never break paths in messages
stdout = Console()

USAGE_ERROR = 2


class ObjectivePreset(str, Enum):
    elbo = "elbo"
    infovae = "infovae"


def _choices(name: str, literal: Any) -> type[Enum]:
    """A ``str`` Enum of a core ``Literal``'s values, so Typer lists them and refuses others
    (exit 2); the core's Literal stays the one source of the choices."""
    return Enum(name, {value: value for value in get_args(literal)}, type=str)  # type: ignore[return-value]


DatasetChoice = _choices("DatasetChoice", DatasetName)
EncoderChoice = _choices("EncoderChoice", EncoderKind)
DecoderChoice = _choices("DecoderChoice", DecoderKind)
LikelihoodChoice = _choices("LikelihoodChoice", LikelihoodKind)
DivergenceChoice = _choices("DivergenceChoice", DivergenceKind)
KernelChoice = _choices("KernelChoice", KernelKind)
BinarizeChoice = _choices("BinarizeChoice", Binarization)
LrScheduleChoice = _choices("LrScheduleChoice", LearningRateSchedule)


# infovae: alpha = 0 (the whole per-sample KL) and lambda = 10 (MMD weighted by 9), the best
# InfoVAE of the mnist_cpu study by likelihood and the setting of decoder_families. alpha = 1
# (no KL term) with lambda = 10 had the worst likelihood of that study's grid, and on the 8x8
# digits lambda >= 100 collapses q(z|x) onto the prior; studies search alpha and lambda properly.
PRESETS = {"elbo": (0.0, 1.0), "infovae": (0.0, 10.0)}

# Epochs when --epochs is left out: what the shipped studies train for (digits: 300 epochs,
# which the digits study needs for every run to converge; mnist_cpu: 30 on MNIST), both with a
# cosine learning rate annealed to 0 so that the last epoch is settled.
DEFAULT_EPOCHS = {"digits": 300, "mnist": 30, "fashion_mnist": 30, "array": 50}

# The devices infovae_core's TrainConfig accepts (train.device); resolve_device maps auto.
DEVICE_HELP = "auto (cuda when present, else cpu), cpu, cuda, cuda:N (GPU number N) or mps."


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("infovae-sweep")
    except metadata.PackageNotFoundError:  # running from a checkout that is not installed
        return "unknown (not installed)"


def _print_version(value: bool) -> None:
    if value:
        stdout.print(f"infovae-sweep {_version()}", highlight=False)
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print the version and exit.",
        ),
    ] = False,
) -> None:
    """Studies of InfoVAE against the ELBO: train, search, resume and report."""


def _fail(message: str, code: int = USAGE_ERROR) -> None:
    from rich.markup import escape

    # escaped: a message quoting a path or an option such as 'pkg[extra]' is shown as written
    console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, markup=True)
    raise typer.Exit(code)


@command(
    "infovae-sweep train",
    "infovae-sweep train --objective elbo --epochs 50 --json",
    "INFOVAE_DATA_DIR=/path/to/data infovae-sweep train --dataset mnist --device cuda",
)
def train(
    dataset: Annotated[
        DatasetChoice,
        typer.Option(
            help="digits (bundled, no download), mnist, fashion_mnist, or array (your own "
            ".npz/.npy file of images, given with --data-path)."
        ),
    ] = DatasetChoice["digits"],
    objective: Annotated[
        ObjectivePreset,
        typer.Option(
            help="elbo (alpha=0, lambda=1) or infovae (MMD, alpha=0, lambda=10: the best "
            "InfoVAE of the mnist_cpu study). --alpha and --lambda override either."
        ),
    ] = ObjectivePreset.infovae,
    alpha: Annotated[
        float | None, typer.Option(help="Override alpha (KL weight is 1 - alpha).")
    ] = None,
    lambda_: Annotated[
        float | None,
        typer.Option("--lambda", help="Override lambda (D weight is alpha + lambda - 1)."),
    ] = None,
    divergence: Annotated[
        DivergenceChoice,
        typer.Option(help="D(q(z) || p(z)): mmd, adversarial (discriminator) or stein (SVGD)."),
    ] = DivergenceChoice["mmd"],
    kernel: Annotated[KernelChoice, typer.Option(help="MMD kernel.")] = KernelChoice["rbf"],
    scales: Annotated[str, typer.Option(help="Comma-separated kernel scales, summed.")] = "1.0",
    encoder: Annotated[EncoderChoice, typer.Option(help="Encoder kind.")] = EncoderChoice["mlp"],
    decoder: Annotated[DecoderChoice, typer.Option(help="Decoder kind.")] = DecoderChoice["mlp"],
    width: Annotated[int, typer.Option(min=1, max=65536, help="Encoder and decoder width.")] = 256,
    depth: Annotated[int, typer.Option(min=1, max=64, help="Encoder and decoder depth.")] = 2,
    likelihood: Annotated[
        LikelihoodChoice, typer.Option(help="Decoder likelihood p(x|z).")
    ] = LikelihoodChoice["bernoulli"],
    latent_dim: Annotated[int, typer.Option(min=1, max=4096, help="Latent dimension d.")] = 8,
    epochs: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=10**6,
            help="Training epochs (default: 300 on digits, as the digits study; 30 on mnist "
            "and fashion_mnist, as mnist_cpu; 50 on array, as the your_data template).",
        ),
    ] = None,
    batch_size: Annotated[int, typer.Option(min=2, max=10**7, help="Batch size.")] = 128,
    lr: Annotated[float, typer.Option(help="Adam learning rate.")] = 1e-3,
    lr_schedule: Annotated[
        LrScheduleChoice,
        typer.Option(
            help="constant, or cosine: annealed to 0 over the run so that it ends settled "
            "(what the studies use)."
        ),
    ] = LrScheduleChoice["cosine"],
    seed: Annotated[int, typer.Option(min=0, max=2**32 - 1, help="Training seed.")] = 0,
    binarize: Annotated[
        BinarizeChoice, typer.Option(help="Binarisation for Bernoulli decoders.")
    ] = BinarizeChoice["dynamic"],
    train_size: Annotated[
        int | None,
        typer.Option(
            help="Train on a seeded subset of this many training images (default: all); "
            "validation and test splits are whole."
        ),
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            help="Folder holding mnist/ or fashion_mnist/ (default $INFOVAE_DATA_DIR, else a "
            "per-user cache)."
        ),
    ] = None,
    data_path: Annotated[
        Path | None,
        typer.Option(
            help="The .npz/.npy file of images for --dataset array (layouts: docs/studies.md)."
        ),
    ] = None,
    download: Annotated[
        bool,
        typer.Option(help="Download missing MNIST / Fashion-MNIST files from the public mirrors."),
    ] = True,
    device: Annotated[str, typer.Option(help=DEVICE_HELP)] = "auto",
    iwae_samples: Annotated[
        int, typer.Option(min=1, max=10**5, help="Importance samples k for metric.nll_iwae.")
    ] = 100,
    amp: Annotated[bool, typer.Option(help="bfloat16 mixed precision (CUDA only).")] = False,
    compile_model: Annotated[
        bool, typer.Option("--compile/--no-compile", help="torch.compile the model (CUDA only).")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the metrics as JSON on stdout.")
    ] = False,
) -> None:
    """Train one configuration and print every evaluation metric (docs/metrics.md)."""
    preset_alpha, preset_lambda = PRESETS[objective.value]
    settings = {
        "data.dataset": dataset.value,
        "data.data_dir": str(data_dir) if data_dir is not None else None,
        "data.path": str(data_path) if data_path is not None else None,
        "data.binarize": binarize.value,
        "data.download": download,
        "data.train_size": train_size,
        "model.latent_dim": latent_dim,
        "model.encoder": {"kind": encoder.value, "width": width, "depth": depth},
        "model.decoder": {
            "kind": decoder.value,
            "width": width,
            "depth": depth,
            "likelihood": likelihood.value,
        },
        "objective.alpha": preset_alpha if alpha is None else alpha,
        "objective.lambda": preset_lambda if lambda_ is None else lambda_,
        "objective.divergence": divergence.value,
        "objective.kernel": kernel.value,
        "objective.scales": _parse_scales(scales),
        "train": {
            "epochs": DEFAULT_EPOCHS[dataset.value] if epochs is None else epochs,
            "batch_size": batch_size,
            "lr": lr,
            "lr_schedule": lr_schedule.value,
            "seed": seed,
            "device": device,
            "amp": amp,
            "compile": compile_model,
        },
        "eval.iwae_samples": iwae_samples,
    }
    config = _trial_config(settings)
    result = _train_or_fail(config, quiet=as_json)
    for note in result.notes:
        console.print(f"note: {note}", style="yellow", highlight=False)
    if as_json:
        _print_fit_json(config, result)
    else:
        subset = "" if train_size is None else f", {train_size} training images"
        _print_fit_table(f"{dataset.value}: {objective.value}", subset, config, result)


def _trial_config(settings: dict[str, Any]):
    """The TrialConfig of ``train``'s options; exit 2 with the setting that is wrong."""
    from infovae_core.config import ConfigError, TrialConfig

    try:
        return TrialConfig.from_dict(settings)
    except (ConfigError, ValueError) as error:
        _fail(str(error))


def _train_or_fail(config, quiet: bool):
    """:func:`~infovae_core.trainer.fit` with a progress bar (none when ``quiet``); exit 2 for
    bad input (an unreadable array file, a setting the data cannot serve), 1 for data that
    cannot be fetched or a loss that diverged."""
    from infovae_core.config import ConfigError
    from infovae_core.datafiles import ArrayFileError, DataError
    from infovae_core.trainer import NonFiniteLossError, fit

    try:
        return _fit_with_progress(fit, config, quiet=quiet)
    except ArrayFileError as error:  # the user's file is bad input, like a bad option
        _fail(str(error))
    except DataError as error:
        _fail(str(error), code=1)
    except ConfigError as error:  # e.g. data.train_size larger than the split actually read
        _fail(str(error))
    except NonFiniteLossError as error:
        _fail(str(error), code=1)


def _fit_metrics(result) -> dict[str, float]:
    return {f"metric.{name}": value for name, value in result.metrics.items()}


def _print_fit_json(config, result) -> None:
    payload = {
        "config": config.to_flat_dict(),
        "metrics": _fit_metrics(result),
        "train_seconds": result.train_seconds,
        "eval_seconds": result.eval_seconds,
        "device": result.device,
    }
    sys.stdout.write(json.dumps(payload, indent=2) + "\n")


def _print_fit_table(title: str, subset: str, config, result) -> None:
    table = Table(
        title=f"{title} (alpha={config.objective.alpha:g}, "
        f"lambda={config.objective.lambda_:g}{subset})"
    )
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in _fit_metrics(result).items():
        table.add_row(name, f"{value:.4f}")
    stdout.print(table)
    stdout.print(
        f"trained {result.train_seconds:.1f} s, evaluated {result.eval_seconds:.1f} s "
        f"on {result.device}"
    )


def _parse_scales(text: str) -> list[float]:
    """``--scales 0.5,1,2`` as floats; exit 2 naming the option and the bad item."""
    values = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        try:
            values.append(float(item))
        except ValueError:
            _fail(f"--scales: {item!r} is not a number (comma-separated numbers, e.g. 0.5,1,2)")
    return values


def _fit_with_progress(fit, config, quiet: bool):
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    if quiet:
        return fit(config)
    with Progress(
        TextColumn("[bold]train"),
        BarColumn(),
        TextColumn("epoch {task.completed}/{task.total}"),
        TextColumn("{task.fields[terms]}"),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("train", total=config.planned_epochs(), terms="")

        def on_epoch(record) -> None:
            terms = (
                f"loss {record.train['loss']:.2f}  elbo {record.train['elbo']:.2f}  "
                f"val loss {record.val['loss']:.2f}"
            )
            progress.update(task, completed=record.epoch, terms=terms)

        result = fit(config, callback=on_epoch)
    console.print("evaluating...", style="dim")
    return result


# --------------------------------------------------------------------------------------------
# Studies


def _refuse_damaged(folder: Path) -> None:
    """Exit 2, naming each damaged file, when a study folder holds one (reads only)."""
    from sweep.integrity import damaged_files, describe_damage
    from sweep.store import is_study_folder

    if is_study_folder(folder) and (problems := damaged_files(folder)):
        console.print("[bold red]error:[/] ", end="", highlight=False)
        console.print(describe_damage(folder, problems), markup=False, highlight=False)
        raise typer.Exit(USAGE_ERROR)


def _analyse(folder: Path):
    """The study in ``folder`` read once and ready to render
    (:class:`~sweep.analysis.study.StudyAnalysis`); exits 2 naming the folder or file when it
    is not a study folder or holds a damaged file."""
    from sweep.analysis.study import analyse_study
    from sweep.store import StoreError

    try:
        return analyse_study(folder, check_damage=True)
    except StoreError as error:
        _fail(str(error))


def _load_spec(path: Path):
    from sweep.spec import StudySpecError, load_study

    try:
        return load_study(path)
    except StudySpecError as error:
        console.print(f"[bold red]invalid study[/] {path}:", highlight=False)
        console.print(str(error), markup=False, highlight=False)
        raise typer.Exit(USAGE_ERROR) from None


@command(
    "infovae-sweep validate studies/digits.yaml",
    "infovae-sweep validate studies/*.yaml",
)
def validate(
    studies: Annotated[
        list[Path], typer.Argument(metavar="STUDY", help="Study files (YAML), one or more.")
    ],
    estimate: Annotated[
        bool,
        typer.Option(
            "--estimate/--no-estimate",
            help="Time a few training steps of each arm's network on this CPU (about half a "
            "second per network) for a rough wall-time estimate.",
        ),
    ] = True,
) -> None:
    """Check study files (and the data file of a data.dataset array study) and print each
    study's plan: trials, epochs and gradient steps per trial and in total, a rough wall time
    on this machine, each arm's fixed settings and search space, and a warning for an arm with
    fewer distinct configurations than trials. Writes nothing; exits 2 when any file is
    invalid, after checking them all."""
    invalid = 0
    for number, study in enumerate(studies):
        if number:
            stdout.print("")
        invalid += not _validate_one(study, estimate)
    if invalid and len(studies) > 1:
        console.print(f"{invalid} of {len(studies)} study file(s) invalid", highlight=False)
    if invalid:
        raise typer.Exit(USAGE_ERROR)


def _validate_one(study: Path, estimate: bool) -> bool:
    """Print one study's plan, or why it is invalid (False)."""
    from sweep.plan import calibrate, format_plan, plan_study
    from sweep.spec import StudySpecError, load_study
    from sweep.spec.data_file import data_file_issues

    try:
        spec = load_study(study)
    except StudySpecError as error:
        console.print(f"[bold red]invalid study[/] {escape(str(study))}:", highlight=False)
        console.print(str(error), markup=False, highlight=False)
        return False
    issues = data_file_issues(spec)
    for issue in issues:
        console.print(f"[bold red]error:[/] {escape(issue)}", highlight=False)
    if issues:
        return False
    shape, n_train = _array_shape(spec)
    plan = plan_study(spec, n_train=n_train)
    calibration = calibrate(spec, image_shape=shape) if estimate else None
    stdout.print(format_plan(plan, calibration), markup=False, highlight=False, soft_wrap=True)
    return True


def _array_shape(spec) -> tuple[tuple[int, int, int] | None, int | None]:
    """The image shape and training-split size of a data.dataset array study's file (already
    checked by data_file_issues); (None, None) for the other datasets."""
    if spec.data.dataset != "array":
        return None, None
    from infovae_core.datafiles import read_image_arrays

    arrays = read_image_arrays(spec.data.path)
    sizes = arrays.split_sizes(spec.data.val_fraction, spec.data.test_fraction)
    return arrays.image_shape, sizes["train"]


ResultsOption = Annotated[Path, typer.Option("--results", help="Results root folder.")]
AddressOption = Annotated[
    str | None,
    typer.Option(
        help="Ray cluster to use: auto or HOST:PORT. Default: embedded Ray on this machine."
    ),
]
ConcurrencyOption = Annotated[
    int | None, typer.Option(min=1, help="Trials at a time (default: the study's max_concurrent).")
]
StorageOption = Annotated[
    str | None,
    typer.Option(
        help="Ray Tune storage for multi-node runs: s3://..., gs://..., or file:///shared/mount "
        "(default: the study's `storage`, else the study folder).",
    ),
]
OptunaStorageOption = Annotated[
    str | None,
    typer.Option(
        help="Optuna storage: sqlite (optuna.db in the study folder, the default), journal "
        "(optuna.journal in the study folder, for a shared mount) or a database URL "
        "(postgresql://..., mysql://..., sqlite:///...). Recorded in the study folder; resume "
        "reopens it.",
    ),
]
VerboseOption = Annotated[
    bool, typer.Option("--verbose", "-v", help="Show Ray's own logs and tables.")
]
LogToOption = Annotated[
    list[str] | None,
    typer.Option(
        "--log-to",
        help="Also log every trial's settings, epoch terms and metrics to a tracker "
        "(repeatable): mlflow[:URI], tensorboard[:DIR] (default FOLDER/tensorboard) or "
        "wandb[:PROJECT] (default: the study's name).",
    ),
]
DataDirOption = Annotated[
    Path | None,
    typer.Option(
        help="Folder holding mnist/ or fashion_mnist/ for this run, in place of the study's "
        "data.data_dir (default: the study's, else $INFOVAE_DATA_DIR, else a per-user cache)."
    ),
]
DownloadOption = Annotated[
    bool,
    typer.Option(
        help="Download missing MNIST / Fashion-MNIST files from the public mirrors (with "
        "--no-download a missing file is an error)."
    ),
]
SingleNodeOption = Annotated[
    bool,
    typer.Option(
        "--single-node",
        help="The --address cluster is this one machine: a local storage path will do "
        "(otherwise a run on a cluster needs shared --storage).",
    ),
]


@command(
    "infovae-sweep run studies/digits.yaml",
    "infovae-sweep run studies/mnist_cpu.yaml --data-dir /path/to/data --no-download",
    "infovae-sweep run studies/mnist.yaml --address auto --storage s3://bucket/studies",
)
def run(
    study: Annotated[Path, typer.Argument(metavar="STUDY", help="Study file (YAML).")],
    results: ResultsOption = Path("results"),
    address: AddressOption = None,
    max_concurrent: ConcurrencyOption = None,
    storage: StorageOption = None,
    optuna_storage: OptunaStorageOption = None,
    verbose: VerboseOption = False,
    log_to: LogToOption = None,
    single_node: SingleNodeOption = False,
    data_dir: DataDirOption = None,
    download: DownloadOption = True,
) -> None:
    """Run a study: Optuna search through Ray Tune trials, then the confirm phase.

    With a storage URI (--storage s3://..., gs://..., file:///...) the study folder is mirrored
    to <storage>/<study>/ as trials finish."""
    spec = _with_data(_load_spec(study), data_dir, download)
    _run(
        spec,
        results / spec.name,
        address,
        max_concurrent,
        storage,
        verbose,
        resume=False,
        optuna_storage=optuna_storage,
        log_to=log_to,
        single_node=single_node,
    )


@command(
    "infovae-sweep resume results/digits",
    "infovae-sweep resume s3://bucket/studies/mnist --results results",
)
def resume(
    where: Annotated[
        str,
        typer.Argument(
            metavar="FOLDER",
            help="Study folder, e.g. results/digits, or its mirror <storage URI>/<study>, "
            "e.g. s3://bucket/path/digits.",
        ),
    ],
    results: Annotated[
        Path,
        typer.Option(
            "--results", help="Results root folder to pull a mirrored study into (URI only)."
        ),
    ] = Path("results"),
    address: AddressOption = None,
    max_concurrent: ConcurrencyOption = None,
    storage: StorageOption = None,
    verbose: VerboseOption = False,
    log_to: LogToOption = None,
    single_node: SingleNodeOption = False,
    data_dir: DataDirOption = None,
    download: DownloadOption = True,
) -> None:
    """Continue an interrupted study: finished trials are kept, interrupted ones run again.

    From a URI, the mirrored study folder is first pulled into RESULTS/<study> (which must not
    hold a study yet), then the study continues there and keeps mirroring to the URI."""
    from sweep.spec import StudySpec, StudySpecError
    from sweep.store import STUDY_FILE, is_study_folder

    if _is_uri(where):
        folder, storage = _pull_for_resume(where, results, storage)
    else:
        folder = Path(where)
    if not is_study_folder(folder):
        _fail(f"{folder}: not a study folder (no {STUDY_FILE}); give results/<study>")
    _refuse_damaged(folder)
    try:
        spec = StudySpec.from_yaml_text(
            (folder / STUDY_FILE).read_text(encoding="utf-8"), source=str(folder / STUDY_FILE)
        )
    except StudySpecError as error:
        _fail(str(error))
    spec = _with_data(spec, data_dir, download)
    _run(
        spec,
        folder,
        address,
        max_concurrent,
        storage,
        verbose,
        resume=True,
        log_to=log_to,
        single_node=single_node,
    )


def _with_data(spec, data_dir: Path | None, download: bool):
    """The study with this run's data folder and download choice: the trials read them from
    the spec's data settings like every other setting."""
    update: dict[str, Any] = {"download": download}
    if data_dir is not None:
        update["data_dir"] = str(data_dir)
    return spec.model_copy(update={"data": spec.data.model_copy(update=update)})


def _is_uri(where: str | Path) -> bool:
    from sweep.run.mirror import is_uri

    return is_uri(str(where))


def _pull_for_resume(uri: str, results: Path, storage: str | None) -> tuple[Path, str]:
    """Pull the study mirrored at ``uri`` into ``results/<study>``; the storage to resume with
    (``--storage``, else the URI's parent)."""
    from sweep.run.mirror import MirrorError, pull, split_study_uri

    try:
        parent, study = split_study_uri(uri)
    except MirrorError as error:
        _fail(str(error))
    folder = results / study
    if folder.exists() and any(folder.iterdir()):
        _fail(
            f"{folder} already exists: resume that folder (infovae-sweep resume {folder}; it "
            f"mirrors to the same storage), or pull into a fresh folder with --results"
        )
    try:
        count = pull(uri, folder)
    except MirrorError as error:
        if folder.exists() and not any(folder.iterdir()):
            folder.rmdir()
        _fail(str(error))
    except OSError as error:  # the storage cannot be reached, or the results folder written
        from sweep.run.faults import ENVIRONMENT_EXIT, environment_fault

        fault = environment_fault(error)
        _fail(str(fault) if fault else f"{uri}: cannot be read ({error})", code=ENVIRONMENT_EXIT)
    console.print(f"pulled {count} files from {uri} into {folder}", highlight=False)
    return folder, storage or parent


def _run(
    spec,
    folder: Path,
    address,
    max_concurrent,
    storage,
    verbose: bool,
    resume: bool,
    optuna_storage: str | None = None,
    log_to: list[str] | None = None,
    single_node: bool = False,
) -> None:
    from infovae_core.datafiles import DataError
    from sweep.progress import LiveView
    from sweep.run.ray_storage import StorageError
    from sweep.run.runner import StudyInterrupted, run_study
    from sweep.run.trackers import TrackerError, parse_tracker
    from sweep.store import StoreError

    try:
        trackers = [parse_tracker(value) for value in log_to or ()]
    except TrackerError as error:
        _fail(str(error))
    view = LiveView(console)
    try:
        with view:
            outcome = run_study(
                spec,
                folder,
                address=address,
                max_concurrent=max_concurrent,
                verbose=verbose,
                resume=resume,
                storage=storage,
                optuna_storage=optuna_storage,
                listeners=[view.update],
                trackers=trackers,
                single_node=single_node,
            )
    except StudyInterrupted as error:
        _stopped(folder, str(error), error.exit_code)
    except (StoreError, DataError, StorageError, TrackerError) as error:
        _fail(str(error))
    except Exception as error:  # a fault of the machine: a full disk, a read-only mount, ...
        _environment_fault(error, folder)
    counts = ", ".join(f"{n} {status}" for status, n in sorted(outcome.counts.items()))
    console.print(
        f"study [bold]{spec.name}[/] finished in {outcome.seconds / 60:.1f} min: "
        f"{counts or 'no trials'}",
        highlight=False,
    )
    _write_report(folder, partial=False)
    if outcome.mirror is not None:
        _final_mirror_sync(outcome.mirror, folder)


def _final_mirror_sync(mirror, folder: Path) -> None:
    """The mirror's last copy (retried); a mirror still behind ends the run on a line that
    says so, with exit code ``MIRROR_BEHIND_EXIT``."""
    from sweep.run.mirror import FINAL_SYNC_RETRIES, MIRROR_BEHIND_EXIT, final_sync

    if final_sync(mirror, FINAL_SYNC_RETRIES):
        console.print(f"mirror: {mirror.uri}", highlight=False)
        return
    _fail(
        f"mirror {mirror.uri} is behind the study folder ({mirror.last_error}); {folder} is "
        f"complete. Once the storage is fixed, `infovae-sweep resume {folder}` updates the mirror",
        code=MIRROR_BEHIND_EXIT,
    )


def _environment_fault(error: Exception, folder: Path) -> None:
    """One line for a fault of the machine (exit 2), with the ``resume`` command when the
    study folder holds recorded trials; any other error goes on up (a bug to see whole)."""
    from sweep.run.faults import ENVIRONMENT_EXIT, environment_fault
    from sweep.store import is_study_folder

    fault = environment_fault(error, folder)
    if fault is None:
        raise error
    hint = ""
    if is_study_folder(folder):
        hint = f"; recorded trials are kept. Once fixed, continue: infovae-sweep resume {folder}"
    _fail(f"{fault}{hint}", code=ENVIRONMENT_EXIT)


def _stopped(folder: Path, message: str, exit_code: int) -> None:
    """A run stopped by a signal: the report written as partial, the trials done, the
    ``resume`` command; exit ``128 + signal``."""
    from sweep.store import ResultsStore, StoreError

    done = None
    with contextlib.suppress(StoreError, OSError):
        done = len(ResultsStore.open(folder))
    _write_report(folder, partial=True)
    recorded = f"{done} trials recorded; " if done is not None else ""
    console.print(f"[yellow]stopped: {recorded}{message}[/]", highlight=False)
    raise typer.Exit(exit_code)


def _write_report(folder: Path, partial: bool) -> Path | None:
    from sweep.report import build_report

    try:
        path = build_report(folder, partial=partial)
    except Exception as error:  # noqa: BLE001 - the results are safe; say why the report is not
        from sweep.run.faults import ENVIRONMENT_EXIT, environment_fault

        fault = environment_fault(error, folder)
        if fault is not None and not partial:  # a stopped run keeps its signal's exit code
            _fail(f"report not written: {fault}; the study folder is complete", ENVIRONMENT_EXIT)
        console.print(f"[yellow]report not written: {type(error).__name__}: {error}[/]")
        return None
    console.print(f"report: {path}", highlight=False)
    return path


class FigureFormatChoice(str, Enum):
    """The formats of :mod:`sweep.report.static` (kept here so the CLI starts without Plotly)."""

    svg = "svg"
    pdf = "pdf"
    png = "png"


StudyArgument = Annotated[
    str,
    typer.Argument(
        metavar="FOLDER",
        help="Study folder, e.g. results/digits, or its mirror <storage URI>/<study> "
        "(read through a temporary copy).",
    ),
]


@contextlib.contextmanager
def _readable(where: str, *, artifacts: bool = False) -> Iterator[Path]:
    """The study folder to read: ``where`` itself, or a temporary copy pulled from a mirror
    URI (removed on exit; a URI that holds no study exits 2)."""
    if not _is_uri(where):
        yield Path(where)
        return
    from sweep.run.mirror import MirrorError, pulled

    with contextlib.ExitStack() as stack:
        try:
            folder = stack.enter_context(pulled(where, artifacts=artifacts))
        except MirrorError as error:
            _fail(str(error))
        except OSError as error:
            _fail(f"{where}: cannot be read ({error})", code=1)
        _warn_if_behind(where)
        yield folder


def _warn_if_behind(uri: str) -> None:
    """A line (on stderr) when the mirror at ``uri`` lacks changes of its study folder."""
    from sweep.run.mirror import mirror_is_behind

    if mirror_is_behind(uri):
        console.print(
            f"[yellow]mirror {uri} is behind its study folder: its last copy failed or is under "
            "way, so it may lack recent trials[/]",
            highlight=False,
        )


def _default_out(where: str, suffix: str) -> Path | None:
    """Outputs that default to the study folder go to ./<study><suffix> for a mirror URI."""
    return Path(f"{where.rstrip('/').rpartition('/')[2]}{suffix}") if _is_uri(where) else None


@command(
    "infovae-sweep report results/digits --open",
    "infovae-sweep report results/digits --figures svg",
)
def report(
    where: StudyArgument,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Output HTML file (default FOLDER/report.html; for a URI ./<study>-report.html)."
        ),
    ] = None,
    open_browser: Annotated[
        bool, typer.Option("--open", help="Open the report in the browser.")
    ] = False,
    figures: Annotated[
        FigureFormatChoice | None,
        typer.Option(
            "--figures",
            help="Also write every figure as a file under FOLDER/figures/ (needs the "
            "'figures' extra: Kaleido and Chrome or Chromium).",
        ),
    ] = None,
) -> None:
    """Write the study's self-contained HTML report (partial while the study runs)."""
    from sweep.names import FIGURES_DIR, REPORT_FILE
    from sweep.report.sections import build_content, write_report
    from sweep.report.static import FiguresUnavailableError, require_kaleido, write_figures
    from sweep.store import is_study_running

    out = out or _default_out(where, "-report.html")
    with _readable(where, artifacts=True) as folder:
        analysis = _analyse(folder)
        if figures is not None:
            try:
                require_kaleido()  # before anything is written
            except FiguresUnavailableError as error:
                _fail(str(error))
        # A mirror is read through a temporary copy: its figures go to ./<study>-figures/.
        figures_dir = _default_out(where, "-figures") or folder / FIGURES_DIR
        running = is_study_running(folder)
        try:
            content = build_content(analysis, partial=running)
            written = []
            if figures is not None:
                written = write_figures(content, figures_dir, figures.value)
            path = write_report(content, out if out is not None else folder / REPORT_FILE)
        except FiguresUnavailableError as error:
            _fail(str(error))
        except (OSError, ValueError, RuntimeError) as error:
            _fail(str(error), code=1)
    for figure in written:
        line = f"{figure.path}  ({figure.section}: {figure.title})"
        stdout.print(line, highlight=False, soft_wrap=True, markup=False)
    if figures is not None:
        stdout.print(f"figures: {len(written)} {figures.value} file(s)", highlight=False)
    if running:
        state = " (partial: the study is still running)"
    elif content.trials_left:
        state = f" (unfinished: {content.trials_left} trial(s) of its plan not recorded yet)"
    else:
        state = ""
    stdout.print(f"report: {path}{state}")
    if open_browser:
        import webbrowser

        webbrowser.open(path.resolve().as_uri())


@command(
    "infovae-sweep ls",
    "infovae-sweep ls s3://bucket/studies",
    name="ls",
)
def list_command(
    where: Annotated[
        str,
        typer.Argument(
            metavar="RESULTS",
            help="Results root folder, or a storage URI that studies are mirrored under.",
        ),
    ] = "results",
) -> None:
    """List the studies under a results folder: trials by status, trials of the plan left,
    best value per arm."""
    if _is_uri(where):
        from sweep.run.mirror import MirrorError, pulled_root

        with contextlib.ExitStack() as stack:
            try:
                root = stack.enter_context(pulled_root(where))
            except MirrorError as error:
                _fail(str(error))
            except OSError as error:
                _fail(f"{where}: cannot be read ({error})", code=1)
            for study in sorted(p.name for p in root.iterdir() if p.is_dir()):
                _warn_if_behind(f"{where.rstrip('/')}/{study}")
            _list_studies(root, where)
        return
    if not Path(where).is_dir():
        _fail(f"{where}: no such results folder")
    _list_studies(Path(where), where)


def _list_studies(results: Path, title: str) -> None:
    from sweep.analysis.leaderboard import best_of
    from sweep.analysis.study import analyse_study
    from sweep.integrity import damaged_files
    from sweep.names import STATUSES
    from sweep.spec import StudySpecError
    from sweep.store import list_studies
    from sweep.tables import studies_table

    studies = list_studies(results)
    if not studies:
        stdout.print(f"no studies under {title}")
        return
    damaged: list[str] = []
    refused: list[str] = []
    rows = []
    for summary in studies:
        damage = damaged_files(summary.path, thorough=False)
        if summary.error and not damage:
            damage = [summary.error]
        if damage:
            rows.append((summary.name, "?", "", "", "", "", "[red]damaged (see below)[/]"))
            damaged += damage
            continue
        try:
            boards = analyse_study(summary.path, strict=True).leaderboards(top=1)
        except StudySpecError as error:  # a study file the loader refuses: no ranking to show
            refusal = "[red]study.yaml refused (see below)[/]"
            rows.append((summary.name, "?", "", "", "", "", refusal))
            refused.append(str(error))
            continue
        rows.append(
            (
                summary.name,
                str(summary.n_trials),
                *[str(summary.by_status.get(status, 0)) for status in STATUSES],
                str(sum(board.trials_left for board in boards)),
                "; ".join(best_of(boards)) or "-",
            )
        )
    stdout.print(studies_table(title, rows))
    for problem in damaged:
        console.print(f"[bold red]damaged:[/] {escape(problem)}", highlight=False)
    for problem in refused:
        console.print(f"[bold red]refused:[/] {escape(problem)}", highlight=False)
    if damaged or refused:  # the others are listed; the exit status says not all could be read
        raise typer.Exit(USAGE_ERROR)


@command(
    "infovae-sweep show results/digits",
    "infovae-sweep show results/digits --top 3",
)
def show(
    where: StudyArgument,
    top: Annotated[int, typer.Option(min=1, help="Trials shown per arm.")] = 5,
) -> None:
    """Print the leaderboard of each arm (best completed trials by the study's objective) with
    each trial's convergence and, per arm, how many trials converged in each phase."""
    with _readable(where) as folder:
        _show(folder, top)


def _show(folder: Path, top: int) -> None:
    from sweep.spec import StudySpecError
    from sweep.tables import leaderboard_table

    analysis = _analyse(folder)
    try:
        boards = analysis.leaderboards(top=top)
    except StudySpecError as error:
        _fail(str(error))
    for board in boards:
        stdout.print(leaderboard_table(board))
        if board.convergence:
            stdout.print(board.convergence, highlight=False)
    stdout.print(analysis.convergence.rule, highlight=False)
    left = sum(board.trials_left for board in boards)
    if left:  # a study stopped early, or still running (here or on the cluster it mirrors)
        stdout.print(f"unfinished: {left} trial(s) of the study's plan not recorded yet")


class ExportFormatChoice(str, Enum):
    """The formats of :mod:`sweep.export` (kept here so the CLI starts without pandas)."""

    csv = "csv"
    markdown = "markdown"
    latex = "latex"
    json = "json"


@command(
    "infovae-sweep export results/digits --format markdown",
    "infovae-sweep export results/digits --format csv --out tables",
    name="export",
)
def export_command(
    where: StudyArgument,
    fmt: Annotated[
        ExportFormatChoice,
        typer.Option(
            "--format",
            help="csv (one file per table), markdown or latex (one file, pasteable), "
            "json (one document).",
        ),
    ] = ExportFormatChoice.csv,
    out: Annotated[
        Path | None,
        typer.Option(help="Output folder (default FOLDER/export; for a URI ./<study>-export)."),
    ] = None,
    top: Annotated[int, typer.Option(min=1, help="Trials per arm in the leaderboards.")] = 10,
) -> None:
    """Export the verdict, the claims and the per-arm leaderboards for a paper or notebook."""
    from sweep.export import EXPORT_DIR, collect_tables, write_export
    from sweep.spec import StudySpecError

    out = out or _default_out(where, "-export")
    with _readable(where) as folder:
        analysis = _analyse(folder)
        try:
            tables = collect_tables(analysis, top=top)
        except StudySpecError as error:
            _fail(str(error))
        try:
            paths = write_export(tables, fmt.value, out or folder / EXPORT_DIR)
        except OSError as error:
            _fail(f"export not written: {error}", code=1)
    for path in paths:
        stdout.print(str(path), highlight=False, soft_wrap=True)


@command(
    "infovae-sweep compare results/mnist_cpu results/mnist",
    "infovae-sweep compare results/digits results/divergences --out compare.html",
    name="compare",
)
def compare_command(
    study_a: Annotated[
        Path, typer.Argument(metavar="FOLDER_A", help="Study folder A, e.g. results/digits.")
    ],
    study_b: Annotated[
        Path, typer.Argument(metavar="FOLDER_B", help="Study folder B, compared with A.")
    ],
    out: Annotated[
        Path | None,
        typer.Option(help="Output HTML file (default FOLDER_A/compare-<name of B>.html)."),
    ] = None,
) -> None:
    """Set two studies' confirm-phase metrics side by side (arms matched by name): mean and
    95% CI per arm and study, B - A with its CI and tests, unconverged runs marked, and the
    study settings that differ. Prints a text summary and writes one HTML page."""
    from sweep.analysis.comparison import compare_studies, default_out
    from sweep.atomic_files import atomic_write_text
    from sweep.report.html import render_comparison
    from sweep.store import NotAStudyFolderError, StoreError
    from sweep.tables import comparison_text

    try:
        comparison = compare_studies(study_a, study_b)
    except (NotAStudyFolderError, StoreError) as error:
        _fail(str(error))
    path = out if out is not None else default_out(comparison)
    try:
        page = render_comparison(comparison)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, page)
    except OSError as error:
        _fail(f"comparison not written: {error}", code=1)
    sys.stdout.write(comparison_text(comparison))
    stdout.print(f"compare: {path}", highlight=False, soft_wrap=True, markup=False)


@command(
    "infovae-sweep findings",
    "infovae-sweep findings results --out docs/findings.md",
    name="findings",
)
def findings_command(
    results: Annotated[
        Path,
        typer.Argument(metavar="RESULTS", help="Folder of study folders, e.g. results."),
    ] = Path("results"),
    out: Annotated[
        Path,
        typer.Option(help="The page to write; its SVG figures go to findings/ beside it."),
    ] = Path("docs/findings.md"),
    studies: Annotated[
        Path,
        typer.Option(help="Study files: those without a study folder are listed as not run."),
    ] = Path("studies"),
) -> None:
    """Write the findings page: each claim of the paper with its verdict over the study
    folders, the numbers behind it, and the studies not run yet."""
    from sweep.analysis.findings import gather_findings
    from sweep.findings_page import write_findings
    from sweep.store import StoreError

    if not results.is_dir():
        _fail(f"{results}: no such results folder")
    try:
        findings = gather_findings(results, studies if studies.is_dir() else None)
    except StoreError as error:
        _fail(str(error))
    try:
        written = write_findings(findings, out)
    except OSError as error:
        _fail(f"findings not written: {error}", code=1)
    verdicts = "; ".join(f"{f.claim.id}: {f.verdict}" for f in findings.claims)
    stdout.print(
        f"findings: {written[0]} ({len(findings.studies)} studies; {verdicts})",
        highlight=False,
        soft_wrap=True,
        markup=False,
    )


@command(
    "infovae-sweep summary results/lambda_sweep",
    "infovae-sweep summary results/lambda_sweep --by param.objective.lambda --phase confirm",
    "infovae-sweep summary results/digits --metric nll_iwae --metric mmd --csv digits.csv",
    name="summary",
)
def summary_command(
    where: StudyArgument,
    by: Annotated[
        list[str] | None,
        typer.Option(
            help="param.* column to group on (repeatable; default: every searched setting "
            "except seeds)."
        ),
    ] = None,
    metric: Annotated[
        list[str] | None,
        typer.Option(help="Metric without the metric. prefix (repeatable; default: the paper's)."),
    ] = None,
    phase: Annotated[
        list[str] | None, typer.Option(help="search and/or confirm (default: both).")
    ] = None,
    csv: Annotated[Path | None, typer.Option(help="Also write the table as CSV here.")] = None,
) -> None:
    """Per arm and setting: mean and 95% t interval of each metric over the seeds."""
    from sweep.analysis.grid import DEFAULT_METRICS
    from sweep.names import PHASES
    from sweep.tables import grid_summary_table

    with _readable(where) as folder:
        analysis = _analyse(folder)
    metrics = tuple(metric) if metric else DEFAULT_METRICS
    try:
        table = analysis.grid_summary(by=by, metrics=metrics, phases=tuple(phase or PHASES))
    except KeyError as error:
        _fail(f"--by: {error.args[0]}")
    if csv is not None:
        from sweep.atomic_files import atomic_write_text

        atomic_write_text(csv, table.to_csv(index=False))
    stdout.print(grid_summary_table(analysis.data.name, table, metrics))


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    app()
