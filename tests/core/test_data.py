"""Tests of infovae_core.data: IDX reading, MNIST files and download, splits, binarisation.

No test touches the network: downloads go through ``file://`` mirrors in temp folders. Tests on
the real MNIST files are marked ``mnist`` and skipped unless ``$INFOVAE_DATA_DIR`` holds them.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch

from infovae_core import data
from infovae_core.config import TRAIN_SPLIT_SIZES, ConfigError, DataConfig, TrialConfig
from infovae_core.data import (
    MNIST_FILES,
    DatasetSplits,
    Split,
    apply_train_size,
    binarize,
    ensure_mnist,
    load_dataset,
    load_digits_splits,
    load_mnist,
    read_idx,
    resolve_data_dir,
    static_binarize,
)
from infovae_core.datafiles import ChecksumError, DataError, IdxFormatError, MissingDataError

# ---------------------------------------------------------------------------------------------
# Helpers: IDX files written by hand (independently of the reader under test)


def idx_bytes(array: np.ndarray, type_code: int = 0x08) -> bytes:
    """IDX encoding: 00 00 <type> <ndim>, big-endian uint32 dims, big-endian data."""
    dtype = {0x08: ">u1", 0x0C: ">i4", 0x0D: ">f4"}[type_code]
    header = bytes([0, 0, type_code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(dtype).tobytes()


def write(path: Path, payload: bytes, gz: bool) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    target = path.with_name(path.name + ".gz") if gz else path
    target.write_bytes(gzip.compress(payload) if gz else payload)
    return target


def tiny_mnist_payloads(n_train: int = 20, n_test: int = 6) -> dict[str, bytes]:
    """Uncompressed IDX bytes for the four files; image i has pixel [0, 0] = i (to track it)."""
    rng = np.random.default_rng(7)
    train = rng.integers(0, 256, size=(n_train, 28, 28), dtype=np.uint8)
    train[:, 0, 0] = np.arange(n_train)
    test = rng.integers(0, 256, size=(n_test, 28, 28), dtype=np.uint8)
    test[:, 0, 0] = np.arange(n_test)
    return {
        MNIST_FILES["train_images"]: idx_bytes(train),
        MNIST_FILES["train_labels"]: idx_bytes(np.arange(n_train) % 10),
        MNIST_FILES["test_images"]: idx_bytes(test),
        MNIST_FILES["test_labels"]: idx_bytes(np.arange(n_test) % 10),
    }


@pytest.fixture
def payloads(monkeypatch: pytest.MonkeyPatch) -> dict[str, bytes]:
    """Tiny MNIST-shaped files; the expected-MD5 table is pointed at them."""
    files = tiny_mnist_payloads()
    for name, payload in files.items():
        monkeypatch.setitem(data.MNIST_MD5, name, hashlib.md5(payload).hexdigest())
    return files


def write_all(folder: Path, files: dict[str, bytes], gz: bool = True) -> None:
    for name, payload in files.items():
        write(folder / name, payload, gz)


# ---------------------------------------------------------------------------------------------
# read_idx


def test_read_idx_round_trips_a_raw_file(tmp_path: Path) -> None:
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    path = write(tmp_path / "x-idx3-ubyte", idx_bytes(array), gz=False)
    out = read_idx(path)
    assert out.shape == (2, 3, 4) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, array)


def test_read_idx_round_trips_a_gzip_file(tmp_path: Path) -> None:
    array = np.array([3, 1, 4, 1, 5, 9], dtype=np.uint8)
    path = write(tmp_path / "y-idx1-ubyte", idx_bytes(array), gz=True)
    assert path.suffix == ".gz"
    np.testing.assert_array_equal(read_idx(path), array)


def test_read_idx_decodes_big_endian_int32(tmp_path: Path) -> None:
    array = np.array([[-2, 70000], [1, -(2**31)]], dtype=np.int32)
    path = write(tmp_path / "z-idx2-int", idx_bytes(array, type_code=0x0C), gz=False)
    np.testing.assert_array_equal(read_idx(path), array)


def test_read_idx_rejects_a_truncated_file(tmp_path: Path) -> None:
    payload = idx_bytes(np.zeros((5, 28, 28), dtype=np.uint8))
    path = write(tmp_path / "short-idx3-ubyte", payload[:-10], gz=False)
    with pytest.raises(IdxFormatError, match=r"short-idx3-ubyte.*truncated"):
        read_idx(path)


def test_read_idx_rejects_a_truncated_gzip_stream(tmp_path: Path) -> None:
    path = tmp_path / "cut-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.ones((50, 28, 28), dtype=np.uint8)))[:-30])
    with pytest.raises(IdxFormatError, match=r"cut-idx3-ubyte\.gz.*truncated"):
        read_idx(path)


def test_read_idx_rejects_a_wrong_magic_number(tmp_path: Path) -> None:
    payload = b"\x00\x01" + idx_bytes(np.zeros(4, dtype=np.uint8))[2:]
    path = write(tmp_path / "magic-idx1-ubyte", payload, gz=True)
    with pytest.raises(IdxFormatError, match=r"magic-idx1-ubyte.*wrong magic"):
        read_idx(path)


def test_read_idx_rejects_trailing_bytes(tmp_path: Path) -> None:
    payload = idx_bytes(np.zeros(4, dtype=np.uint8)) + b"\x00\x00"
    path = write(tmp_path / "long-idx1-ubyte", payload, gz=False)
    with pytest.raises(IdxFormatError, match=r"long-idx1-ubyte.*2 unexpected trailing bytes"):
        read_idx(path)


def test_read_idx_wrong_md5_names_file_expected_and_actual(tmp_path: Path) -> None:
    payload = idx_bytes(np.arange(4, dtype=np.uint8))
    path = write(tmp_path / "sum-idx1-ubyte", payload, gz=True)
    actual = hashlib.md5(payload).hexdigest()  # of the uncompressed bytes, not the .gz
    with pytest.raises(ChecksumError) as info:
        read_idx(path, expected_md5="0" * 32)
    message = str(info.value)
    assert "sum-idx1-ubyte" in message and "0" * 32 in message and actual in message


def test_read_idx_accepts_the_md5_of_the_uncompressed_content(tmp_path: Path) -> None:
    payload = idx_bytes(np.arange(4, dtype=np.uint8))
    path = write(tmp_path / "ok-idx1-ubyte", payload, gz=True)
    read_idx(path, expected_md5=hashlib.md5(payload).hexdigest())


def test_data_errors_are_value_errors() -> None:
    for cls in (MissingDataError, ChecksumError, IdxFormatError):
        assert issubclass(cls, DataError) and issubclass(cls, ValueError)


# ---------------------------------------------------------------------------------------------
# Data directory


def test_resolve_data_dir_prefers_the_explicit_argument(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("INFOVAE_DATA_DIR", str(tmp_path / "env"))
    assert resolve_data_dir(str(tmp_path / "cli")) == tmp_path / "cli"


def test_resolve_data_dir_falls_back_to_the_environment(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("INFOVAE_DATA_DIR", str(tmp_path / "env"))
    assert resolve_data_dir(None) == tmp_path / "env"


def test_resolve_data_dir_falls_back_to_xdg_cache(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.delenv("INFOVAE_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert resolve_data_dir(None) == tmp_path / "xdg" / "infovae-sweep"


def test_resolve_data_dir_falls_back_to_home_cache(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.delenv("INFOVAE_DATA_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_data_dir(None) == tmp_path / ".cache" / "infovae-sweep"


# ---------------------------------------------------------------------------------------------
# ensure_mnist: missing files and downloads


def test_missing_files_error_names_every_file_the_folder_and_the_options(tmp_path: Path) -> None:
    with pytest.raises(MissingDataError) as info:
        ensure_mnist(tmp_path, download=False)
    message = str(info.value)
    for name in MNIST_FILES.values():
        assert name in message
    assert str(tmp_path / "mnist") in message
    assert "INFOVAE_DATA_DIR" in message and "--data-dir" in message


def test_missing_files_error_lists_only_the_missing_file(tmp_path: Path, payloads) -> None:
    write_all(tmp_path / "mnist", payloads)
    (tmp_path / "mnist" / f"{MNIST_FILES['test_labels']}.gz").unlink()
    with pytest.raises(MissingDataError) as info:
        ensure_mnist(tmp_path, download=False)
    message = str(info.value)
    assert MNIST_FILES["test_labels"] in message
    assert MNIST_FILES["train_images"] not in message


def test_present_files_are_found_raw_or_gzipped(tmp_path: Path, payloads) -> None:
    names = list(payloads)
    for i, name in enumerate(names):
        write(tmp_path / "mnist" / name, payloads[name], gz=i % 2 == 0)
    assert ensure_mnist(tmp_path, mirrors=(), download=True) == tmp_path / "mnist"


def test_download_from_a_file_mirror_fetches_all_files(tmp_path: Path, payloads, capsys) -> None:
    mirror = tmp_path / "mirror"
    write_all(mirror, payloads, gz=True)
    folder = ensure_mnist(tmp_path / "data", mirrors=[mirror.as_uri() + "/"])
    assert folder == tmp_path / "data" / "mnist"
    for name, payload in payloads.items():
        assert gzip.decompress((folder / f"{name}.gz").read_bytes()) == payload
    assert not [p for p in folder.iterdir() if p.name.endswith(".part")]  # temp files gone
    assert "downloading" in capsys.readouterr().err  # progress bar on stderr


def test_download_fetches_only_missing_files(tmp_path: Path, payloads) -> None:
    folder = tmp_path / "data" / "mnist"
    present = MNIST_FILES["train_images"]
    write(folder / present, payloads[present], gz=False)
    mirror = tmp_path / "mirror"
    write_all(mirror, payloads, gz=True)
    ensure_mnist(tmp_path / "data", mirrors=[mirror.as_uri()])
    assert (folder / present).is_file() and not (folder / f"{present}.gz").exists()
    assert (folder / f"{MNIST_FILES['test_labels']}.gz").is_file()


def test_download_with_a_wrong_md5_is_rejected_and_not_kept(tmp_path: Path, payloads) -> None:
    mirror = tmp_path / "mirror"
    write_all(mirror, payloads, gz=True)
    bad = MNIST_FILES["train_labels"]
    write(mirror / bad, idx_bytes(np.zeros(20, dtype=np.uint8)), gz=True)  # valid IDX, wrong MD5
    with pytest.raises(MissingDataError) as info:
        ensure_mnist(tmp_path / "data", mirrors=[mirror.as_uri()])
    assert bad in str(info.value) and "MD5" in str(info.value)
    folder = tmp_path / "data" / "mnist"
    assert not (folder / f"{bad}.gz").exists() and not (folder / bad).exists()
    assert not [p for p in folder.iterdir() if p.name.endswith(".part")]


def test_a_failing_mirror_falls_through_to_the_next(tmp_path: Path, payloads) -> None:
    empty = tmp_path / "empty-mirror"
    empty.mkdir()
    good = tmp_path / "mirror"
    write_all(good, payloads, gz=True)
    folder = ensure_mnist(tmp_path / "data", mirrors=[empty.as_uri(), good.as_uri()])
    for name in payloads:
        assert (folder / f"{name}.gz").is_file()


def test_a_mirror_lacking_one_file_is_still_used_for_the_others(tmp_path: Path, payloads):
    first = MNIST_FILES["train_images"]  # fetched first
    partial, extra = tmp_path / "partial", tmp_path / "extra"
    write_all(partial, {k: v for k, v in payloads.items() if k != first}, gz=True)
    write(extra / first, payloads[first], gz=True)  # the second mirror has only this one
    folder = ensure_mnist(tmp_path / "data", mirrors=[partial.as_uri(), extra.as_uri()])
    assert all((folder / f"{name}.gz").is_file() for name in payloads)


def test_an_unreachable_mirror_is_skipped_after_its_first_failure(monkeypatch, tmp_path: Path):
    tried: list[str] = []

    def refuse(url, timeout):
        tried.append(url)
        raise urllib.error.URLError(ConnectionRefusedError(111, "refused"))

    monkeypatch.setattr(data.urllib.request, "urlopen", refuse)
    with pytest.raises(MissingDataError, match="refused"):
        ensure_mnist(tmp_path, mirrors=["https://mirror.invalid/mnist/"])
    assert len(tried) == 1


def test_all_mirrors_failing_gives_the_put_files_here_error(tmp_path: Path, payloads) -> None:
    empty = tmp_path / "empty-mirror"
    empty.mkdir()
    with pytest.raises(MissingDataError) as info:
        ensure_mnist(tmp_path / "data", mirrors=[empty.as_uri()])
    message = str(info.value)
    assert str(tmp_path / "data" / "mnist") in message and "INFOVAE_DATA_DIR" in message
    assert all(name in message for name in MNIST_FILES.values())
    assert "Download failed" in message


# ---------------------------------------------------------------------------------------------
# load_mnist on tiny files


def test_load_mnist_splits_train_into_disjoint_train_and_val(tmp_path: Path, payloads) -> None:
    write_all(tmp_path / "mnist", payloads)
    splits = load_mnist(tmp_path, seed=3, val_size=5, download=False)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (15, 5, 6)
    assert splits.image_shape == (1, 28, 28)
    # pixel [0, 0] holds the image's index in the file (as a grey level / 255)
    train_ids = (splits.train.images[:, 0, 0, 0] * 255).round().long()
    val_ids = (splits.val.images[:, 0, 0, 0] * 255).round().long()
    assert sorted(torch.cat([train_ids, val_ids]).tolist()) == list(range(20))
    assert torch.equal(splits.train.labels, train_ids % 10)  # labels follow their images
    test_ids = (splits.test.images[:, 0, 0, 0] * 255).round().long()
    assert test_ids.tolist() == list(range(6))  # test is t10k as it is


def test_load_mnist_scales_grey_levels_to_unit_interval(tmp_path: Path, payloads) -> None:
    write_all(tmp_path / "mnist", payloads, gz=False)
    splits = load_mnist(tmp_path, seed=0, val_size=5, download=False)
    raw = read_idx(tmp_path / "mnist" / MNIST_FILES["test_images"])
    expected = torch.from_numpy(raw.astype(np.float32) / 255.0).unsqueeze(1)
    assert splits.test.images.dtype == torch.float32
    torch.testing.assert_close(splits.test.images, expected)
    assert splits.test.labels.dtype == torch.int64


def test_load_mnist_val_split_depends_only_on_the_seed(tmp_path: Path, payloads) -> None:
    write_all(tmp_path / "mnist", payloads)
    a = load_mnist(tmp_path, seed=1, val_size=5, download=False)
    b = load_mnist(tmp_path, seed=1, val_size=5, download=False)
    c = load_mnist(tmp_path, seed=2, val_size=5, download=False)
    assert torch.equal(a.val.images, b.val.images)
    assert not torch.equal(a.val.images, c.val.images)


def test_load_mnist_accepts_a_data_dir_that_is_the_mnist_folder(tmp_path: Path, payloads) -> None:
    write_all(tmp_path, payloads)
    assert len(load_mnist(tmp_path, seed=0, val_size=5, download=False).val) == 5


def test_load_mnist_rejects_a_file_with_the_wrong_md5(monkeypatch, tmp_path: Path, payloads):
    write_all(tmp_path / "mnist", payloads)
    name = MNIST_FILES["test_images"]
    monkeypatch.setitem(data.MNIST_MD5, name, "f" * 32)
    with pytest.raises(ChecksumError, match=rf"{name}\.gz.*expected f{{32}}"):
        load_mnist(tmp_path, seed=0, val_size=5, download=False)


def test_load_mnist_parses_files_once_per_process(monkeypatch, tmp_path: Path, payloads):
    write_all(tmp_path / "mnist", payloads)
    calls: list[Path] = []
    real = data.read_idx

    def counting(path, expected_md5=None):
        calls.append(Path(path))
        return real(path, expected_md5)

    monkeypatch.setattr(data, "read_idx", counting)
    load_mnist(tmp_path, seed=0, val_size=5, download=False)
    load_mnist(tmp_path, seed=1, val_size=5, download=False)
    assert len(calls) == 4
    # a replaced file is noticed (size/mtime are part of the cache key)
    path = tmp_path / "mnist" / f"{MNIST_FILES['test_labels']}.gz"
    os.utime(path, ns=(0, 0))
    load_mnist(tmp_path, seed=0, val_size=5, download=False)
    assert len(calls) == 8


# ---------------------------------------------------------------------------------------------
# digits


def test_digits_split_sizes_are_70_10_20_percent() -> None:
    splits = load_digits_splits(seed=0)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (1258, 180, 359)
    assert splits.image_shape == (1, 8, 8) and splits.name == "digits"


def test_digits_splits_partition_the_dataset() -> None:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    splits = load_digits_splits(seed=0)
    parts = [splits.train, splits.val, splits.test]
    got = torch.cat([torch.cat([s.images.flatten(1) * 16, s.labels[:, None]], 1) for s in parts])
    want = torch.from_numpy(np.concatenate([x, y[:, None]], 1)).float()
    # same multiset of (image, label) rows: every image in exactly one split
    assert torch.equal(torch.unique(got, dim=0, sorted=True), torch.unique(want, dim=0))
    assert got.shape == want.shape


def test_digits_grey_levels_are_in_unit_interval() -> None:
    images = load_digits_splits(seed=0).train.images
    assert images.dtype == torch.float32
    assert images.min() == 0.0 and images.max() == 1.0


def test_digits_split_is_reproducible_by_seed() -> None:
    a, b, c = load_digits_splits(5), load_digits_splits(5), load_digits_splits(6)
    assert torch.equal(a.val.images, b.val.images) and torch.equal(a.test.labels, b.test.labels)
    assert not torch.equal(a.val.images, c.val.images)


def test_load_dataset_uses_the_config_seed_for_digits() -> None:
    a = load_dataset(DataConfig(dataset="digits", seed=4))
    assert torch.equal(a.val.images, load_digits_splits(4).val.images)


def test_load_dataset_refuses_an_unknown_dataset() -> None:
    with pytest.raises(ConfigError, match="data.dataset"):
        load_dataset(DataConfig(dataset="cifar"))  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# data.train_size


def _rows(split: Split) -> set[bytes]:
    """Each image as bytes: a split's content as a set, to compare subsets of images."""
    return {row.numpy().tobytes() for row in split.images}


