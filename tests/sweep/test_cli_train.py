"""`infovae-sweep train`: one configuration from flags."""

from __future__ import annotations

import json

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
    assert payload["config"]["objective.alpha"] == 1.0
    assert payload["config"]["objective.lambda"] == 10.0


def test_train_refuses_a_negative_divergence_weight_naming_it():
    result = runner.invoke(
        app, ["train", "--objective", "elbo", "--lambda", "0.5", "--epochs", "1"]
    )
    assert result.exit_code == 2
    assert "alpha + lambda - 1" in result.output


def test_train_refuses_an_unknown_kernel():
    result = runner.invoke(app, ["train", "--kernel", "laplace", "--epochs", "1"])
    assert result.exit_code == 2
    assert "objective.kernel" in result.output


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
