"""Our VAE against a reference implementation (pythae 0.1.2) on identical settings.

Both sides train the same networks from the same initial weights (the reference's encoder and
decoder wrap the very modules our ``build_model`` made for the seed), on the same images in the
same order with the same dynamic binarisation, with Adam at the same learning rate. They differ
only in what each library contributes: the model's forward pass and loss (pythae's ``VAE`` /
``INFOVAE_MMD``, a sigmoid decoder with a clamped BCE) against ours (``fit``: logits, our
objective and trainer). Afterwards one shared evaluation (``infovae_core.evaluation.evaluate``,
the same code and seed for both) measures IWAE NLL, mutual information, MMD and KL on the test
split.

pythae is not a dependency of the package: it is installed on demand (``pip install --no-deps
pythae==0.1.2`` plus the three small packages it imports that we do not use). Needs real MNIST
(``INFOVAE_DATA_DIR``).

    INFOVAE_DATA_DIR=/path/to/data python bench/reference.py                # defaults below
    INFOVAE_DATA_DIR=/path/to/data python bench/reference.py --seeds 0,1,2 --epochs 10

Defaults are the settings of the comparison that first showed a gap (docs/reference.md):
binarised MNIST, MLP 784-512-512-2x16 / 16-512-512-784, Bernoulli likelihood summed over
pixels, Adam 1e-3, batch 128, 10 epochs, 50,000 training images; InfoVAE alpha 0, lambda
1000, RBF kernel s = 1, unbiased MMD; IWAE with k = 100 on the first 1,000 test images.

Target: on every objective, our mean IWAE NLL no worse than the reference's beyond the seed
spread, at no less than its training speed. Training speed counts the optimisation loop: our
per-epoch validation pass, which the reference loop does not have, is cut to
``--val-points`` images (default 2) so that it costs nothing measurable.
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from infovae_core.config import TrialConfig  # noqa: E402
from infovae_core.data import binarize, load_dataset  # noqa: E402
from infovae_core.evaluation import evaluate  # noqa: E402
from infovae_core.models import VAE, build_model  # noqa: E402
from infovae_core.trainer import _prepare, fit  # noqa: E402

REFERENCE = "pythae==0.1.2"
METRICS = ("nll_iwae", "mutual_info", "mmd", "kl", "elbo")


def ensure_reference() -> None:
    """Import pythae, installing it (without its pinned dependencies) when missing."""
    try:
        importlib.import_module("pythae")
        return
    except ImportError:
        pass
    print(f"installing {REFERENCE} for this benchmark ...", flush=True)
    commands = (
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", REFERENCE],
        [sys.executable, "-m", "pip", "install", "-q", "cloudpickle", "imageio", "tqdm"],
    )
    for command in commands:
        if subprocess.run(command).returncode != 0:
            sys.exit(f"could not install the reference ({' '.join(command[3:])}): see pip's error")
    importlib.invalidate_caches()
    importlib.import_module("pythae")


def trial_config(args: argparse.Namespace, objective: str, seed: int) -> TrialConfig:
    alpha, lam = (0.0, 1.0) if objective == "elbo" else (args.alpha, args.lam)
    return TrialConfig.from_dict(
        {
            "data.dataset": "mnist",
            "data.binarize": "dynamic",
            "data.download": False,
            "data.train_size": args.train_images,
            "model.latent_dim": 16,
            "model.encoder": {"kind": "mlp", "width": 512, "depth": 2},
            "model.decoder": {"kind": "mlp", "width": 512, "depth": 2, "likelihood": "bernoulli"},
            "objective.alpha": alpha,
            "objective.lambda": lam,
            "objective.divergence": "mmd",
            "objective.kernel": "rbf",
            "objective.scales": [1.0],
            "objective.mmd_unbiased": True,
            "train.epochs": args.epochs,
            "train.batch_size": 128,
            "train.lr": 1e-3,
            "train.seed": seed,
            "train.device": "cpu",
            "train.val_points": args.val_points,
            "eval.iwae_samples": args.iwae_samples,
            "eval.iwae_points": args.iwae_points,
            "eval.probe_labels": [],
            "eval.seed": 0,
        }
    )


@dataclass(frozen=True)
class Run:
    side: str
    objective: str
    seed: int
    metrics: dict[str, float]
    train_seconds: float
    images: int

    @property
    def images_per_second(self) -> float:
        return self.images / self.train_seconds


def run_ours(config: TrialConfig, splits) -> Run:
    result = fit(config, data=splits)
    images = config.train_images() * config.planned_epochs()
    return Run(
        "ours", _objective(config), config.train.seed, result.metrics, result.train_seconds, images
    )


def _objective(config: TrialConfig) -> str:
    return "elbo" if config.objective.divergence_weight == 0 else "infovae"


def run_reference(config: TrialConfig, splits) -> Run:
    """pythae's model and loss on our initial networks, data order and binarisation."""
    from pythae.models import INFOVAE_MMD, INFOVAE_MMD_Config, VAEConfig
    from pythae.models import VAE as PythaeVAE
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder

    class Encoder(BaseEncoder):
        def __init__(self, net: nn.Module):
            super().__init__()
            self.net = net

        def forward(self, x):
            mu, logvar = self.net(x.flatten(1)).chunk(2, dim=1)
            return ModelOutput(embedding=mu, log_covariance=logvar)

    class Decoder(BaseDecoder):
        def __init__(self, net: nn.Module, shape):
            super().__init__()
            self.net, self.shape = net, shape

        def forward(self, z):
            return ModelOutput(reconstruction=torch.sigmoid(self.net(z)).view(-1, *self.shape))

    torch.manual_seed(config.train.seed)
    ours = build_model(config.model, splits.image_shape)  # the same initial weights as fit's
    shape = splits.image_shape
    encoder = Encoder(ours.encoder.net)
    decoder = Decoder(ours.decoder.net.net, shape)
    common = {"input_dim": shape, "latent_dim": config.model.latent_dim}
    if _objective(config) == "elbo":
        model = PythaeVAE(
            VAEConfig(**common, reconstruction_loss="bce"), encoder=encoder, decoder=decoder
        )
    else:
        model = INFOVAE_MMD(
            INFOVAE_MMD_Config(
                **common,
                reconstruction_loss="bce",
                kernel_choice=config.objective.kernel,
                alpha=config.objective.alpha,
                lbd=config.objective.lambda_,
                kernel_bandwidth=config.objective.scales[0],
            ),
            encoder=encoder,
            decoder=decoder,
        )
    optimizer = torch.optim.Adam(model.parameters(), lr=config.train.lr)
    generator = torch.Generator().manual_seed(config.train.seed)
    train = splits.train.images
    n, batch = train.shape[0], config.train.batch_size
    started = time.perf_counter()
    model.train()
    for _ in range(config.planned_epochs()):
        epoch_images = binarize(train, generator)
        order = torch.randperm(n, generator=generator)
        for start in range(0, n, batch):
            index = order[start : start + batch]
            if index.shape[0] < 2:
                continue
            loss = model({"data": epoch_images[index]}).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    seconds = time.perf_counter() - started
    images = n * config.planned_epochs()
    metrics = _evaluate(ours, config, splits)
    return Run("reference", _objective(config), config.train.seed, metrics, seconds, images)