def test_train_split_sizes_match_the_loaded_digits_split() -> None:
    assert TRAIN_SPLIT_SIZES["digits"] == len(load_digits_splits(0).train) == 1258


def test_train_size_keeps_that_many_training_images_from_the_training_split() -> None:
    whole = load_dataset(DataConfig(dataset="digits", seed=3))
    cut = load_dataset(DataConfig(dataset="digits", seed=3, train_size=100))
    assert len(cut.train) == 100
    assert _rows(cut.train) <= _rows(whole.train)
    # labels travel with their images: each subset row is a row of the whole split
    whole_rows = {
        img.numpy().tobytes(): int(y)
        for img, y in zip(whole.train.images, whole.train.labels, strict=True)
    }
    assert all(
        whole_rows[img.numpy().tobytes()] == int(y)
        for img, y in zip(cut.train.images, cut.train.labels, strict=True)
    )


def test_train_size_leaves_validation_and_test_unchanged() -> None:
    whole = load_dataset(DataConfig(dataset="digits", seed=3))
    cut = load_dataset(DataConfig(dataset="digits", seed=3, train_size=50))
    for a, b in ((whole.val, cut.val), (whole.test, cut.test)):
        assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)


def test_train_size_subset_is_deterministic_and_set_by_the_data_seed() -> None:
    a = load_dataset(DataConfig(dataset="digits", seed=1, train_size=64))
    b = load_dataset(DataConfig(dataset="digits", seed=1, train_size=64))
    c = load_dataset(DataConfig(dataset="digits", seed=2, train_size=64))
    assert torch.equal(a.train.images, b.train.images) and torch.equal(
        a.train.labels, b.train.labels
    )
    assert _rows(a.train) != _rows(c.train)


