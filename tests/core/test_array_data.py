"""data.dataset array (a user's .npz / .npy of images) and fashion_mnist, on generated files.

Nothing is downloaded: arrays are written with NumPy, IDX files by hand, and the Fashion-MNIST
checksum table is pointed at the generated files.
"""

from __future__ import annotations

import gzip
import hashlib
import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from infovae_core import data
from infovae_core.config import ConfigError, DataConfig, TrialConfig
from infovae_core.data import (
    FASHION_MNIST,
    MNIST_FILES,
    apply_train_size,
    ensure_idx_files,
    load_dataset,
    load_idx_dataset,
)
from infovae_core.datafiles import (
    ArrayFileError,
    ChecksumError,
    DataError,
    MissingDataError,
    read_image_arrays,
)
from infovae_core.trainer import fit
from tests.core.test_data import tiny_mnist_payloads

RNG = np.random.default_rng(0)


def grey_uint8(n: int, h: int = 6, w: int = 5) -> np.ndarray:
    return RNG.integers(0, 256, size=(n, h, w), dtype=np.uint8)


def tiny_config(path: Path, **data_settings) -> TrialConfig:
    """A few gradient steps of a small conv VAE with a Gaussian likelihood."""
    return TrialConfig.from_dict(
        {
            "data": {"dataset": "array", "path": str(path), "binarize": "none", **data_settings},
            "model": {
                "latent_dim": 2,
                "encoder": {"kind": "conv", "width": 8, "depth": 2},
                "decoder": {"kind": "conv", "width": 8, "depth": 2, "likelihood": "gaussian"},
            },
            "train": {"epochs": 1, "batch_size": 16, "device": "cpu", "checkpoint_every": 0},
            "eval": {"iwae_samples": 2, "iwae_points": 4, "probe_labels": [4], "max_points": 8},
        }
    )


# ---------------------------------------------------------------------------------------------
# Accepted layouts and dtypes


def _pool_uint8_labels(path: Path) -> None:
    np.savez(path, images=grey_uint8(40), labels=np.arange(40) % 3)


def _pool_float_channels(path: Path) -> None:
    np.savez_compressed(path, images=RNG.random((40, 3, 6, 5)).astype(np.float32))


def _own_splits_float64_labels(path: Path) -> None:
    arrays = {}
    for name, n in (("train", 30), ("val", 6), ("test", 8)):
        arrays[f"{name}_images"] = RNG.random((n, 2, 7, 7))
        arrays[f"{name}_labels"] = (np.arange(n) % 2).astype(np.int32)
    np.savez(path, **arrays)


def _npy_uint8_channels(path: Path) -> None:
    np.save(path, RNG.integers(0, 256, size=(40, 1, 4, 9), dtype=np.uint8))


LAYOUTS: dict[str, tuple[str, Callable[[Path], None], tuple[int, int, int], bool]] = {
    "npz images uint8 NxHxW with labels": ("a.npz", _pool_uint8_labels, (1, 6, 5), True),
    "npz images float32 NxCxHxW": ("b.npz", _pool_float_channels, (3, 6, 5), False),
    "npz own splits float64 with labels": ("c.npz", _own_splits_float64_labels, (2, 7, 7), True),
    "npy uint8 NxCxHxW": ("d.npy", _npy_uint8_channels, (1, 4, 9), False),
}


@pytest.mark.parametrize("layout", LAYOUTS, ids=list(LAYOUTS))
def test_each_accepted_layout_trains_and_evaluates(layout: str, tmp_path: Path) -> None:
    name, writer, shape, labelled = LAYOUTS[layout]
    path = tmp_path / name
    writer(path)
    config = tiny_config(path)
    splits = load_dataset(config.data)
    assert splits.image_shape == shape
    result = fit(config)
    assert np.isfinite(result.metrics["elbo"])
    assert result.samples.shape[1:] == shape
    # Without labels the probe metrics are absent, not zero.
    assert ("probe_acc_4" in result.metrics) is labelled


def test_uint8_images_are_grey_levels_over_255(tmp_path: Path) -> None:
    images = grey_uint8(20)
    np.savez(
        tmp_path / "x.npz",
        train_images=images[:10],
        val_images=images[10:14],
        test_images=images[14:],
    )
    splits = load_dataset(DataConfig(dataset="array", path=str(tmp_path / "x.npz")))
    expected = torch.from_numpy(images[:10].astype(np.float32) / 255).unsqueeze(1)
    assert torch.equal(splits.train.images, expected)
    assert splits.train.labels is None


