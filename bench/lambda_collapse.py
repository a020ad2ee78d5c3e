"""Why a large lambda collapses q(z|x) onto the prior: the runs behind docs/objective.md.

Two parts, on the 8x8 digits (d = 8, MLP 256 x 2, Bernoulli, alpha = 0, RBF s = 1, unbiased
MMD, batch 128, Adam 1e-3, 300 epochs, seed 0 unless a variant says otherwise):

- ``runs``: one fit per variant (lambda 1 .. 3000; at lambda 1000: batch 512, 8 x more prior
  draws, the biased estimator, lr 1e-4, a linear lambda warm-up, kernel scales 0.25 and 4),
  printing KL, mutual information, active units and IWAE NLL.
- ``gradients``: trains the ELBO, then over many minibatches of its training codes measures the
  expected minibatch MMD^2 and the norms (expected and batch-to-batch RMS) of the encoder
  gradients of D and of the rest of the objective (reconstruction and KL).

    python bench/lambda_collapse.py runs [--only l1000,l10] [--epochs 300]
    python bench/lambda_collapse.py gradients

The prior-draw and warm-up variants replace, inside this script only, the MMD estimator's call
and the objective's weight; the library has neither setting.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import infovae_core.objective as objective_module  # noqa: E402
import infovae_core.trainer as trainer_module  # noqa: E402
from infovae_core.config import TrialConfig  # noqa: E402
from infovae_core.data import binarize, load_dataset  # noqa: E402
from infovae_core.divergences import gaussian_kl_to_standard_normal, mmd_squared  # noqa: E402
from infovae_core.trainer import fit  # noqa: E402

VARIANTS: dict[str, dict] = {
    "elbo": {"lam": 1.0},
    "l10": {"lam": 10.0},
    "l100": {"lam": 100.0},
    "l300": {"lam": 300.0},
    "l1000": {"lam": 1000.0},
    "l3000": {"lam": 3000.0},
    "l1000_batch512": {"lam": 1000.0, "batch": 512},
    "l1000_prior8x": {"lam": 1000.0, "prior_multiple": 8},
    "l1000_biased": {"lam": 1000.0, "biased": True},
    "l1000_lr1e-4": {"lam": 1000.0, "lr": 1e-4},
    "l1000_warmup100": {"lam": 1000.0, "warmup": 100},
    "l1000_s0.25": {"lam": 1000.0, "scale": 0.25},
    "l1000_s4": {"lam": 1000.0, "scale": 4.0},
}


def config(
    epochs: int,
    lam: float = 1.0,
    batch: int = 128,
    lr: float = 1e-3,
    scale: float = 1.0,
    biased: bool = False,
    **_: object,
) -> TrialConfig:
    return TrialConfig.from_dict(
        {
            "model.latent_dim": 8,
            "model.encoder": {"kind": "mlp", "width": 256, "depth": 2},
            "model.decoder": {"kind": "mlp", "width": 256, "depth": 2},
            "objective.alpha": 0.0,
            "objective.lambda": lam,
            "objective.scales": [scale],
            "objective.mmd_unbiased": not biased,
            "train.epochs": epochs,
            "train.batch_size": batch,
            "train.lr": lr,
            "train.seed": 0,
            "train.device": "cpu",
            "eval.probe_labels": [],
        }
    )


def run_variant(name: str, epochs: int) -> dict:
    settings = VARIANTS[name]
    cfg = config(epochs, **settings)
    original_call = objective_module.MMDDivergence.__call__
    original_loss = trainer_module.infovae_loss
    epoch = {"done": 0}
    callback = None
    try:
        if settings.get("prior_multiple"):
            multiple = int(settings["prior_multiple"])

            def call(self, z):
                prior = torch.randn(z.shape[0] * multiple, z.shape[1], device=z.device)
                return mmd_squared(z, prior, self.kernel, self.scales, self.unbiased)

            objective_module.MMDDivergence.__call__ = call
        if settings.get("warmup"):
            warmup = int(settings["warmup"])

            def loss(output, divergence, objective):
                # D weight ramps linearly from 0 (lambda = 1 - alpha) to its full value.
                ramp = min(1.0, (epoch["done"] + 1) / warmup)
                weight = ramp * (objective.alpha + objective.lambda_ - 1)
                ramped = replace(objective, lambda_=1 - objective.alpha + weight)
                return original_loss(output, divergence, ramped)

            trainer_module.infovae_loss = loss

            def callback(record):
                epoch["done"] = record.epoch

        started = time.perf_counter()
        result = fit(cfg, callback=callback)
    finally:
        objective_module.MMDDivergence.__call__ = original_call
        trainer_module.infovae_loss = original_loss
    m = result.metrics
    curve = [round(r.val["kl"], 2) for r in result.history[:: max(1, len(result.history) // 10)]]
    return {
        "variant": name,
        "kl": round(m["kl"], 3),
        "mutual_info": round(m["mutual_info"], 3),
        "active_units": m["active_units"],
        "nll_iwae": round(m["nll_iwae"], 2),
        "elbo": round(m["elbo"], 2),
        "val_kl_every_tenth": curve,
        "seconds": round(time.perf_counter() - started, 1),
    }


def gradients(epochs: int, batches: int) -> dict:
    result = fit(config(epochs))
    model = result.model
    splits = load_dataset(config(epochs).data)
    generator = torch.Generator().manual_seed(5)
    images = binarize(splits.train.images, generator)
    params = list(model.encoder.parameters())

    def flat(loss):
        grads = torch.autograd.grad(loss, params, retain_graph=True)
        return torch.cat([g.flatten() for g in grads])

    out: dict = {"elbo": result.metrics["elbo"]}
    for batch in (128, 512):
        rest, div, values = [], [], []
        for _ in range(batches):
            index = torch.randperm(len(images), generator=generator)[:batch]
            o = model(images[index])
            kl = gaussian_kl_to_standard_normal(o.posterior.mu, o.posterior.logvar).mean()
            rest.append(flat(-(o.log_px_z.mean() - kl)))
            d = mmd_squared(o.z, torch.randn_like(o.z), unbiased=True)
            values.append(d.item())
            div.append(flat(d))
        r, d = torch.stack(rest), torch.stack(div)
        v = torch.tensor(values)
        out[f"batch {batch}"] = {
            "E[D]": v.mean().item(),
            "standard error of E[D]": (v.std() / len(v) ** 0.5).item(),
            "|E grad rest|": r.mean(0).norm().item(),
            "RMS noise of grad rest": (r - r.mean(0)).pow(2).sum(1).mean().sqrt().item(),
            "|E grad D|": d.mean(0).norm().item(),
            "RMS noise of grad D": (d - d.mean(0)).pow(2).sum(1).mean().sqrt().item(),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("part", choices=["runs", "gradients"])
    parser.add_argument("--only", default=",".join(VARIANTS))
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.part == "gradients":
        print(json.dumps(gradients(args.epochs, args.batches), indent=1))
        return
    for name in args.only.split(","):
        print(json.dumps(run_variant(name, args.epochs)), flush=True)


if __name__ == "__main__":
    main()