def test_train_size_subset_does_not_depend_on_the_training_seed() -> None:
    # Arms and model seeds of one study must train on the same images (paired comparisons).
    base = {"data.dataset": "digits", "data.seed": 5, "data.train_size": 30}
    one = TrialConfig.from_dict({**base, "train.seed": 0, "objective.lambda": 1.0})
    two = TrialConfig.from_dict({**base, "train.seed": 99, "objective.lambda": 50.0})
    assert torch.equal(load_dataset(one.data).train.images, load_dataset(two.data).train.images)


def test_smaller_train_sizes_are_subsets_of_larger_ones() -> None:
    small = load_dataset(DataConfig(dataset="digits", train_size=20))
    large = load_dataset(DataConfig(dataset="digits", train_size=200))
    assert _rows(small.train) <= _rows(large.train)


def test_train_size_of_the_whole_split_keeps_every_training_image() -> None:
    whole = load_dataset(DataConfig(dataset="digits"))
    full = load_dataset(DataConfig(dataset="digits", train_size=1258))
    assert _rows(full.train) == _rows(whole.train)


def test_apply_train_size_on_whole_splits_equals_load_dataset() -> None:
    # The sweep loads the whole splits once and cuts them per trial with apply_train_size.
    config = DataConfig(dataset="digits", seed=2, train_size=40)
    whole = load_dataset(DataConfig(dataset="digits", seed=2))
    assert torch.equal(
        apply_train_size(whole, config).train.images, load_dataset(config).train.images
    )
    assert apply_train_size(whole, DataConfig(dataset="digits", seed=2)) is whole


