"""A study on the user's own image file: the template, `validate`'s checks of the file, the
seeded split shared by arms and seeds, `train --dataset array`, and (slow) a run and report."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from infovae_core.data import load_dataset
from sweep.cli import app
from sweep.spec import load_study
from sweep.spec.data_file import data_file_issues

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "studies" / "your_data.yaml"
runner = CliRunner()


def write_images(path: Path, n: int = 60, labels: bool = True) -> Path:
    rng = np.random.default_rng(0)
    arrays = {"images": rng.integers(0, 256, size=(n, 6, 6), dtype=np.uint8)}
    if labels:
        arrays["labels"] = np.arange(n) % 3
    np.savez(path, **arrays)
    return path


def study_from_template(tmp_path: Path, data_path: Path, **changes) -> Path:
    """The template with its file, a tiny budget and ``changes`` (dotted keys) applied."""
    study = yaml.safe_load(TEMPLATE.read_text())
    study["data"]["path"] = str(data_path)
    study["defaults"]["model"] = {
        "latent_dim": 2,
        "encoder": {"kind": "conv", "width": 8, "depth": 2},
        "decoder": {"kind": "conv", "width": 8, "depth": 2, "likelihood": "gaussian"},
    }
    study["defaults"]["train"].update(epochs=2, batch_size=16, device="cpu")
    study["defaults"]["eval"].update(iwae_samples=2, iwae_points=4, probe_labels=[10])
    study["search"]["trials_per_arm"] = 2
    study["confirm"] = {"top_k": 1, "seeds": 1, "seed_start": 1000}
    for dotted, value in changes.items():
        node = study
        *parents, last = dotted.split(".")
        for key in parents:
            node = node[key]
        node[last] = value
    path = tmp_path / "your_data.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


def test_the_template_validates_once_its_file_exists(tmp_path: Path) -> None:
    study = study_from_template(tmp_path, write_images(tmp_path / "my_images.npz"))
    result = runner.invoke(app, ["validate", str(study)])
    assert result.exit_code == 0, result.output
    assert "dataset array" in result.stdout


def test_the_shipped_template_names_a_file_validate_says_is_missing(tmp_path: Path) -> None:
    spec = load_study(TEMPLATE)  # loading never reads the data file
    assert spec.data.dataset == "array"
    assert data_file_issues(spec) == [
        f"{spec.data.path}: file not found (data.path names a .npz or .npy file of images)"
    ]


@pytest.mark.parametrize(
    ("arrays", "expected"),
    [
        ({"images": np.zeros((60, 6, 6), np.int64)}, "images: dtype int64"),
        ({"images": np.full((60, 6, 6), np.nan)}, "images: contains NaN"),
        ({"images": np.full((60, 6, 6), 2.0)}, "outside [0, 1]"),
        (
            {"images": np.zeros((60, 6, 6), np.uint8), "labels": np.zeros(59, int)},
            "labels: 59 labels for the 60 images",
        ),
    ],
    ids=["dtype", "nan", "range", "labels"],
)
def test_validate_refuses_a_bad_file_in_one_line_exit_2(tmp_path: Path, arrays, expected) -> None:
    data = tmp_path / "bad.npz"
    np.savez(data, **arrays)
    result = runner.invoke(app, ["validate", str(study_from_template(tmp_path, data))])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and str(data) in lines[0] and expected in lines[0], result.output


def test_validate_refuses_a_missing_file(tmp_path: Path) -> None:
    study = study_from_template(tmp_path, tmp_path / "nowhere.npz")
    result = runner.invoke(app, ["validate", str(study)])
    assert result.exit_code == 2
    assert f"{tmp_path / 'nowhere.npz'}: file not found" in result.output


def test_validate_refuses_a_train_size_beyond_the_file(tmp_path: Path) -> None:
    data = write_images(tmp_path / "x.npz")  # 60 images: 42 train, 6 val, 12 test
    study = study_from_template(
        tmp_path, data, **{"arms.elbo.search": {"data.train_size": {"choice": [10, 43]}}}
    )
    result = runner.invoke(app, ["validate", str(study)])
    assert result.exit_code == 2
    assert "data.train_size 43 (arm elbo) is more than the 42 images" in result.output


def test_validate_refuses_a_probe_objective_on_a_file_without_labels(tmp_path: Path) -> None:
    data = write_images(tmp_path / "x.npz", labels=False)
    study = study_from_template(
        tmp_path,
        data,
        **{"search.objectives": [{"metric": "metric.probe_acc_10", "direction": "maximize"}]},
    )
    result = runner.invoke(app, ["validate", str(study)])
    assert result.exit_code == 2
    assert "has no labels, so metric.probe_acc_10 (search.objectives.0)" in result.output


def test_every_arm_and_seed_trains_on_the_same_split(tmp_path: Path) -> None:
    spec = load_study(study_from_template(tmp_path, write_images(tmp_path / "x.npz")))
    configs = [spec.arm_config(arm, seed=seed) for arm in spec.arm_names for seed in (0, 1000)]
    first = load_dataset(configs[0].data)
    for config in configs[1:]:
        splits = load_dataset(config.data)
        for name in ("train", "val", "test"):
            assert np.array_equal(getattr(splits, name).images, getattr(first, name).images)


def test_train_runs_on_an_array_file(tmp_path: Path) -> None:
    data = write_images(tmp_path / "x.npz")
    result = runner.invoke(
        app,
        [
            "train",
            "--dataset",
            "array",
            "--data-path",
            str(data),
            "--epochs",
            "1",
            "--width",
            "8",
            "--iwae-samples",
            "2",
            "--binarize",
            "none",
            "--likelihood",
            "gaussian",
            "--device",
            "cpu",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["config"]["data.path"] == str(data)
    assert "metric.elbo" in payload["metrics"]


def test_train_refuses_a_bad_array_file_with_exit_2(tmp_path: Path) -> None:
    data = tmp_path / "x.npz"
    np.savez(data, images=np.zeros((20, 6, 6), np.uint8), labels=np.zeros(3, int))
    result = runner.invoke(
        app, ["train", "--dataset", "array", "--data-path", str(data), "--epochs", "1"]
    )
    assert result.exit_code == 2
    assert f"{data}: labels: 3 labels for the 20 images" in result.output


def test_train_needs_a_data_path_for_array() -> None:
    result = runner.invoke(app, ["train", "--dataset", "array", "--epochs", "1"])
    assert result.exit_code == 2
    assert "data.path: required for data.dataset array" in result.output


@pytest.mark.slow
def test_run_refuses_a_bad_file_with_exit_2_and_writes_no_study(tmp_path: Path) -> None:
    data = tmp_path / "bad.npz"
    np.savez(data, images=np.full((60, 6, 6), 3.0))
    study = study_from_template(tmp_path, data)
    results = tmp_path / "results"
    result = runner.invoke(app, ["run", str(study), "--results", str(results)])
    assert result.exit_code == 2, result.output
    assert f"{data}: images: float values from 3 to 3, outside [0, 1]" in result.output
    assert not (results / "your_data").exists()


@pytest.mark.slow
def test_a_study_copied_from_the_template_runs_and_reports(tmp_path: Path) -> None:
    data = write_images(tmp_path / "my_images.npz")
    study = study_from_template(tmp_path, data, **{"search.max_concurrent": 2})
    results = tmp_path / "results"
    result = runner.invoke(app, ["run", str(study), "--results", str(results)])
    assert result.exit_code == 0, result.output
    folder = results / "your_data"
    trials = __import__("pandas").read_parquet(folder / "trials.parquet")
    assert len(trials) == 2 * 2 + 2 * 1 and set(trials["status"]) == {"completed"}
    assert trials["metric.probe_acc_10"].notna().all()
    shutil.rmtree(folder / "report.html", ignore_errors=True)
    report = runner.invoke(app, ["report", str(folder), "--out", str(tmp_path / "r.html")])
    assert report.exit_code == 0, report.output
    assert "your_data" in (tmp_path / "r.html").read_text()
