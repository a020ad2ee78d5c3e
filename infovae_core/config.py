"""Typed, frozen configuration of one training run (one trial).

Everything a trial needs is here, as plain data: the sweep builds a :class:`TrialConfig` from a
study's settings plus the sampled hyperparameters and hands it to :func:`infovae_core.trainer.fit`.
Nested dicts with dotted keys (``objective.lambda``, ``model.decoder.width``) map one-to-one onto
these fields; :func:`TrialConfig.from_dict` refuses unknown keys and checks every invariant.

The objective weights follow docs/objective.md (maximised, per data point)::

    L = E_q(z|x)[log p(x|z)] - (1 - alpha) KL(q(z|x) || p(z)) - (alpha + lambda - 1) D(q(z) || p(z))

so ``alpha <= 1`` keeps the KL weight non-negative and ``alpha + lambda - 1 >= 0`` keeps the
divergence weight non-negative; a negative weight would make the optimiser *increase* that term,
so both are refused at construction.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from typing import Any, Literal, get_args, get_origin, get_type_hints

DatasetName = Literal["digits", "mnist", "fashion_mnist", "array"]
Binarization = Literal["dynamic", "static", "none"]
EncoderKind = Literal["mlp", "conv"]
DecoderKind = Literal["mlp", "conv", "pixelcnn"]
LikelihoodKind = Literal["bernoulli", "gaussian"]
VarianceKind = Literal["fixed", "learned"]
DivergenceKind = Literal["mmd", "adversarial", "stein"]
KernelKind = Literal["rbf", "imq"]
LearningRateSchedule = Literal["constant", "cosine"]


#: Images in each dataset's training split as :mod:`infovae_core.data` builds it (digits: 70 % of
#: 1,797; MNIST and Fashion-MNIST: 60,000 minus the 10,000 validation images). Kept here so that
#: a too large ``data.train_size`` is refused when the configuration is built, before any file is
#: read; tests check these against the loaded splits. An ``array`` dataset's split is known only
#: from its file (``infovae-sweep validate`` reads it).
TRAIN_SPLIT_SIZES: dict[str, int] = {"digits": 1258, "mnist": 50_000, "fashion_mnist": 50_000}


class ConfigError(ValueError):
    """A configuration value is unknown or out of range; the message names the dotted key."""


def _check(condition: bool, key: str, message: str) -> None:
    if not condition:
        raise ConfigError(f"{key}: {message}")


@dataclass(frozen=True)
class DataConfig:
    """Which dataset, where its files are, and how images are binarised.

    ``dataset``: ``digits`` (bundled), ``mnist`` and ``fashion_mnist`` (IDX files under
    ``data_dir``), or ``array``: the user's ``.npz`` / ``.npy`` file of images at ``path``
    (:mod:`infovae_core.datafiles` gives the layouts). A file without its own train / val /
    test arrays is split by ``seed`` into ``val_fraction`` and ``test_fraction`` of its images
    (rounded to the nearest image) and a training split of the rest; the fractions are ignored
    for a file with its own splits and for the other datasets.
    ``binarize``: ``dynamic`` resamples Bernoulli pixels every epoch, ``static`` samples once
    (seeded by ``seed``), ``none`` keeps grey levels in [0, 1] (for Gaussian likelihoods).
    ``data_dir`` of None means ``$INFOVAE_DATA_DIR``, else the per-user cache (MNIST and
    Fashion-MNIST only).
    ``seed`` fixes the train/validation/test split and static binarisation.
    ``download``: fetch missing MNIST / Fashion-MNIST files from the public mirrors (else a
    clear error).
    ``train_size``: train on a seeded subset of that many images of the training split (None =
    all of it); the validation and test splits are unchanged. The subset depends only on
    ``dataset`` and ``seed`` (never on ``train.seed``), so every arm and model seed of a study
    trains on the same images, and a smaller size is a subset of a larger one
    (:func:`infovae_core.data.apply_train_size`). It must be >= 2 and at most the training
    split (:data:`TRAIN_SPLIT_SIZES`): the knob of the paper's small-data experiment.
    """

    dataset: DatasetName = "digits"
    data_dir: str | None = None
    download: bool = True
    binarize: Binarization = "dynamic"
    seed: int = 0
    train_size: int | None = None
    path: str | None = None
    val_fraction: float = 0.1
    test_fraction: float = 0.2

    def __post_init__(self) -> None:
        if self.dataset == "array":
            _check(
                bool(self.path),
                "data.path",
                "required for data.dataset array: a .npz or .npy file of images",
            )
        else:
            _check(
                self.path is None,
                "data.path",
                f"is read only for data.dataset array; {self.dataset} is found through "
                "data.data_dir",
            )
        for key, value in (
            ("val_fraction", self.val_fraction),
            ("test_fraction", self.test_fraction),
        ):
            _check(
                math.isfinite(value) and 0.0 < value < 1.0,
                f"data.{key}",
                f"must be between 0 and 1 (exclusive), got {value}",
            )
        _check(
            self.val_fraction + self.test_fraction < 1.0,
            "data.test_fraction",
            f"data.val_fraction + data.test_fraction = {self.val_fraction + self.test_fraction:g} "
            "leaves no training images; keep the sum below 1",
        )
        if self.train_size is None:
            return
        _check(
            self.train_size >= 2, "data.train_size", f"must be >= 2 or null, got {self.train_size}"
        )
        available = TRAIN_SPLIT_SIZES.get(self.dataset)
        _check(
            available is None or self.train_size <= available,
            "data.train_size",
            f"{self.train_size} is more than the {available} images of the {self.dataset} "
            "training split",
        )


@dataclass(frozen=True)
class EncoderConfig:
    """Gaussian encoder q(z|x): ``kind`` network with ``depth`` hidden layers of ``width`` units
    (for ``conv``: ``depth`` stride-2 conv layers, channels starting at ``width // 4``)."""

    kind: EncoderKind = "mlp"
    width: int = 256
    depth: int = 2

    def __post_init__(self) -> None:
        _check(self.width >= 4, "model.encoder.width", f"must be >= 4, got {self.width}")
        _check(self.depth >= 1, "model.encoder.depth", f"must be >= 1, got {self.depth}")


@dataclass(frozen=True)
class DecoderConfig:
    """Decoder p(x|z) and its likelihood.

    ``likelihood``: ``bernoulli`` (binarised pixels) or ``gaussian`` with ``variance`` ``fixed``
    (standard deviation ``std``) or ``learned`` (one log-variance per pixel).

    ``kind='pixelcnn'`` is an autoregressive decoder (:mod:`infovae_core.pixelcnn`) whose
    capacity is set by ``pixelcnn_layers`` gated layers of ``pixelcnn_channels`` channels with
    ``pixelcnn_kernel`` x ``pixelcnn_kernel`` (odd) masked kernels; ``width``/``depth`` then size
    its conditioning MLP z -> per-pixel features. It needs the ``bernoulli`` likelihood. The
    ``pixelcnn_*`` fields are ignored by the other kinds.
    """

    kind: DecoderKind = "mlp"
    width: int = 256
    depth: int = 2
    likelihood: LikelihoodKind = "bernoulli"
    variance: VarianceKind = "fixed"
    std: float = 0.1
    pixelcnn_layers: int = 4
    pixelcnn_channels: int = 32
    pixelcnn_kernel: int = 5

    def __post_init__(self) -> None:
        _check(self.width >= 4, "model.decoder.width", f"must be >= 4, got {self.width}")
        _check(self.depth >= 1, "model.decoder.depth", f"must be >= 1, got {self.depth}")
        _check(self.std > 0, "model.decoder.std", f"must be > 0, got {self.std}")
        _check(
            self.pixelcnn_layers >= 1,
            "model.decoder.pixelcnn_layers",
            f"must be >= 1, got {self.pixelcnn_layers}",
        )
        _check(
            self.pixelcnn_channels >= 2,
            "model.decoder.pixelcnn_channels",
            f"must be >= 2, got {self.pixelcnn_channels}",
        )
        _check(
            self.pixelcnn_kernel >= 3 and self.pixelcnn_kernel % 2 == 1,
            "model.decoder.pixelcnn_kernel",
            f"must be odd and >= 3, got {self.pixelcnn_kernel}",
        )
        _check(
            self.kind != "pixelcnn" or self.likelihood == "bernoulli",
            "model.decoder.likelihood",
            f"the pixelcnn decoder models binary pixels and needs 'bernoulli', got "
            f"{self.likelihood!r}",
        )


@dataclass(frozen=True)
class ModelConfig:
    latent_dim: int = 8
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)

    def __post_init__(self) -> None:
        _check(self.latent_dim >= 1, "model.latent_dim", f"must be >= 1, got {self.latent_dim}")