@pytest.mark.parametrize("size", [0, 1, -5])
def test_train_size_below_two_is_refused_naming_the_key(size: int) -> None:
    with pytest.raises(ConfigError, match=r"data.train_size: must be >= 2"):
        DataConfig(dataset="digits", train_size=size)


def test_train_size_larger_than_the_split_names_the_key_and_the_split_size() -> None:
    with pytest.raises(ConfigError, match=r"data.train_size: 1259 is more than the 1258 images"):
        DataConfig(dataset="digits", train_size=1259)
    with pytest.raises(ConfigError, match=r"data.train_size: 50001 .* 50000 images of the mnist"):
        TrialConfig.from_dict({"data.dataset": "mnist", "data.train_size": 50_001})


def test_train_size_must_be_an_integer() -> None:
    with pytest.raises(ConfigError, match="data.train_size: must be an integer"):
        TrialConfig.from_dict({"data.train_size": "100"})
    assert TrialConfig.from_dict({"data.train_size": None}).data.train_size is None


def test_train_size_larger_than_the_actual_split_is_refused_on_load(tmp_path: Path, payloads):
    # The tiny files have 15 training images: the check against the loaded split names both.
    write_all(tmp_path / "mnist", payloads)
    splits = load_mnist(tmp_path, seed=0, val_size=5, download=False)
    config = DataConfig(dataset="mnist", data_dir=str(tmp_path), train_size=16)
    with pytest.raises(ConfigError, match=r"data.train_size: 16 is more than the 15 images"):
        apply_train_size(splits, config)
    assert len(apply_train_size(splits, DataConfig(dataset="mnist", train_size=15)).train) == 15