def test_float_images_are_kept_as_they_are(tmp_path: Path) -> None:
    images = RNG.random((20, 1, 3, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", images)
    splits = load_dataset(DataConfig(dataset="array", path=str(tmp_path / "x.npy")))
    pooled = torch.cat([splits.train.images, splits.val.images, splits.test.images])
    assert sorted(pooled.flatten().tolist()) == sorted(images.flatten().tolist())


def test_a_binary_file_binarises_and_trains_with_a_bernoulli_likelihood(tmp_path: Path) -> None:
    np.savez(tmp_path / "x.npz", images=grey_uint8(40), labels=np.arange(40) % 2)
    config = tiny_config(tmp_path / "x.npz").replace(
        {"data.binarize": "static", "model.decoder.likelihood": "bernoulli"}
    )
    assert np.isfinite(fit(config).metrics["nll_iwae"])


# ---------------------------------------------------------------------------------------------
# The seeded split


def _pool(tmp_path: Path, n: int = 50) -> Path:
    images = grey_uint8(n)
    images[:, 0, 0] = np.arange(n)  # pixel [0, 0] names the image
    np.savez(tmp_path / "pool.npz", images=images, labels=np.arange(n) % 5)
    return tmp_path / "pool.npz"


def _ids(split) -> set[int]:
    return set(torch.round(split.images[:, 0, 0, 0] * 255).long().tolist())


def test_seeded_split_sizes_follow_the_fractions(tmp_path: Path) -> None:
    config = DataConfig(
        dataset="array", path=str(_pool(tmp_path)), val_fraction=0.2, test_fraction=0.3
    )
    splits = load_dataset(config)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (25, 10, 15)


def test_seeded_split_partitions_the_file(tmp_path: Path) -> None:
    splits = load_dataset(DataConfig(dataset="array", path=str(_pool(tmp_path))))
    parts = [_ids(splits.train), _ids(splits.val), _ids(splits.test)]
    assert set().union(*parts) == set(range(50))
    assert sum(len(p) for p in parts) == 50


def test_seeded_split_depends_only_on_the_data_seed(tmp_path: Path) -> None:
    path = str(_pool(tmp_path))
    a = load_dataset(DataConfig(dataset="array", path=path, seed=3))
    b = load_dataset(DataConfig(dataset="array", path=path, seed=3))
    c = load_dataset(DataConfig(dataset="array", path=path, seed=4))
    assert _ids(a.test) == _ids(b.test)
    assert _ids(a.test) != _ids(c.test)


def test_train_size_subsets_of_a_file_are_contained(tmp_path: Path) -> None:
    path = str(_pool(tmp_path))
    whole = load_dataset(DataConfig(dataset="array", path=path))
    small = _ids(
        apply_train_size(whole, DataConfig(dataset="array", path=path, train_size=5)).train
    )
    large = _ids(
        apply_train_size(whole, DataConfig(dataset="array", path=path, train_size=20)).train
    )
    assert len(small) == 5 and len(large) == 20
    assert small <= large <= _ids(whole.train)


def test_train_size_beyond_the_file_is_refused_naming_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="data.train_size: 36 is more than the 35"):
        load_dataset(DataConfig(dataset="array", path=str(_pool(tmp_path)), train_size=36))


# ---------------------------------------------------------------------------------------------
# Bad files: one line naming the file and what is wrong


def _text(path: Path) -> None:
    path.write_text("images,labels\n1,2\n")


def _pickled(path: Path) -> None:
    path.write_bytes(pickle.dumps({"images": [[1, 2], [3, 4]]}))


def _object_array(path: Path) -> None:
    np.savez(path, images=np.array([np.zeros((2, 2)), "x"], dtype=object))


BAD_FILES: dict[str, tuple[Callable[[Path], None] | None, str]] = {
    "missing": (None, "file not found"),
    "a folder": (lambda p: p.mkdir(), "is a folder"),
    "text": (_text, "not a NumPy .npz or .npy file"),
    "a pickle": (_pickled, "never unpickled"),
    "object array": (_object_array, "images: cannot be read"),
    "no arrays": (lambda p: np.savez(p), "holds no arrays"),
    "unknown key": (
        lambda p: np.savez(p, images=grey_uint8(10), label=np.zeros(10, int)),
        "unknown array(s) label",
    ),
    "a split missing": (
        lambda p: np.savez(p, train_images=grey_uint8(10), test_images=grey_uint8(4)),
        "missing array(s) val_images",
    ),
    "labels for some splits": (
        lambda p: np.savez(
            p,
            train_images=grey_uint8(10),
            val_images=grey_uint8(4),
            test_images=grey_uint8(4),
            train_labels=np.zeros(10, int),
        ),
        "label all splits or none",
    ),
    "wrong rank": (lambda p: np.save(p, np.zeros((10, 30), np.uint8)), "N x H x W or"),
    "wrong dtype": (lambda p: np.save(p, np.zeros((10, 4, 4), np.int64)), "dtype int64"),
    "channels last": (
        lambda p: np.save(p, np.zeros((10, 8, 8, 3), np.uint8)),
        "looks channels-last",
    ),
    "images too small": (lambda p: np.save(p, np.zeros((10, 1, 8), np.uint8)), "at least 2 x 2"),
    "NaN": (lambda p: np.save(p, np.full((10, 3, 3), np.nan, np.float32)), "contains NaN"),
    "infinite": (lambda p: np.save(p, np.full((10, 3, 3), np.inf)), "infinite"),
    "out of range": (
        lambda p: np.save(p, np.full((10, 3, 3), 1.5, np.float32)),
        "outside [0, 1]",
    ),
    "labels length": (
        lambda p: np.savez(p, images=grey_uint8(10), labels=np.zeros(9, int)),
        "labels: 9 labels for the 10 images",
    ),
    "float labels": (
        lambda p: np.savez(p, images=grey_uint8(10), labels=np.zeros(10)),
        "labels: dtype float64",
    ),
    "2-D labels": (
        lambda p: np.savez(p, images=grey_uint8(10), labels=np.zeros((10, 1), int)),
        "one integer per image",
    ),
    "splits of two image shapes": (
        lambda p: np.savez(
            p,
            train_images=grey_uint8(10),
            val_images=grey_uint8(4, 6, 6),
            test_images=grey_uint8(4),
        ),
        "every split needs one image shape",
    ),
    "a split of one image": (
        lambda p: np.savez(
            p, train_images=grey_uint8(10), val_images=grey_uint8(1), test_images=grey_uint8(4)
        ),
        "val_images: 1 image(s)",
    ),
}


@pytest.mark.parametrize("case", BAD_FILES, ids=list(BAD_FILES))
def test_each_bad_file_gets_one_line_naming_it_and_the_problem(case: str, tmp_path: Path) -> None:
    writer, expected = BAD_FILES[case]
    # np.save adds .npy to a name without it
    npy = case in (
        "wrong rank",
        "wrong dtype",
        "channels last",
        "images too small",
        "NaN",
        "infinite",
        "out of range",
    )
    path = tmp_path / ("data.npy" if npy else "data.npz")
    if writer is not None:
        writer(path)
    with pytest.raises(ArrayFileError) as caught:
        read_image_arrays(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert expected in message
    assert "\n" not in message


def test_a_bad_file_fails_load_dataset_as_a_data_error(tmp_path: Path) -> None:
    np.savez(tmp_path / "x.npz", images=grey_uint8(10), labels=np.zeros(9, int))
    with pytest.raises(DataError, match="9 labels for the 10 images"):
        load_dataset(DataConfig(dataset="array", path=str(tmp_path / "x.npz")))


def test_a_seeded_split_too_small_for_the_fractions_is_refused(tmp_path: Path) -> None:
    np.savez(tmp_path / "x.npz", images=grey_uint8(8))
    with pytest.raises(ArrayFileError, match="8 images split 5/1/2"):
        load_dataset(DataConfig(dataset="array", path=str(tmp_path / "x.npz")))


def test_the_file_is_read_again_once_replaced(tmp_path: Path) -> None:
    path = tmp_path / "x.npz"
    np.savez(path, images=grey_uint8(20))
    assert load_dataset(DataConfig(dataset="array", path=str(path))).image_shape == (1, 6, 5)
    np.savez(path, images=grey_uint8(20, 4, 4))
    assert load_dataset(DataConfig(dataset="array", path=str(path))).image_shape == (1, 4, 4)


# ---------------------------------------------------------------------------------------------
# Configuration


def test_array_needs_a_path() -> None:
    with pytest.raises(ConfigError, match="data.path: required for data.dataset array"):
        DataConfig(dataset="array")


def test_a_path_is_refused_for_the_other_datasets() -> None:
    with pytest.raises(ConfigError, match="data.path: is read only for data.dataset array"):
        DataConfig(dataset="mnist", path="x.npz")


@pytest.mark.parametrize(
    ("fractions", "key"),
    [
        ((0.0, 0.2), "data.val_fraction"),
        ((0.1, 1.0), "data.test_fraction"),
        ((0.5, 0.5), "data.test_fraction"),
    ],
)
def test_split_fractions_out_of_range_are_refused(fractions, key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        DataConfig(
            dataset="array", path="x.npz", val_fraction=fractions[0], test_fraction=fractions[1]
        )


def test_a_step_budget_on_a_file_without_train_size_says_what_to_set() -> None:
    config = TrialConfig.from_dict(
        {"data.dataset": "array", "data.path": "x.npz", "train.steps": 100}
    )
    with pytest.raises(ConfigError, match="train.steps: .* needs data.train_size"):
        config.planned_epochs()
    assert (
        config.planned_epochs(n_train=640) == 10
    )  # 10 batches of 64: the trainer passes what it loaded


# ---------------------------------------------------------------------------------------------
# Fashion-MNIST: MNIST's reader, its own folder and the checksums of the published .gz files


@pytest.fixture
def fashion_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Tiny Fashion-MNIST-shaped .gz files in <tmp>/fashion_mnist/, the checksum table
    pointed at them (the MD5 of each .gz file, as Fashion-MNIST publishes its checksums)."""
    folder = tmp_path / "fashion_mnist"
    folder.mkdir()
    for name, payload in tiny_mnist_payloads().items():
        compressed = gzip.compress(payload, mtime=0)
        (folder / f"{name}.gz").write_bytes(compressed)
        monkeypatch.setitem(data.FASHION_MNIST_MD5, name, hashlib.md5(compressed).hexdigest())
    return tmp_path


def test_load_dataset_reads_fashion_mnist_from_its_own_folder(
    monkeypatch: pytest.MonkeyPatch, fashion_files: Path
) -> None:
    real = data.load_idx_dataset

    def small_validation(source, data_dir, seed, **kwargs):
        return real(source, data_dir, seed, **{**kwargs, "val_size": 5})

    monkeypatch.setattr(data, "load_idx_dataset", small_validation)
    config = DataConfig(dataset="fashion_mnist", data_dir=str(fashion_files), download=False)
    splits = load_dataset(config)
    assert splits.name == "fashion_mnist"
    assert splits.image_shape == (1, 28, 28)
    assert len(splits.test) == 6 and splits.test.labels is not None


def test_fashion_mnist_splits_like_mnist(fashion_files: Path) -> None:
    splits = load_idx_dataset(FASHION_MNIST, fashion_files, seed=1, val_size=5, download=False)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (15, 5, 6)


def test_fashion_mnist_file_with_a_wrong_checksum_is_refused(
    monkeypatch: pytest.MonkeyPatch, fashion_files: Path
) -> None:
    name = MNIST_FILES["train_labels"]
    monkeypatch.setitem(data.FASHION_MNIST_MD5, name, "0" * 32)
    with pytest.raises(ChecksumError) as caught:
        load_idx_dataset(FASHION_MNIST, fashion_files, seed=0, val_size=5, download=False)
    message = str(caught.value)
    assert f"{name}.gz" in message and "expected " + "0" * 32 in message


def test_fashion_mnist_unzipped_file_is_refused_asking_for_the_gz(fashion_files: Path) -> None:
    gz = fashion_files / "fashion_mnist" / f"{MNIST_FILES['test_images']}.gz"
    gz.with_suffix("").write_bytes(gzip.decompress(gz.read_bytes()))
    gz.unlink()
    with pytest.raises(ChecksumError, match="put the .gz file there as downloaded"):
        load_idx_dataset(FASHION_MNIST, fashion_files, seed=0, val_size=5, download=False)


def test_fashion_mnist_missing_files_say_where_to_put_them(tmp_path: Path) -> None:
    with pytest.raises(MissingDataError) as caught:
        ensure_idx_files(FASHION_MNIST, tmp_path, download=False)
    message = str(caught.value)
    assert message.startswith(f"Fashion-MNIST files missing from {tmp_path / 'fashion_mnist'}")
    assert all(name in message for name in MNIST_FILES.values())
    assert "fashion_mnist/ subfolder" in message


def test_fashion_mnist_downloads_from_a_mirror_with_a_progress_bar(
    fashion_files: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mirror = fashion_files / "fashion_mnist"
    folder = ensure_idx_files(FASHION_MNIST, tmp_path / "data", mirrors=[mirror.as_uri()])
    assert folder == tmp_path / "data" / "fashion_mnist"
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in mirror.iterdir())
    assert "downloading" in capsys.readouterr().err