@dataclass(frozen=True)
class ObjectiveConfig:
    """Weights and divergence of the InfoVAE objective (see the module docstring).

    ELBO: ``alpha=0, lambda_=1``.  beta-VAE: ``alpha=1-beta, lambda_=beta``.
    InfoVAE-MMD: ``divergence='mmd'`` with ``lambda_ > 1 - alpha``.
    ``kernel``/``scales`` set the training MMD kernel (docs/kernels.md convention, scales summed);
    ``mmd_unbiased`` picks the unbiased U-statistic instead of the biased V-statistic.
    ``divergence='adversarial'``: D is the Jensen-Shannon estimate of an MLP discriminator on z
    (two hidden layers of ``discriminator_width`` units) trained by its own Adam optimiser
    (``discriminator_lr``, ``discriminator_steps`` steps after every VAE step).
    ``divergence='stein'``: D is descended by Stein variational gradient (SVGD) on the batch of
    codes. The ``discriminator_*`` fields are ignored by the other divergences.
    The dotted key for ``lambda_`` is ``objective.lambda``.
    """

    alpha: float = 0.0
    lambda_: float = 1.0
    divergence: DivergenceKind = "mmd"
    kernel: KernelKind = "rbf"
    scales: tuple[float, ...] = (1.0,)
    mmd_unbiased: bool = False
    discriminator_lr: float = 1e-3
    discriminator_width: int = 256
    discriminator_steps: int = 1

    def __post_init__(self) -> None:
        _check(math.isfinite(self.alpha), "objective.alpha", "must be finite")
        _check(
            math.isfinite(self.lambda_) and self.lambda_ > 0,
            "objective.lambda",
            f"must be > 0, got {self.lambda_}",
        )
        _check(
            self.alpha <= 1,
            "objective.alpha",
            f"must be <= 1 (the KL weight 1 - alpha would be negative), got {self.alpha}",
        )
        _check(
            self.alpha + self.lambda_ - 1 >= -1e-12,
            "objective",
            f"alpha + lambda - 1 = {self.alpha + self.lambda_ - 1:g} is negative: the optimiser "
            "would increase D(q(z) || p(z)); use lambda >= 1 - alpha",
        )
        _check(len(self.scales) >= 1, "objective.scales", "needs at least one scale")
        _check(all(s > 0 for s in self.scales), "objective.scales", "every scale must be > 0")
        _check(
            math.isfinite(self.discriminator_lr) and self.discriminator_lr > 0,
            "objective.discriminator_lr",
            f"must be > 0, got {self.discriminator_lr}",
        )
        _check(
            self.discriminator_width >= 2,
            "objective.discriminator_width",
            f"must be >= 2, got {self.discriminator_width}",
        )
        _check(
            self.discriminator_steps >= 1,
            "objective.discriminator_steps",
            f"must be >= 1, got {self.discriminator_steps}",
        )

    @property
    def kl_weight(self) -> float:
        """Weight of the per-sample KL term: 1 - alpha."""
        return 1.0 - self.alpha

    @property
    def divergence_weight(self) -> float:
        """Weight of the aggregate divergence D(q(z) || p(z)): alpha + lambda - 1 (>= 0)."""
        return max(self.alpha + self.lambda_ - 1.0, 0.0)