# ---------------------------------------------------------------------------------------------
# Split containers


def test_split_refuses_mismatched_lengths() -> None:
    with pytest.raises(DataError, match="3 images but 2 labels"):
        Split(images=torch.zeros(3, 1, 2, 2), labels=torch.zeros(2, dtype=torch.int64))


def test_split_refuses_non_float32_images() -> None:
    with pytest.raises(DataError, match="float32"):
        Split(images=torch.zeros(3, 1, 2, 2, dtype=torch.uint8), labels=torch.zeros(3).long())


def test_dataset_splits_to_moves_every_tensor() -> None:
    splits = load_digits_splits(0).to("meta")
    for split in (splits.train, splits.val, splits.test):
        assert split.images.device.type == "meta" and split.labels.device.type == "meta"
    assert splits.image_shape == (1, 8, 8) and len(splits.test) == 359


# ---------------------------------------------------------------------------------------------
# Binarisation


def test_binarize_gives_zeros_and_ones_of_the_same_dtype_and_shape() -> None:
    images = torch.rand(50, 1, 8, 8)
    out = binarize(images, torch.Generator().manual_seed(0))
    assert out.shape == images.shape and out.dtype == images.dtype
    assert set(out.unique().tolist()) <= {0.0, 1.0}


def test_binarize_keeps_certain_pixels() -> None:
    images = torch.tensor([0.0, 1.0]).repeat(1000)
    out = binarize(images, torch.Generator().manual_seed(0))
    assert torch.equal(out, images)


