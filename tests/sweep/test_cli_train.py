"""`infovae-sweep train`: one configuration from flags."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from sweep.cli import app

runner = CliRunner()


def test_train_prints_every_design_metric_as_json():
    result = runner.invoke(
        app,
        [
            "train",
            "--dataset",
            "digits",
            "--objective",
            "infovae",
            "--epochs",
            "2",
            "--width",
            "32",
            "--iwae-samples",
            "3",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    for name in [
        "mmd",
        "log_det_cov",
        "mutual_info",
        "nll_iwae",
        "elbo",
        "recon",
        "kl",
        "active_units",
        "probe_acc_100",
        "probe_acc_1000",
    ]:
        assert f"metric.{name}" in payload["metrics"]
    assert payload["config"]["objective.alpha"] == 0.0  # the preset: mnist_cpu's best InfoVAE
    assert payload["config"]["objective.lambda"] == 10.0


def test_train_refuses_a_negative_divergence_weight_naming_it():
    result = runner.invoke(
        app, ["train", "--objective", "elbo", "--lambda", "0.5", "--epochs", "1"]
    )
    assert result.exit_code == 2
    assert "alpha + lambda - 1" in result.output


@pytest.mark.parametrize(
    ("option", "choices"),
    [
        ("--dataset", ("digits", "mnist")),
        ("--encoder", ("mlp", "conv")),
        ("--decoder", ("mlp", "conv", "pixelcnn")),
        ("--objective", ("elbo", "infovae")),
        ("--divergence", ("mmd", "adversarial", "stein")),
        ("--kernel", ("rbf", "imq")),
        ("--binarize", ("dynamic", "static", "none")),
        ("--likelihood", ("bernoulli", "gaussian")),
    ],
)
def test_train_refuses_an_unknown_choice_listing_the_choices(option, choices):
    result = runner.invoke(app, ["train", option, "laplace", "--epochs", "1"])
    assert result.exit_code == 2
    message = " ".join(re.sub("[\u2500-\u257f]", " ", result.output).split())  # no box lines
    assert f"'laplace' is not one of {', '.join(repr(c) for c in choices)}" in message, message


def test_train_choices_are_the_cores_literals():
    from typing import get_args

    from infovae_core import config
    from sweep import cli

    pairs = [
        (cli.DatasetChoice, config.DatasetName),
        (cli.EncoderChoice, config.EncoderKind),
        (cli.DecoderChoice, config.DecoderKind),
        (cli.DivergenceChoice, config.DivergenceKind),
        (cli.KernelChoice, config.KernelKind),
        (cli.BinarizeChoice, config.Binarization),
        (cli.LikelihoodChoice, config.LikelihoodKind),
    ]
    for choice, literal in pairs:
        assert tuple(member.value for member in choice) == get_args(literal)


def test_train_passes_the_divergence_choice_to_the_config():
    result = runner.invoke(
        app,
        [
            "train",
            "--divergence",
            "stein",
            "--epochs",
            "1",
            "--width",
            "16",
            "--latent-dim",
            "2",
            "--iwae-samples",
            "2",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["config"]["objective.divergence"] == "stein"


def test_train_on_missing_mnist_says_where_to_put_files(tmp_path):
    result = runner.invoke(
        app,
        [
            "train",
            "--dataset",
            "mnist",
            "--data-dir",
            str(tmp_path),
            "--no-download",
            "--epochs",
            "1",
        ],
    )
    assert result.exit_code == 1
    assert "mnist" in result.output.lower()


def test_train_size_reaches_the_trained_configuration(monkeypatch):
    import infovae_core.trainer as trainer

    seen = {}
    real_load = trainer.load_dataset

    def load(config):
        splits = real_load(config)
        seen["train"] = len(splits.train)
        return splits

    monkeypatch.setattr(trainer, "load_dataset", load)
    result = runner.invoke(
        app,
        [
            "train",
            "--train-size",
            "64",
            "--epochs",
            "1",
            "--width",
            "32",
            "--iwae-samples",
            "2",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["config"]["data.train_size"] == 64
    assert seen["train"] == 64


def test_train_refuses_a_train_size_above_the_split_naming_it_and_the_size():
    result = runner.invoke(app, ["train", "--train-size", "5000", "--epochs", "1"])
    assert result.exit_code == 2
    assert "data.train_size" in result.output and "1258" in result.output


def _config_of(args: list[str]) -> dict:
    """The flat TrialConfig ``train`` builds from ``args`` (training itself is not run)."""
    import sweep.cli as cli

    captured = {}

    def stop(config, quiet):
        captured.update(config.to_flat_dict())
        raise SystemExit(0)

    original = cli._train_or_fail
    cli._train_or_fail = stop
    try:
        result = runner.invoke(app, ["train", *args])
    finally:
        cli._train_or_fail = original
    assert result.exit_code == 0, result.output
    return captured


@pytest.mark.parametrize(("dataset", "epochs"), [("digits", 300), ("mnist", 30)])
def test_train_defaults_to_the_epochs_and_schedule_of_the_datasets_study(dataset, epochs):
    config = _config_of(["--dataset", dataset])
    assert config["train.epochs"] == epochs
    assert config["train.lr_schedule"] == "cosine"
    assert config["train.batch_size"] == 128


def test_train_default_epochs_cover_every_dataset():
    from typing import get_args

    from infovae_core.config import DatasetName
    from sweep.cli import DEFAULT_EPOCHS

    assert set(DEFAULT_EPOCHS) == set(get_args(DatasetName))


def test_every_device_train_help_names_is_accepted():
    from sweep.cli import DEVICE_HELP

    for device in ("auto", "cpu", "cuda", "cuda:1", "mps"):
        assert device.replace(":1", ":N") in DEVICE_HELP
        assert _config_of(["--device", device])["train.device"] == device


def test_train_refuses_a_device_the_help_does_not_name():
    result = runner.invoke(app, ["train", "--device", "gpu", "--epochs", "1"])
    assert result.exit_code == 2
    assert "train.device" in result.output


def test_compile_has_a_negation_like_amp():
    assert _config_of(["--compile", "--no-compile"])["train.compile"] is False
    assert _config_of(["--amp", "--no-amp"])["train.amp"] is False