@dataclass(frozen=True)
class EvalConfig:
    """Sizes of the post-training evaluation (docs/metrics.md).

    ``max_points``: evaluation points used for MMD / log-det / MI (None = the whole split).
    ``iwae_samples`` k and ``iwae_points`` (test subset) for ``metric.nll_iwae``.
    ``probe_labels``: one ``metric.probe_acc_<n>`` per n. ``seed`` makes it reproducible.
    ``latents_to_keep``: latents returned for reports (0 = none).
    """

    max_points: int | None = None
    iwae_samples: int = 100
    iwae_points: int = 1000
    probe_labels: tuple[int, ...] = (100, 1000)
    seed: int = 1234
    latents_to_keep: int = 500

    def __post_init__(self) -> None:
        _check(self.iwae_samples >= 1, "eval.iwae_samples", "must be >= 1")
        _check(self.iwae_points >= 1, "eval.iwae_points", "must be >= 1")
        _check(all(n >= 2 for n in self.probe_labels), "eval.probe_labels", "each must be >= 2")
        _check(self.max_points is None or self.max_points >= 2, "eval.max_points", "must be >= 2")


_DEVICE_RE = re.compile(r"auto|cpu|mps|cuda(:[0-9]+)?")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings. ``device='auto'`` is cuda when present, else cpu.

    ``amp``: bfloat16 autocast of the training forward pass; ``compile``: ``torch.compile`` of
    the model for training. Both are opt-in, CUDA only, and ignored on the CPU (the trainer
    says so in :attr:`FitResult.notes`).

    ``steps``: a training budget in gradient steps. When set it replaces ``epochs``: the run
    lasts ``ceil(steps / batches per epoch)`` whole epochs (:meth:`TrialConfig.planned_epochs`),
    so runs on 500 and on 50,000 images get the same number of updates. Studies that compare
    training-set sizes need it; with ``steps`` null, ``epochs`` is the budget.

    ``val_points``: the per-epoch validation terms (the learning curves and the convergence
    rule) are computed on the first ``val_points`` images of the validation split (null: all of
    it). Runs of many short epochs on a small training set would otherwise spend most of their
    time validating. The final evaluation metrics always use the test split.

    ``lr_schedule``: ``constant`` keeps Adam's rate at ``lr``; ``cosine`` anneals it over the
    planned gradient steps T (every epoch's batches, :meth:`TrialConfig.planned_epochs`) as
    ``lr_t = lr_min + (lr - lr_min) (1 + cos(pi t / T)) / 2`` for step t = 0 .. T-1, so a run
    ends settled at its budget rather than still moving at rate ``lr``. It is a pure function
    of the step, so a resumed run needs no scheduler state.

    ``checkpoint_every``: the trainer hands its whole state (:class:`infovae_core.trainer.
    TrainState`: model, optimisers, RNG streams, history) to its checkpoint callback after every
    ``checkpoint_every``-th epoch, so that an interrupted trial continues from there with the
    same result as an uninterrupted one; 0 turns checkpoints off. The sweep stores them through
    Ray Tune (a trial retried after a lost node resumes from its last one).
    ``checkpoint_min_seconds``: and only once at least this many seconds of training have
    passed since the start or the last checkpoint (a save and its copy to storage cost tenths
    of a second, too much for trials of seconds that a retry loses little of; 0: every
    ``checkpoint_every``-th epoch). When a checkpoint is taken never changes the result.
    """

    epochs: int = 20
    batch_size: int = 64
    lr: float = 1e-3
    seed: int = 0
    device: str = "auto"
    amp: bool = False
    compile: bool = False
    steps: int | None = None
    val_points: int | None = None
    lr_schedule: LearningRateSchedule = "constant"
    lr_min: float = 0.0
    checkpoint_every: int = 5
    checkpoint_min_seconds: float = 30.0

    def __post_init__(self) -> None:
        _check(self.epochs >= 1, "train.epochs", f"must be >= 1, got {self.epochs}")
        _check(
            0.0 <= self.lr_min <= self.lr,
            "train.lr_min",
            f"must be between 0 and train.lr ({self.lr}), got {self.lr_min}",
        )
        _check(self.batch_size >= 2, "train.batch_size", f"must be >= 2, got {self.batch_size}")
        _check(self.lr > 0, "train.lr", f"must be > 0, got {self.lr}")
        _check(
            isinstance(self.device, str) and _DEVICE_RE.fullmatch(self.device) is not None,
            "train.device",
            f"must be auto, cpu, cuda, cuda:<index> or mps, got {self.device!r}",
        )
        _check(
            self.steps is None or self.steps >= 1, "train.steps", f"must be >= 1, got {self.steps}"
        )
        _check(
            self.val_points is None or self.val_points >= 2,
            "train.val_points",
            f"must be >= 2, got {self.val_points}",
        )
        _check(
            self.checkpoint_every >= 0,
            "train.checkpoint_every",
            f"must be >= 0 (0: no checkpoints), got {self.checkpoint_every}",
        )
        _check(
            0.0 <= self.checkpoint_min_seconds <= 1e9,
            "train.checkpoint_min_seconds",
            f"must be between 0 and 1e9, got {self.checkpoint_min_seconds}",
        )


@dataclass(frozen=True)
class TrialConfig:
    """One trial: data, model, objective, training and evaluation settings."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self) -> None:
        # A PixelCNN conditions each pixel on the previous ones as binary values.
        _check(
            self.model.decoder.kind != "pixelcnn" or self.data.binarize != "none",
            "data.binarize",
            "the pixelcnn decoder models binary pixels: use dynamic or static binarisation",
        )

    def batches_per_epoch(self, n_train: int | None = None) -> int:
        """Gradient steps in one epoch over ``n_train`` training images (default: the
        configured training set, ``data.train_size`` or the whole split). A last batch of one
        image is skipped by the trainer (a batch-level divergence needs two codes)."""
        n = n_train if n_train is not None else self.train_images()
        batch = min(self.train.batch_size, n)
        full, rest = divmod(n, batch)
        return full + (1 if rest >= 2 else 0)

    def train_images(self) -> int:
        """Images the model trains on: ``data.train_size``, else the dataset's training split.

        Raises :class:`ConfigError` for an ``array`` dataset without ``data.train_size``: its
        split is known only from the file (the trainer passes the size it loaded)."""
        if self.data.train_size is not None:
            return self.data.train_size
        _check(
            self.data.dataset in TRAIN_SPLIT_SIZES,
            "train.steps",
            f"a step budget on data.dataset {self.data.dataset} needs data.train_size: the "
            "size of the file's training split is not known before it is read",
        )
        return TRAIN_SPLIT_SIZES[self.data.dataset]

    def planned_epochs(self, n_train: int | None = None) -> int:
        """Epochs the trainer will run: ``train.epochs``, or with ``train.steps`` set the
        fewest whole epochs holding that many gradient steps, ``ceil(steps / batches)``."""
        if self.train.steps is None:
            return self.train.epochs
        return -(-self.train.steps // self.batches_per_epoch(n_train))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrialConfig:
        """Build from nested dicts and/or dotted keys (``{"objective.lambda": 10}``).

        Unknown keys and wrongly typed values raise :class:`ConfigError` naming the key.
        """
        return _build(cls, _nest(values), prefix="")

    def to_dict(self) -> dict[str, Any]:
        """Nested plain dict (``lambda_`` written as ``lambda``; tuples as lists)."""
        return _to_plain(self)

    def to_flat_dict(self) -> dict[str, Any]:
        """Dotted keys to scalar/list values, e.g. ``{"objective.lambda": 1.0, ...}``."""
        return _flatten(self.to_dict())

    def replace(self, overrides: dict[str, Any]) -> TrialConfig:
        """A copy with dotted-key overrides applied (validated like ``from_dict``)."""
        merged = self.to_flat_dict()
        for key in overrides:
            if key not in merged:
                raise ConfigError(f"{key}: unknown key")
        merged.update(overrides)
        return TrialConfig.from_dict(merged)


def _field_name(key: str) -> str:
    return "lambda_" if key == "lambda" else key


def _key_name(name: str) -> str:
    return "lambda" if name == "lambda_" else name


def _nest(values: dict[str, Any]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for key, value in values.items():
        parts = str(key).split(".")
        node = nested
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{key}: conflicts with a non-mapping value for {part}")
            node = child
        if isinstance(value, dict):
            existing = node.setdefault(parts[-1], {})
            if not isinstance(existing, dict):
                raise ConfigError(f"{key}: conflicts with a non-mapping value")
            existing.update(_nest(value))
        else:
            node[parts[-1]] = value
    return nested


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    origin = get_origin(annotation)
    args = get_args(annotation)
    if origin is Literal:
        _check(value in args, key, f"must be one of {list(args)}, got {value!r}")
        return value
    if origin is tuple:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = [value]
        _check(isinstance(value, (list, tuple)), key, f"must be a list, got {value!r}")
        return tuple(_coerce(v, args[0], key) for v in value)
    if args and type(None) in args:  # X | None
        if value is None:
            return None
        inner = [a for a in args if a is not type(None)][0]
        return _coerce(value, inner, key)
    if annotation is bool:
        _check(isinstance(value, bool), key, f"must be true or false, got {value!r}")
        return value
    if annotation is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        if not ok and isinstance(value, float) and value.is_integer():
            return int(value)
        _check(ok, key, f"must be an integer, got {value!r}")
        return value
    if annotation is float:
        _check(
            isinstance(value, (int, float)) and not isinstance(value, bool),
            key,
            f"must be a number, got {value!r}",
        )
        try:
            return float(value)
        except OverflowError:  # an integer beyond the float range, e.g. 10**400
            size = f"{'-' if value < 0 else ''}about 10^{int(value.bit_length() * math.log10(2))}"
            _check(False, key, f"must be a number within the float range, got {size}")
    if annotation is str:
        _check(isinstance(value, str), key, f"must be a string, got {value!r}")
        return value
    return value


def _build(cls: type, values: Any, prefix: str) -> Any:
    where = prefix.rstrip(".") or "config"
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: must be a mapping, got {values!r}")
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        name = _field_name(key)
        if name not in names:
            allowed = ", ".join(sorted(_key_name(n) for n in names))
            raise ConfigError(f"{prefix}{key}: unknown key (allowed: {allowed})")
        annotation = hints[name]
        if dataclasses.is_dataclass(annotation):
            kwargs[name] = _build(annotation, value, prefix=f"{prefix}{key}.")
        else:
            kwargs[name] = _coerce(value, annotation, f"{prefix}{key}")
    return cls(**kwargs)


def _to_plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {_key_name(f.name): _to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple):
        return [_to_plain(v) for v in obj]
    return obj


def _flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