def test_binarize_is_reproducible_with_a_seeded_generator() -> None:
    images = torch.rand(20, 1, 8, 8, generator=torch.Generator().manual_seed(9))
    a = binarize(images, torch.Generator().manual_seed(1))
    b = binarize(images, torch.Generator().manual_seed(1))
    c = binarize(images, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_binarize_mean_matches_the_grey_level_mean() -> None:
    # n = 200k pixels with p in {0.1, 0.5, 0.9}: the standard error of the mean is < 0.0011
    p = torch.tensor([0.1, 0.5, 0.9]).repeat_interleave(200_000 // 3 + 1)[:200_000]
    out = binarize(p, torch.Generator().manual_seed(0))
    assert abs(out.mean().item() - p.mean().item()) < 0.006
    assert abs(out[p == 0.1].mean().item() - 0.1) < 0.01


def test_static_binarize_is_stable_for_a_seed() -> None:
    splits = load_digits_splits(0)
    a, b = static_binarize(splits, seed=11), static_binarize(splits, seed=11)
    c = static_binarize(splits, seed=12)
    for name in ("train", "val", "test"):
        assert torch.equal(getattr(a, name).images, getattr(b, name).images)
        assert torch.equal(getattr(a, name).labels, getattr(splits, name).labels)
    assert not torch.equal(a.train.images, c.train.images)


def test_static_binarize_samples_every_split_to_zeros_and_ones() -> None:
    splits = load_digits_splits(0)
    out = static_binarize(splits, seed=0)
    assert isinstance(out, DatasetSplits) and out.name == "digits"
    for name in ("train", "val", "test"):
        images = getattr(out, name).images
        assert set(images.unique().tolist()) == {0.0, 1.0}
        grey = getattr(splits, name).images
        assert abs(images.mean().item() - grey.mean().item()) < 0.02


# ---------------------------------------------------------------------------------------------
# Real MNIST (skipped unless $INFOVAE_DATA_DIR holds the files)


@pytest.fixture
def real_mnist_root() -> Path:
    root = os.environ.get("INFOVAE_DATA_DIR")
    if not root:
        pytest.skip("real MNIST not found: set INFOVAE_DATA_DIR to a folder with mnist/")
    try:
        ensure_mnist(Path(root), download=False)
    except MissingDataError:
        pytest.skip(f"real MNIST not found: set INFOVAE_DATA_DIR ({root} has no mnist/ files)")
    return Path(root)


@pytest.mark.mnist
def test_real_mnist_has_50k_10k_10k_images_of_28x28(real_mnist_root: Path) -> None:
    splits = load_dataset(DataConfig(dataset="mnist", data_dir=str(real_mnist_root)))
    assert (len(splits.train), len(splits.val), len(splits.test)) == (50_000, 10_000, 10_000)
    assert TRAIN_SPLIT_SIZES["mnist"] == len(splits.train)
    assert splits.image_shape == (1, 28, 28)
    for split in (splits.train, splits.val, splits.test):
        assert split.images.dtype == torch.float32
        assert split.images.min() >= 0.0 and split.images.max() <= 1.0
        assert split.labels.unique().tolist() == list(range(10))


@pytest.mark.mnist
def test_real_mnist_is_read_through_the_environment_variable(real_mnist_root: Path) -> None:
    splits = load_dataset(DataConfig(dataset="mnist", seed=0))
    assert len(splits.val) == 10_000
