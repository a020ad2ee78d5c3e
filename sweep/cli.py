"""The `infovae-sweep` command line: thin Typer commands over library functions.

Heavy imports (Ray, Optuna, Plotly) happen inside the commands that need them, so that
`infovae-sweep train` and `validate` start quickly.
"""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    name="infovae-sweep",
    help="Studies of InfoVAE against the ELBO: train, search, resume and report.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)
stdout = Console()

USAGE_ERROR = 2


class ObjectivePreset(str, Enum):
    elbo = "elbo"
    infovae = "infovae"


# infovae: the MMD-VAE point of the InfoVAE family (alpha = 1: no per-sample KL; D weighted by
# lambda). On the 8x8 digits, alpha = 0 with lambda >= 100 collapses q(z|x) onto the prior within
# 20 epochs, so the preset uses lambda = 10; studies search lambda and alpha properly.
PRESETS = {"elbo": (0.0, 1.0), "infovae": (1.0, 10.0)}


@app.callback()
def _root() -> None:
    """Studies of InfoVAE against the ELBO: train, search, resume and report."""


def _fail(message: str, code: int = USAGE_ERROR) -> None:
    console.print(f"[bold red]error:[/] {message}", highlight=False, markup=True)
    raise typer.Exit(code)


@app.command()
def train(
    dataset: Annotated[str, typer.Option(help="digits (bundled) or mnist.")] = "digits",
    objective: Annotated[
        ObjectivePreset, typer.Option(help="elbo (alpha=0, lambda=1) or infovae (MMD, alpha=1, lambda=10).")
    ] = ObjectivePreset.infovae,
    alpha: Annotated[Optional[float], typer.Option(help="Override alpha (KL weight is 1 - alpha).")] = None,
    lambda_: Annotated[
        Optional[float], typer.Option("--lambda", help="Override lambda (D weight is alpha + lambda - 1).")
    ] = None,
    kernel: Annotated[str, typer.Option(help="MMD kernel: rbf or imq.")] = "rbf",
    scales: Annotated[str, typer.Option(help="Comma-separated kernel scales, summed.")] = "1.0",
    encoder: Annotated[str, typer.Option(help="Encoder kind: mlp or conv.")] = "mlp",
    decoder: Annotated[str, typer.Option(help="Decoder kind: mlp or conv.")] = "mlp",
    width: Annotated[int, typer.Option(help="Encoder and decoder width.")] = 256,
    depth: Annotated[int, typer.Option(help="Encoder and decoder depth.")] = 2,
    likelihood: Annotated[str, typer.Option(help="bernoulli or gaussian.")] = "bernoulli",
    latent_dim: Annotated[int, typer.Option(help="Latent dimension d.")] = 8,
    epochs: Annotated[int, typer.Option(help="Training epochs.")] = 20,
    batch_size: Annotated[int, typer.Option(help="Batch size.")] = 64,
    lr: Annotated[float, typer.Option(help="Adam learning rate.")] = 1e-3,
    seed: Annotated[int, typer.Option(help="Training seed.")] = 0,
    binarize: Annotated[str, typer.Option(help="dynamic, static or none.")] = "dynamic",
    data_dir: Annotated[
        Optional[Path], typer.Option(help="Folder holding mnist/ (default $INFOVAE_DATA_DIR, else a per-user cache).")
    ] = None,
    download: Annotated[
        bool, typer.Option(help="Download missing MNIST files from the public mirrors.")
    ] = True,
    device: Annotated[str, typer.Option(help="auto (cuda when present), cpu or cuda.")] = "auto",
    iwae_samples: Annotated[int, typer.Option(help="Importance samples k for metric.nll_iwae.")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON on stdout.")] = False,
) -> None:
    """Train one configuration and print DESIGN.md's evaluation metrics."""
    from infovae_core.config import ConfigError, TrialConfig
    from infovae_core.data import DataError

    preset_alpha, preset_lambda = PRESETS[objective.value]
    try:
        config = TrialConfig.from_dict(
            {
                "data.dataset": dataset,
                "data.data_dir": str(data_dir) if data_dir is not None else None,
                "data.binarize": binarize,
                "data.download": download,
                "model.latent_dim": latent_dim,
                "model.encoder": {"kind": encoder, "width": width, "depth": depth},
                "model.decoder": {
                    "kind": decoder,
                    "width": width,
                    "depth": depth,
                    "likelihood": likelihood,
                },
                "objective.alpha": preset_alpha if alpha is None else alpha,
                "objective.lambda": preset_lambda if lambda_ is None else lambda_,
                "objective.kernel": kernel,
                "objective.scales": [float(s) for s in scales.split(",") if s.strip()],
                "train": {
                    "epochs": epochs,
                    "batch_size": batch_size,
                    "lr": lr,
                    "seed": seed,
                    "device": device,
                },
                "eval.iwae_samples": iwae_samples,
            }
        )
    except (ConfigError, ValueError) as error:
        _fail(str(error))

    from infovae_core.trainer import NonFiniteLossError, fit

    try:
        result = _fit_with_progress(fit, config, quiet=as_json)
    except DataError as error:
        _fail(str(error), code=1)
    except NonFiniteLossError as error:
        _fail(str(error), code=1)

    metrics = {f"metric.{name}": value for name, value in result.metrics.items()}
    if as_json:
        payload = {
            "config": config.to_flat_dict(),
            "metrics": metrics,
            "train_seconds": result.train_seconds,
            "eval_seconds": result.eval_seconds,
            "device": result.device,
        }
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
        return
    table = Table(title=f"{dataset}: {objective.value} (alpha={config.objective.alpha:g}, "
                  f"lambda={config.objective.lambda_:g})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in metrics.items():
        table.add_row(name, f"{value:.4f}")
    stdout.print(table)
    stdout.print(
        f"trained {result.train_seconds:.1f} s, evaluated {result.eval_seconds:.1f} s on {result.device}"
    )


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
        task = progress.add_task("train", total=config.train.epochs, terms="")

        def on_epoch(record) -> None:
            terms = (
                f"loss {record.train['loss']:.2f}  elbo {record.train['elbo']:.2f}  "
                f"val loss {record.val['loss']:.2f}"
            )
            progress.update(task, completed=record.epoch, terms=terms)

        result = fit(config, callback=on_epoch)
    console.print("evaluating...", style="dim")
    return result


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    app()
