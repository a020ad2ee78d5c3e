"""Benchmark (not a test): training throughput of ``infovae_core.trainer.fit`` against a minimal
hand-written PyTorch loop of the same network and loss, measured in the same run.

For each configuration (a small table entry of TrialConfig overrides, :data:`ENTRIES`) the
script trains

- *ours*: :func:`infovae_core.trainer.fit` (what we ship), timed by its ``train_seconds``;
  the per-epoch validation pass inside it is timed separately, so two figures are printed:
  with and without per-epoch validation. The final evaluation is never counted.
- *minimal*: the same model (``build_model`` of the same config, same seed), the same batch
  size, Adam, the data as one tensor with index-slice batches and dynamic binarisation
  ``torch.rand < x``; the loss written inline: BCE-with-logits reconstruction, Gaussian KL and,
  for InfoVAE-MMD, the biased RBF MMD^2 to as many N(0, I) draws with docs/kernels.md's bandwidth
  ``k(a, b) = exp(-||a - b||^2 / (2 d s^2))``. It exists for mlp/conv networks with the ELBO or
  MMD only; other entries (PixelCNN decoder, adversarial and Stein divergences) are measured
  as *ours* alone, and only when this checkout's config accepts them.

Images per second = training images per epoch x epochs / seconds. Each repeat runs both loops
back to back (alternating which goes first) after a warm-up; the figures are medians over
repeats and the ratio is the median of the per-repeat ratios ours / minimal.
Target: ours >= 0.95 x minimal.

    INFOVAE_DATA_DIR=/path/to/data python bench/train_throughput.py \\
        [--epochs 1] [--batch-size 128] [--device auto] [--configs mlp-elbo,conv-mmd] \\
        [--repeats 3] [--threads N] [--train-images N] [--no-warmup] [--profile] \\
        [--amp] [--compile]

``--amp`` / ``--compile`` set ``train.amp`` / ``train.compile`` for *ours* only (both act on
CUDA only): the ratio then reads as the speed-up over the plain fp32, eager minimal loop.

MNIST comes from ``$INFOVAE_DATA_DIR/mnist`` (never downloaded here); without it the script says
so and falls back to the embedded 8x8 digits (figures then are not comparable with MNIST ones).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, get_args

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, ROOT)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import infovae_core.trainer as trainer  # noqa: E402
from infovae_core.config import (  # noqa: E402
    ConfigError,
    DecoderKind,
    DivergenceKind,
    TrialConfig,
)
from infovae_core.data import DatasetSplits, Split, load_dataset  # noqa: E402
from infovae_core.datafiles import DataError  # noqa: E402
from infovae_core.models import build_model  # noqa: E402

TARGET_RATIO = 0.95

#: Settings shared by every entry: studies/mnist.yaml's model sizes and batch size, and the
#: smallest evaluation (it runs after ``train_seconds`` stops, so it is never timed, but it
#: still costs wall time).
BASE: dict[str, Any] = {
    "data.download": False,
    "data.binarize": "dynamic",
    "model.latent_dim": 16,
    "train.batch_size": 128,
    "train.lr": 1e-3,
    "train.seed": 0,
    "eval.max_points": 100,
    "eval.iwae_samples": 1,
    "eval.iwae_points": 10,
    "eval.probe_labels": [10],
    "eval.latents_to_keep": 0,
}

MLP = {
    "model.encoder.kind": "mlp", "model.encoder.width": 256, "model.encoder.depth": 2,
    "model.decoder.kind": "mlp", "model.decoder.width": 256, "model.decoder.depth": 2,
}
CONV = {
    "model.encoder.kind": "conv", "model.encoder.width": 128, "model.encoder.depth": 3,
    "model.decoder.kind": "conv", "model.decoder.width": 128, "model.decoder.depth": 3,
}
ELBO = {"objective.alpha": 0.0, "objective.lambda": 1.0, "objective.divergence": "mmd"}
# InfoVAE-MMD as in Zhao et al.'s MNIST experiments: alpha = 0, lambda = 1000 (KL weight 1,
# MMD weight 999), RBF kernel with one scale, biased estimate.
MMD = {
    "objective.alpha": 0.0, "objective.lambda": 1000.0, "objective.divergence": "mmd",
    "objective.kernel": "rbf", "objective.scales": [1.0], "objective.mmd_unbiased": False,
}


@dataclass(frozen=True)
class Entry:
    """One benchmarked configuration: TrialConfig ``overrides`` on top of :data:`BASE`;
    ``minimal``: also time the hand-written loop (only for mlp/conv with the ELBO or MMD)."""

    name: str
    overrides: dict[str, Any]
    minimal: bool = True
    #: Run when --configs is not given on a CPU (False for nets too slow there).
    cpu_default: bool = True


ENTRIES: tuple[Entry, ...] = (
    Entry("mlp-elbo", {**MLP, **ELBO}),
    Entry("mlp-mmd", {**MLP, **MMD}),
    Entry("conv-elbo", {**CONV, **ELBO}),
    Entry("conv-mmd", {**CONV, **MMD}),
    # Ours only (no hand-written counterpart); included when the config accepts them.
    Entry(
        "pixelcnn-elbo",
        {**CONV, **ELBO, "model.decoder.kind": "pixelcnn", "model.decoder.width": 64,
         "model.decoder.depth": 1},
        minimal=False,
        cpu_default=False,  # about 30 img/s on 1 CPU thread: name it in --configs to run it
    ),
    Entry(
        "mlp-adversarial",
        {**MLP, "objective.alpha": 0.0, "objective.lambda": 1000.0,
         "objective.divergence": "adversarial"},
        minimal=False,
    ),
    Entry(
        "mlp-stein",
        {**MLP, "objective.alpha": 0.0, "objective.lambda": 1000.0,
         "objective.divergence": "stein"},
        minimal=False,
    ),
)


def supported(entry: Entry, base: TrialConfig) -> str | None:
    """None when this checkout can run ``entry``, else why not (a decoder or divergence kind
    missing from the config's Literals, or a setting the config refuses)."""
    decoder = entry.overrides.get("model.decoder.kind")
    if decoder is not None and decoder not in get_args(DecoderKind):
        return f"decoder kind {decoder!r} is not in DecoderKind {get_args(DecoderKind)}"
    divergence = entry.overrides.get("objective.divergence")
    if divergence is not None and divergence not in get_args(DivergenceKind):
        return f"divergence {divergence!r} is not in DivergenceKind {get_args(DivergenceKind)}"
    try:
        base.replace(entry.overrides)
    except ConfigError as error:
        return f"config refused: {error}"
    return None


# ------------------------------------------------------------------------------------------
# Timing helpers


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class _ValidationClock:
    """Wraps the trainer's per-epoch validation function to add up its wall time."""

    device: torch.device
    seconds: float = 0.0
    calls: int = 0

    def wrap(self, function: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            _sync(self.device)
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                _sync(self.device)
                self.seconds += time.perf_counter() - start
                self.calls += 1

        return timed


@contextmanager
def _timed_validation(device: torch.device) -> Iterator[_ValidationClock | None]:
    """Time ``trainer._mean_terms`` (the per-epoch validation pass) while inside; yields None
    when the trainer no longer has it (then only the figure with validation is printed)."""
    original = getattr(trainer, "_mean_terms", None)
    if original is None:
        yield None
        return
    clock = _ValidationClock(device)
    trainer._mean_terms = clock.wrap(original)
    try:
        yield clock
    finally:
        trainer._mean_terms = original


@dataclass(frozen=True)
class OursTiming:
    """``fit``'s ``train_seconds`` (epochs incl. per-epoch validation) and the validation part
    (None when it could not be timed)."""

    train_seconds: float
    validation_seconds: float | None

    @property
    def training_only(self) -> float:
        return self.train_seconds - (self.validation_seconds or 0.0)


def run_ours(config: TrialConfig, splits: DatasetSplits, device: torch.device) -> OursTiming:
    """Train through :func:`infovae_core.trainer.fit`; evaluation is not timed."""
    with _timed_validation(device) as clock:
        result = trainer.fit(config, splits)
    return OursTiming(
        train_seconds=result.train_seconds,
        validation_seconds=None if clock is None else clock.seconds,
    )


# ------------------------------------------------------------------------------------------
# The minimal loop


def _rbf_mmd2_biased(
    z: torch.Tensor, prior: torch.Tensor, scales: tuple[float, ...]
) -> torch.Tensor:
    """Biased MMD^2 = mean k(z, z') + mean k(p, p') - 2 mean k(z, p), RBF kernel
    exp(-||a - b||^2 / (2 d s^2)) summed over ``scales``; ``z``, ``prior``: [B, d]."""
    d = z.shape[1]

    def k(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        # ||a - b||^2 by expansion (cdist's gradient is NaN at zero distance, e.g. k(z, z)).
        sq = (a.pow(2).sum(1)[:, None] + b.pow(2).sum(1)[None, :] - 2.0 * a @ b.T).clamp_min(0)
        return sum(torch.exp(-sq / (2.0 * d * s * s)) for s in scales)

    return k(z, z).mean() + k(prior, prior).mean() - 2.0 * k(z, prior).mean()


def run_minimal(
    config: TrialConfig, images: torch.Tensor, device: torch.device
) -> float:
    """Hand-written training loop of ``config``'s network and loss; returns seconds for
    ``config.train.epochs`` epochs over ``images`` ([N, 1, H, W] grey levels on ``device``)."""
    objective = config.objective
    assert objective.divergence == "mmd" and objective.kernel == "rbf"
    assert not objective.mmd_unbiased and config.model.decoder.likelihood == "bernoulli"
    kl_weight = 1.0 - objective.alpha
    mmd_weight = objective.alpha + objective.lambda_ - 1.0
    use_mmd = mmd_weight > 0  # the ELBO has no divergence term, so the minimal loop skips it

    torch.manual_seed(config.train.seed)
    generator = torch.Generator(device=device).manual_seed(config.train.seed)
    model = build_model(config.model, tuple(images.shape[1:])).to(device)
    encoder, decoder_net = model.encoder, model.decoder.net
    optimizer = torch.optim.Adam(model.parameters(), lr=config.train.lr)
    n = images.shape[0]
    batch_size = min(config.train.batch_size, n)

    _sync(device)
    start = time.perf_counter()
    model.train()
    for _ in range(config.train.epochs):
        binary = (torch.rand(images.shape, generator=generator, device=device) < images).float()
        order = torch.randperm(n, generator=generator, device=device)
        for first in range(0, n, batch_size):
            index = order[first : first + batch_size]
            if index.shape[0] < 2:
                continue
            x = binary[index]
            posterior = encoder(x)
            mu, logvar = posterior.mu, posterior.logvar
            z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
            logits = decoder_net(z)
            b = x.shape[0]
            nll = F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / b
            kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(1).mean()
            loss = nll + kl_weight * kl
            if use_mmd:
                loss = loss + mmd_weight * _rbf_mmd2_biased(
                    z, torch.randn_like(z), objective.scales
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    _sync(device)
    return time.perf_counter() - start


# ------------------------------------------------------------------------------------------
# Driver


@dataclass
class EntryResult:
    name: str
    images_per_epoch: int
    ours: list[OursTiming] = field(default_factory=list)
    minimal: list[float] = field(default_factory=list)
    skipped: str | None = None


def _subset(splits: DatasetSplits, n_train: int | None, n_val: int | None) -> DatasetSplits:
    def head(split: Split, n: int | None) -> Split:
        if n is None or n >= len(split):
            return split
        return Split(images=split.images[:n], labels=split.labels[:n])

    return DatasetSplits(
        name=splits.name,
        train=head(splits.train, n_train),
        val=head(splits.val, n_val),
        test=splits.test,
    )


def load_splits(base: TrialConfig) -> tuple[DatasetSplits, TrialConfig, str]:
    """MNIST from ``$INFOVAE_DATA_DIR`` (no download), else the digits with a note."""
    try:
        return load_dataset(base.data), base, "mnist"
    except DataError as error:
        note = (
            f"NOTE: MNIST not available ({error}); falling back to the embedded 8x8 digits. "
            "Set INFOVAE_DATA_DIR to a folder holding mnist/ for comparable figures."
        )
        fallback = base.replace({"data.dataset": "digits"})
        return load_dataset(fallback.data), fallback, note


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def warn_if_busy(threads: int) -> None:
    """Print the load average and warn when other processes compete for the cores: with
    more torch threads than idle cores, OpenMP threads wait on each other and a step can take
    several times longer (seen here: 2 threads 5-15x slower than 1 on a loaded 2-core box)."""
    try:
        load = os.getloadavg()[0]
    except OSError:  # not available on this platform
        return
    cores = os.cpu_count() or 1
    print(f"load average (1 min): {load:.2f} on {cores} cores")
    if load > 0.5:
        print(f"WARNING: the machine is not idle (load {load:.2f}); figures are unreliable"
              + (", and with several threads per loop badly so (try --threads 1)"
                 if threads > 1 else ""))


def _profile(config: TrialConfig, splits: DatasetSplits, device: torch.device) -> None:
    """Print the top operators of one short ``fit`` by self CPU time (torch.profiler)."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as prof:
        trainer.fit(config, splits)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1, help="timed epochs per run")
    parser.add_argument("--batch-size", type=int, default=BASE["train.batch_size"])
    parser.add_argument("--device", default="auto", help="auto (cuda if present), cpu, cuda:0")
    names = [e.name for e in ENTRIES]
    parser.add_argument(
        "--configs",
        default=None,
        help=f"comma-separated subset of {names} (default: all; on a CPU all but "
        f"{[e.name for e in ENTRIES if not e.cpu_default]})",
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each loop")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads for both loops (default: as is)"
    )
    parser.add_argument(
        "--train-images", type=int, default=None, help="use the first N training images"
    )
    parser.add_argument(
        "--no-warmup", action="store_true", help="skip the untimed warm-up run of each loop"
    )
    parser.add_argument(
        "--profile", action="store_true", help="also print a torch.profiler table of one fit"
    )
    parser.add_argument(
        "--amp", action="store_true",
        help="train.amp for ours (bfloat16 autocast; CUDA only): the minimal loop stays fp32",
    )
    parser.add_argument(
        "--compile", action="store_true",
        help="train.compile for ours (torch.compile; CUDA only): the minimal loop stays eager",
    )
    args = parser.parse_args(argv)

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = trainer.resolve_device(args.device)
    if args.configs is None:
        wanted = [e.name for e in ENTRIES if e.cpu_default or device.type != "cpu"]
    else:
        wanted = [n.strip() for n in args.configs.split(",") if n.strip()]
    unknown = sorted(set(wanted) - set(names))
    if unknown:
        parser.error(f"--configs: unknown {unknown}; choose from {names}")

    base = TrialConfig.from_dict(
        {**BASE, "data.dataset": "mnist", "train.batch_size": args.batch_size,
         "train.epochs": args.epochs, "train.device": str(device),
         "train.amp": args.amp, "train.compile": args.compile}
    )
    splits, base, source = load_splits(base)
    # Validation keeps its share of the training set (MNIST: 10k for 50k) when subsetting.
    n_val = None
    if args.train_images is not None:
        n_val = max(2, round(args.train_images * len(splits.val) / len(splits.train)))
    splits = _subset(splits, args.train_images, n_val).to(device)
    n_train = len(splits.train)
    print(f"data: {source if source == 'mnist' else 'digits'}; {n_train} training images, "
          f"{len(splits.val)} validation images, image shape {splits.image_shape}")
    if source != "mnist":
        print(source)
    print(f"device: {device}; torch {torch.__version__}; threads: {torch.get_num_threads()}; "
          f"batch size {args.batch_size}; epochs per run {args.epochs}; repeats {args.repeats}; "
          f"ours with amp={args.amp}, compile={args.compile}")
    if (args.amp or args.compile) and device.type != "cuda":
        print("NOTE: train.amp and train.compile act on CUDA only; on this device ours runs "
              "as without them")
    warn_if_busy(torch.get_num_threads())

    results: list[EntryResult] = []
    for entry in (e for e in ENTRIES if e.name in wanted):
        batches = sum(1 for s in range(0, n_train, args.batch_size) if n_train - s >= 2)
        images = n_train if n_train % args.batch_size != 1 else n_train - 1
        result = EntryResult(entry.name, images_per_epoch=images)
        results.append(result)
        reason = supported(entry, base)
        if reason is not None:
            result.skipped = reason
            print(f"{entry.name}: skipped ({reason})")
            continue
        config = base.replace(entry.overrides)
        minimal = entry.minimal
        if not args.no_warmup:
            warm_n = min(n_train, 16 * args.batch_size)
            warm = _subset(splits, warm_n, min(len(splits.val), 2 * args.batch_size))
            warm_config = config.replace({"train.epochs": 1})
            run_ours(warm_config, warm, device)
            if minimal:
                run_minimal(warm_config, warm.train.images, device)
        for repeat in range(args.repeats):
            # Alternate the order so slow drift of a busy machine hits both loops alike.
            order = ("ours", "minimal") if repeat % 2 == 0 else ("minimal", "ours")
            for which in order:
                if which == "ours":
                    result.ours.append(run_ours(config, splits, device))
                elif minimal:
                    result.minimal.append(run_minimal(config, splits.train.images, device))
        line = f"{entry.name}: {batches} batches/epoch"
        print(line + ", " + _row_text(result, args.epochs), flush=True)
        if args.profile:
            _profile(config.replace({"train.epochs": 1}), _subset(
                splits, min(n_train, 16 * args.batch_size), 2 * args.batch_size), device)

    print()
    print(_table(results, args.epochs))
    print()
    print(
        "ours = infovae_core.trainer.fit: 'fit' is its train_seconds (training epochs plus the "
        "per-epoch validation pass); 'train' excludes that validation pass (timed by wrapping "
        "trainer._mean_terms). Final evaluation is never counted. minimal = hand-written loop, "
        "same model, batch size and loss terms. Ratios are medians of per-repeat ratios."
    )
    verdicts = [r for r in results if r.minimal and r.ours]
    ok = all(_ratio(r, "train") >= TARGET_RATIO for r in verdicts)
    if verdicts:
        print(f"target ours(train) / minimal >= {TARGET_RATIO}: "
              + ("met" if ok else "NOT MET")
              + " (on a busy machine these figures are noise; rerun on a quiet one)")
    return 0 if ok else 1


def _rate(images: int, epochs: int, seconds: float) -> float:
    return images * epochs / seconds if seconds > 0 else math.nan


def _ratio(result: EntryResult, kind: str) -> float:
    pairs = []
    for ours, minimal in zip(result.ours, result.minimal, strict=False):
        seconds = ours.train_seconds if kind == "fit" else ours.training_only
        pairs.append(minimal / seconds)  # (images / ours) / (images / minimal)
    return _median(pairs)


def _row_text(result: EntryResult, epochs: int) -> str:
    fit_rate = _median([_rate(result.images_per_epoch, epochs, o.train_seconds)
                        for o in result.ours])
    train_rate = _median([_rate(result.images_per_epoch, epochs, o.training_only)
                          for o in result.ours])
    text = f"ours fit {fit_rate:,.0f} img/s, ours train {train_rate:,.0f} img/s"
    if result.minimal:
        rate = _median([_rate(result.images_per_epoch, epochs, s) for s in result.minimal])
        text += (f", minimal {rate:,.0f} img/s, ratio train {_ratio(result, 'train'):.3f}, "
                 f"fit {_ratio(result, 'fit'):.3f}")
    return text


def _table(results: list[EntryResult], epochs: int) -> str:
    header = (f"{'config':<16} {'ours fit img/s':>15} {'ours train img/s':>17} "
              f"{'minimal img/s':>14} {'train/min':>10} {'fit/min':>8} {'val share':>10}")
    lines = [header, "-" * len(header)]
    for r in results:
        if r.skipped is not None:
            lines.append(f"{r.name:<16} skipped: {r.skipped}")
            continue
        fit_rate = _median([_rate(r.images_per_epoch, epochs, o.train_seconds) for o in r.ours])
        train_rate = _median([_rate(r.images_per_epoch, epochs, o.training_only) for o in r.ours])
        shares = [o.validation_seconds / o.train_seconds for o in r.ours
                  if o.validation_seconds is not None and o.train_seconds > 0]
        share = f"{_median(shares):.1%}" if shares else "n/a"
        if r.minimal:
            rate = _median([_rate(r.images_per_epoch, epochs, s) for s in r.minimal])
            tail = (f"{rate:>14,.0f} {_ratio(r, 'train'):>10.3f} {_ratio(r, 'fit'):>8.3f}")
        else:
            tail = f"{'(ours only)':>14} {'':>10} {'':>8}"
        lines.append(f"{r.name:<16} {fit_rate:>15,.0f} {train_rate:>17,.0f} {tail} {share:>10}")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