def _evaluate(model: VAE, config: TrialConfig, splits) -> dict[str, float]:
    """The shared evaluation, exactly as fit runs it."""
    model.eval()
    eval_generator = torch.Generator().manual_seed(config.eval.seed)
    _prepare(splits.val, "dynamic", eval_generator)  # fit binarises validation first
    test = _prepare(splits.test, "dynamic", eval_generator)
    train = _prepare(splits.train, "dynamic", eval_generator)
    return dict(evaluate(model, train, test, config.eval, "cpu").metrics)


def summarise(runs: list[Run]) -> None:
    def spread(values: list[float]) -> str:
        mean = statistics.fmean(values)
        if len(values) == 1:
            return f"{mean:9.3f}"
        return f"{mean:9.3f} [{min(values):.3f}, {max(values):.3f}]"

    header = f"{'objective':9} {'side':9} {'seeds':>5}  " + "  ".join(f"{m:>26}" for m in METRICS)
    print("\n" + header + f"  {'train img/s':>11}")
    groups: dict[tuple[str, str], list[Run]] = {}
    for run in runs:
        groups.setdefault((run.objective, run.side), []).append(run)
    for (objective, side), group in sorted(groups.items()):
        cells = "  ".join(f"{spread([r.metrics[m] for r in group]):>26}" for m in METRICS)
        speed = statistics.fmean(r.images_per_second for r in group)
        print(f"{objective:9} {side:9} {len(group):>5}  {cells}  {speed:>11,.0f}")
    print("\nmean [min, max] over seeds; NLL, MI, KL, ELBO in nats per image (test split)")
    for objective in sorted({r.objective for r in runs}):
        ours = [r.metrics["nll_iwae"] for r in groups.get((objective, "ours"), [])]
        ref = [r.metrics["nll_iwae"] for r in groups.get((objective, "reference"), [])]
        if not ours or not ref:
            continue
        gap = statistics.fmean(ours) - statistics.fmean(ref)
        widths = [max(v) - min(v) for v in (ours, ref) if len(v) > 1]
        seed_spread = max(widths) if widths else float("nan")
        speed = statistics.fmean(r.images_per_second for r in groups[(objective, "ours")]) / (
            statistics.fmean(r.images_per_second for r in groups[(objective, "reference")])
        )
        if widths:
            verdict = "within" if gap <= seed_spread else "BEYOND"
            judged = f"(seed spread {seed_spread:.3f}): {verdict} the spread"
        else:
            judged = "(one seed: no spread to judge against)"
        print(
            f"{objective}: NLL ours - reference = {gap:+.3f} nats {judged}; "
            f"speed ours / reference = {speed:.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objectives", default="elbo,infovae")
    parser.add_argument("--sides", default="ours,reference")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--train-images", type=int, default=50_000)
    parser.add_argument("--alpha", type=float, default=0.0)
    parser.add_argument("--lambda", dest="lam", type=float, default=1000.0)
    parser.add_argument("--iwae-samples", type=int, default=100)
    parser.add_argument("--iwae-points", type=int, default=1000)
    parser.add_argument("--val-points", type=int, default=2)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sides = args.sides.split(",")
    if "reference" in sides:
        ensure_reference()
    splits = load_dataset(trial_config(args, "elbo", 0).data)
    runs = []
    for objective in args.objectives.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            config = trial_config(args, objective, seed)
            for side in sides:
                run = (run_ours if side == "ours" else run_reference)(config, splits)
                runs.append(run)
                print(
                    f"{objective} {side} seed {seed}: NLL {run.metrics['nll_iwae']:.3f}, "
                    f"MI {run.metrics['mutual_info']:.3f}, {run.images_per_second:,.0f} img/s",
                    flush=True,
                )
    summarise(runs)


if __name__ == "__main__":
    main()
