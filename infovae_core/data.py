"""Datasets as whole tensors: the embedded 8x8 ``digits``, ``mnist`` and ``fashion_mnist`` from
their IDX files, and ``array``: a user's ``.npz`` / ``.npy`` file of images.

Every split is a single tensor of grey levels in [0, 1] (``[N, C, H, W]`` float32) with its
labels (``[N]`` int64, or None for a file without labels); the trainer takes mini-batches as
index slices, so there is no DataLoader. Binarisation for Bernoulli decoders is separate
(:func:`binarize` for ``dynamic``, :func:`static_binarize` for ``static``).

MNIST files live in ``<data dir>/mnist/``, Fashion-MNIST's (the same four file names) in
``<data dir>/fashion_mnist/`` (the data dir from :func:`resolve_data_dir`). Every MNIST file
is checked against the MD5 of the original *uncompressed* content, so re-compressed copies from
any mirror are accepted and corrupted ones are not; Fashion-MNIST's published MD5s are of its
``.gz`` files, which are therefore kept as downloaded. Missing files are downloaded from the
dataset's mirrors (each tried with a short timeout) unless downloading is turned off; if that
fails, :class:`MissingDataError` says exactly which files to put where.

A user's file is read and checked by :mod:`infovae_core.datafiles` (NumPy only, never
unpickling), which also defines the errors re-exported here.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import os
import socket
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from infovae_core.config import ConfigError, DataConfig
from infovae_core.datafiles import (
    POOL,
    SPLIT_NAMES,
    ChecksumError,
    DataError,
    IdxFormatError,
    MissingDataError,
    check_split,
    read_image_arrays,
)

__all__ = [
    "Split",
    "DatasetSplits",
    "MNIST_FILES",
    "MNIST_MD5",
    "MNIST_MIRRORS",
    "MNIST_VAL_SIZE",
    "FASHION_MNIST_MD5",
    "FASHION_MNIST_MIRRORS",
    "IdxSource",
    "MNIST",
    "FASHION_MNIST",
    "IDX_SOURCES",
    "DIGITS_SPLIT_SIZES",
    "resolve_data_dir",
    "read_idx",
    "ensure_idx_files",
    "ensure_mnist",
    "load_idx_dataset",
    "load_mnist",
    "load_array_splits",
    "load_digits_splits",
    "load_dataset",
    "apply_train_size",
    "train_subset_indices",
    "binarize",
    "static_binarize",
]


# ---------------------------------------------------------------------------------------------
# Splits


@dataclass(frozen=True, eq=False)  # eq=False: comparing tensors with == has no single truth value
class Split:
    """One split held as single tensors.

    ``images``: ``[N, C, H, W]`` float32, grey levels in [0, 1] (or {0, 1} once binarised).
    ``labels``: ``[N]`` int64 class labels (digits 0..9), or None for images without labels
    (the evaluation then has no probe metrics).
    """

    images: Tensor
    labels: Tensor | None

    def __post_init__(self) -> None:
        if self.images.ndim != 4:
            raise DataError(f"Split.images must be [N, C, H, W], got {tuple(self.images.shape)}")
        if self.images.dtype != torch.float32:
            raise DataError(f"Split.images must be float32, got {self.images.dtype}")
        if self.labels is None:
            return
        if self.labels.ndim != 1 or self.labels.dtype != torch.int64:
            shape = tuple(self.labels.shape)
            raise DataError(f"Split.labels must be [N] int64, got {shape} {self.labels.dtype}")
        if self.labels.shape[0] != self.images.shape[0]:
            raise DataError(
                f"Split has {self.images.shape[0]} images but {self.labels.shape[0]} labels"
            )

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def to(self, device: torch.device | str) -> Split:
        """The same split with both tensors on ``device``."""
        labels = None if self.labels is None else self.labels.to(device)
        return Split(images=self.images.to(device), labels=labels)


@dataclass(frozen=True, eq=False)
class DatasetSplits:
    """A dataset's train / validation / test splits (disjoint), all of one image shape."""

    name: str
    train: Split
    val: Split
    test: Split

    def __post_init__(self) -> None:
        shapes = {tuple(s.images.shape[1:]) for s in (self.train, self.val, self.test)}
        if len(shapes) != 1:
            raise DataError(f"dataset {self.name!r}: splits differ in image shape: {shapes}")

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image, e.g. ``(1, 28, 28)`` for MNIST."""
        c, h, w = self.train.images.shape[1:]
        return (int(c), int(h), int(w))

    def to(self, device: torch.device | str) -> DatasetSplits:
        """The same splits with every tensor on ``device``."""
        return DatasetSplits(
            name=self.name,
            train=self.train.to(device),
            val=self.val.to(device),
            test=self.test.to(device),
        )


def _split(images: np.ndarray, labels: np.ndarray | None, index: np.ndarray, scale: float) -> Split:
    """Select rows ``index`` of ``images`` ([N, H, W] or [N, C, H, W]) divided by ``scale``."""
    # Fancy indexing copies, so the cached (read-only) arrays are never handed to torch.
    x = torch.from_numpy(np.ascontiguousarray(images[index])).to(torch.float32).div_(scale)
    if x.ndim == 3:
        x = x.unsqueeze(1)
    if labels is None:
        return Split(images=x, labels=None)
    y = torch.from_numpy(np.ascontiguousarray(labels[index])).to(torch.int64)
    return Split(images=x, labels=y)


# ---------------------------------------------------------------------------------------------
# digits

#: Exact split sizes of the 1,797 digits images: 70 % / 10 % / 20 % (val and test rounded).
DIGITS_SPLIT_SIZES: dict[str, int] = {"train": 1258, "val": 180, "test": 359}


def load_digits_splits(seed: int) -> DatasetSplits:
    """scikit-learn's bundled 8x8 digits (1,797 images, no download), grey levels / 16.

    A seeded permutation (``numpy.random.default_rng(seed)``) splits it into exactly
    1,258 train / 180 validation / 359 test images (70 / 10 / 20 %, validation and test rounded
    to the nearest image, train the rest). Images ``[N, 1, 8, 8]`` float32 in [0, 1].
    """
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    images = x.reshape(-1, 8, 8)  # values 0..16
    n = images.shape[0]
    n_val = round(0.1 * n)
    n_test = round(0.2 * n)
    perm = np.random.default_rng(seed).permutation(n)
    val_idx, test_idx, train_idx = np.split(perm, [n_val, n_val + n_test])
    return DatasetSplits(
        name="digits",
        train=_split(images, y, train_idx, 16.0),
        val=_split(images, y, val_idx, 16.0),
        test=_split(images, y, test_idx, 16.0),
    )


# ---------------------------------------------------------------------------------------------
# Data directory

DATA_DIR_ENV = "INFOVAE_DATA_DIR"


def resolve_data_dir(explicit: str | os.PathLike[str] | None) -> Path:
    """The data root: ``explicit`` (``--data-dir``), else ``$INFOVAE_DATA_DIR``, else the
    per-user cache ``$XDG_CACHE_HOME/infovae-sweep`` (default ``~/.cache/infovae-sweep``).

    MNIST is looked for in ``<root>/mnist/``. The folder need not exist yet.
    """
    if explicit is not None and str(explicit) != "":
        return Path(explicit).expanduser()
    env = os.environ.get(DATA_DIR_ENV, "")
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(cache).expanduser() if cache else Path.home() / ".cache"
    return base / "infovae-sweep"


# ---------------------------------------------------------------------------------------------
# IDX files

# IDX type codes (third magic byte) -> big-endian numpy dtypes.
_IDX_DTYPES: dict[int, str] = {
    0x08: ">u1",
    0x09: ">i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}
_GZIP_MAGIC = b"\x1f\x8b"


def _read_bytes(path: Path) -> bytes:
    """The file's content, gunzipped when it is gzip (detected by content, not the name)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise MissingDataError(f"{path}: file not found") from None
    if raw[:2] != _GZIP_MAGIC:
        if path.suffix == ".gz":
            raise IdxFormatError(f"{path}: named .gz but is not gzip-compressed")
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, zlib.error, gzip.BadGzipFile) as err:
        raise IdxFormatError(f"{path}: corrupt or truncated gzip data ({err})") from None


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _parse_idx(data: bytes, source: str) -> np.ndarray:
    """Parse IDX bytes: magic ``00 00 <type> <ndim>``, ``ndim`` big-endian uint32 sizes, data."""
    if len(data) < 4:
        raise IdxFormatError(f"{source}: truncated: {len(data)} bytes, shorter than the header")
    zero0, zero1, code, ndim = data[0], data[1], data[2], data[3]
    if zero0 != 0 or zero1 != 0 or code not in _IDX_DTYPES or ndim == 0:
        raise IdxFormatError(
            f"{source}: wrong magic number 0x{data[:4].hex()} (an IDX file starts with "
            f"00 00, a type code in {[hex(c) for c in _IDX_DTYPES]} and a nonzero rank)"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise IdxFormatError(f"{source}: truncated inside the header ({len(data)} bytes)")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[code])
    expected = header + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(data) < expected:
        raise IdxFormatError(
            f"{source}: truncated: {len(data)} bytes, expected {expected} for shape {dims}"
        )
    if len(data) > expected:
        raise IdxFormatError(
            f"{source}: {len(data) - expected} unexpected trailing bytes after shape {dims}"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    return array.astype(dtype.newbyteorder("="), copy=False)


def read_idx(
    path: str | os.PathLike[str], expected_md5: str | None = None, *, md5_of_file: bool = False
) -> np.ndarray:
    """Read an IDX file (raw or gzip, detected by content) into a read-only array.

    Checks the magic number (``00 00``, a known type code, a nonzero rank), that the size is
    exactly header + prod(dims) * itemsize, and, when ``expected_md5`` is given, the MD5 of the
    *uncompressed* bytes, or with ``md5_of_file`` that of the file as stored (a ``.gz`` as
    published; a file that is not gzip-compressed then fails). Raises :class:`IdxFormatError`,
    :class:`ChecksumError` or :class:`MissingDataError`, each naming the file.
    """
    path = Path(path)
    data = _read_bytes(path)
    if expected_md5 is not None and md5_of_file:
        stored = path.read_bytes()
        if stored[:2] != _GZIP_MAGIC:
            raise ChecksumError(
                f"{path}: not gzip-compressed, but the known MD5 is of the published .gz file; "
                f"put the .gz file there as downloaded"
            )
        _check_md5(path, "the file", _md5(stored), expected_md5)
    elif expected_md5 is not None:
        _check_md5(path, "the uncompressed content", _md5(data), expected_md5)
    return _parse_idx(data, str(path))


def _check_md5(path: Path, what: str, actual: str, expected: str) -> None:
    if actual != expected:
        raise ChecksumError(
            f"{path}: MD5 of {what} is {actual}, expected {expected} "
            "(the file is corrupt or not the original; delete it to download it again)"
        )


# ---------------------------------------------------------------------------------------------
# MNIST and Fashion-MNIST: four IDX files each, and their download

#: Role -> base file name (without ``.gz``); Fashion-MNIST uses the same names.
MNIST_FILES: dict[str, str] = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

#: MD5 of each file's *uncompressed* content (the original LeCun files).
MNIST_MD5: dict[str, str] = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}

#: Public mirrors serving ``<name>.gz``; tried in order.
MNIST_MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)

#: MD5 of each ``<name>.gz`` file as Zalando Research publishes them (their checksums are of
#: the compressed files, so Fashion-MNIST's files are kept gzipped).
FASHION_MNIST_MD5: dict[str, str] = {
    "train-images-idx3-ubyte": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte": "bb300cfdad3c16e7a12a480ee83cd310",
}

FASHION_MNIST_MIRRORS: tuple[str, ...] = (
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
)

#: Validation images carved from the 60,000 training images.
MNIST_VAL_SIZE = 10_000

DOWNLOAD_TIMEOUT_S = 10.0
_CHUNK = 1 << 16


@dataclass(frozen=True)
class IdxSource:
    """A dataset stored as MNIST's four IDX files, in ``<data dir>/<name>/``.

    ``md5``: file base name -> expected MD5, of the uncompressed content or, with
    ``md5_of_gzip``, of the published ``.gz`` file. ``mirrors``: URL prefixes serving
    ``<name>.gz``, tried in order. ``home``: where the files are described (for messages).
    """

    name: str
    title: str
    md5: dict[str, str]
    md5_of_gzip: bool
    mirrors: tuple[str, ...]
    home: str

    def read(self, path: Path, name: str) -> np.ndarray:
        """One of the four files, checked against its MD5."""
        if self.md5_of_gzip:
            return read_idx(path, self.md5[name], md5_of_file=True)
        return read_idx(path, self.md5[name])


MNIST = IdxSource(
    "mnist", "MNIST", MNIST_MD5, False, MNIST_MIRRORS, "http://yann.lecun.com/exdb/mnist/"
)
FASHION_MNIST = IdxSource(
    "fashion_mnist",
    "Fashion-MNIST",
    FASHION_MNIST_MD5,
    True,
    FASHION_MNIST_MIRRORS,
    "https://github.com/zalandoresearch/fashion-mnist",
)
IDX_SOURCES: dict[str, IdxSource] = {source.name: source for source in (MNIST, FASHION_MNIST)}


def _find(folder: Path, name: str) -> Path | None:
    """The file for ``name`` in ``folder``: raw preferred (no decompression), else ``.gz``."""
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _missing_message(
    source: IdxSource, folder: Path, missing: list[str], mirrors: Sequence[str]
) -> str:
    names = ", ".join(f"{n}(.gz)" for n in missing)
    where = " or ".join(mirrors) if mirrors else source.home
    gzipped = "gzipped, as published" if source.md5_of_gzip else "gzipped or not"
    return (
        f"{source.title} files missing from {folder}: {names}. Put the four IDX files "
        f"({gzipped}) in {folder}/ (they are served at {where}), or point --data-dir or "
        f"${DATA_DIR_ENV} at a folder whose {source.name}/ subfolder holds them."
    )


class _Progress:
    """A one-line stderr progress bar (stdlib only: the core must not import rich)."""

    def __init__(self, label: str, total: int | None) -> None:
        self.label, self.total, self.done, self._last = label, total, 0, -1.0

    def update(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if now - self._last < 0.1 and (self.total is None or self.done < self.total):
            return  # redraw at most ten times a second
        self._last = now
        mb = self.done / 1e6
        if self.total:
            frac = min(self.done / self.total, 1.0)
            bar = "#" * int(30 * frac)
            line = f"{self.label} [{bar:<30}] {100 * frac:5.1f}% {mb:.1f}/{self.total / 1e6:.1f} MB"
        else:
            line = f"{self.label} {mb:.1f} MB"
        sys.stderr.write("\r" + line)
        sys.stderr.flush()

    def close(self) -> None:
        sys.stderr.write("\n")
        sys.stderr.flush()


def _download_one(source: IdxSource, url: str, folder: Path, name: str, timeout: float) -> Path:
    """Fetch ``url`` into ``folder`` atomically (temp file, MD5 check, rename); the final path."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=folder)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            length = resp.headers.get("Content-Length") if resp.headers else None
            progress = _Progress(f"downloading {name}", int(length) if length else None)
            try:
                while chunk := resp.read(_CHUNK):
                    out.write(chunk)
                    progress.update(len(chunk))
            finally:
                progress.close()
        head = tmp.read_bytes()[:2]
        final = folder / (f"{name}.gz" if head == _GZIP_MAGIC else name)
        source.read(tmp, name)
        os.replace(tmp, final)
        return final
    finally:
        tmp.unlink(missing_ok=True)


def _unreachable(err: OSError) -> bool:
    """Whether ``err`` means the mirror cannot be reached at all (so skip it for other files),
    as opposed to a reachable mirror lacking one file (HTTP 404, a missing ``file://`` path)."""
    reason: object = err
    if isinstance(err, urllib.error.URLError) and not isinstance(err, urllib.error.HTTPError):
        reason = err.reason
    return isinstance(reason, (TimeoutError, ConnectionError, socket.gaierror))


def ensure_idx_files(
    source: IdxSource,
    data_dir: Path,
    mirrors: Sequence[str] | None = None,
    download: bool = True,
    *,
    timeout: float = DOWNLOAD_TIMEOUT_S,
) -> Path:
    """Make sure the four IDX files of ``source`` are in ``<data_dir>/<source.name>/``; return
    that folder.

    A file counts as present as ``<name>`` or ``<name>.gz``. If ``data_dir`` itself holds all
    four files (the user pointed at the dataset's folder), it is used as is. Missing files are
    fetched from ``<mirror><name>.gz`` for each of ``mirrors`` (default ``source.mirrors``) in
    turn (``timeout`` seconds per connection; a mirror that cannot be reached is not retried for
    the other files), written to a temp file, MD5-checked, then renamed into place. Raises
    :class:`MissingDataError` naming the files and the folder when they are absent and cannot
    be downloaded. Existing files are not checksummed here; :func:`load_idx_dataset` checks
    every file it reads.
    """
    mirrors = source.mirrors if mirrors is None else mirrors
    data_dir = Path(data_dir).expanduser()
    folder = data_dir / source.name
    names = list(MNIST_FILES.values())
    if not folder.is_dir() and all(_find(data_dir, n) for n in names):
        return data_dir
    missing = [n for n in names if _find(folder, n) is None]
    if not missing:
        return folder
    if not download or not mirrors:
        raise MissingDataError(_missing_message(source, folder, missing, mirrors))
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise MissingDataError(
            _missing_message(source, folder, missing, mirrors)
            + f" (cannot create the folder: {err})"
        ) from None
    failures: list[str] = []
    unreachable: set[str] = set()
    for name in missing:
        for mirror in mirrors:
            if mirror in unreachable:
                continue
            url = mirror.rstrip("/") + f"/{name}.gz"
            try:
                _download_one(source, url, folder, name, timeout)
                break
            except DataError as err:  # reached the mirror but got a bad file
                failures.append(f"{url}: {err}")
            except OSError as err:  # URLError, timeouts, refused connections are OSErrors
                if _unreachable(err):
                    unreachable.add(mirror)
                failures.append(f"{url}: {err}")
    still_missing = [n for n in names if _find(folder, n) is None]
    if still_missing:
        detail = "; ".join(failures)
        raise MissingDataError(
            _missing_message(source, folder, still_missing, mirrors) + f" Download failed: {detail}"
        )
    return folder


def ensure_mnist(
    data_dir: Path,
    mirrors: Sequence[str] = MNIST_MIRRORS,
    download: bool = True,
    *,
    timeout: float = DOWNLOAD_TIMEOUT_S,
) -> Path:
    """:func:`ensure_idx_files` of :data:`MNIST`: the folder holding its four files."""
    return ensure_idx_files(MNIST, data_dir, mirrors, download, timeout=timeout)


@dataclass(frozen=True)
class _IdxArrays:
    train_images: np.ndarray  # [60000, 28, 28] uint8
    train_labels: np.ndarray  # [60000] uint8
    test_images: np.ndarray  # [10000, 28, 28] uint8
    test_labels: np.ndarray  # [10000] uint8


def _stamp(source: IdxSource, folder: Path) -> tuple[tuple[str, int, int], ...]:
    """(path, size, mtime) of the files in use, so a replaced file is not served from cache."""
    stamps = []
    for name in MNIST_FILES.values():
        path = _find(folder, name)
        if path is None:
            raise MissingDataError(_missing_message(source, folder, [name], source.mirrors))
        st = path.stat()
        stamps.append((str(path), st.st_size, st.st_mtime_ns))
    return tuple(stamps)


@functools.lru_cache(maxsize=2)
def _read_idx_folder(
    dataset: str, folder: Path, stamp: tuple[tuple[str, int, int], ...]
) -> _IdxArrays:
    """Parse and checksum the four files once per process (keyed on the resolved folder)."""
    source = IDX_SOURCES[dataset]
    arrays = {
        role: source.read(Path(path), name)
        for role, name, (path, _, _) in zip(MNIST_FILES, MNIST_FILES.values(), stamp, strict=True)
    }
    for part in ("train", "test"):
        images, labels = arrays[f"{part}_images"], arrays[f"{part}_labels"]
        if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
            raise DataError(
                f"{folder}: {part} images {images.shape} and labels {labels.shape} do not match"
            )
    return _IdxArrays(**arrays)


def load_idx_dataset(
    source: IdxSource,
    data_dir: Path,
    seed: int,
    *,
    val_size: int = MNIST_VAL_SIZE,
    mirrors: Sequence[str] | None = None,
    download: bool = True,
) -> DatasetSplits:
    """The grey levels / 255 of ``source``'s four IDX files as ``[N, 1, H, W]`` float32 splits.

    Validation: ``val_size`` (10,000) images drawn from the training images by
    ``numpy.random.default_rng(seed).permutation``; train: the others (50,000); test: the
    t10k images. Files come from :func:`ensure_idx_files`; parsed arrays are cached per process.
    """
    folder = ensure_idx_files(source, data_dir, mirrors=mirrors, download=download).resolve()
    arrays = _read_idx_folder(source.name, folder, _stamp(source, folder))
    n = arrays.train_images.shape[0]
    if not 0 < val_size < n:
        raise DataError(f"{folder}: cannot carve {val_size} validation images from {n}")
    perm = np.random.default_rng(seed).permutation(n)
    val_idx, train_idx = perm[:val_size], perm[val_size:]
    test_idx = np.arange(arrays.test_images.shape[0])
    return DatasetSplits(
        name=source.name,
        train=_split(arrays.train_images, arrays.train_labels, train_idx, 255.0),
        val=_split(arrays.train_images, arrays.train_labels, val_idx, 255.0),
        test=_split(arrays.test_images, arrays.test_labels, test_idx, 255.0),
    )


def load_mnist(
    data_dir: Path,
    seed: int,
    *,
    val_size: int = MNIST_VAL_SIZE,
    mirrors: Sequence[str] = MNIST_MIRRORS,
    download: bool = True,
) -> DatasetSplits:
    """MNIST grey levels / 255 as ``[N, 1, 28, 28]`` float32 splits
    (:func:`load_idx_dataset` of :data:`MNIST`)."""
    return load_idx_dataset(
        MNIST, data_dir, seed, val_size=val_size, mirrors=mirrors, download=download
    )


# ---------------------------------------------------------------------------------------------
# A user's image file (data.dataset: array)


def _array_stamp(path: Path) -> tuple[str, int, int]:
    try:
        st = path.stat()
    except OSError:
        return (str(path), -1, -1)  # read_image_arrays names what is wrong
    return (str(path), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=2)
def _read_array_file(stamp: tuple[str, int, int]):
    """Read and check the file once per process (keyed on path, size and mtime)."""
    return read_image_arrays(stamp[0])


def load_array_splits(
    path: str | os.PathLike[str], seed: int, val_fraction: float, test_fraction: float
) -> DatasetSplits:
    """The images of a user's ``.npz`` / ``.npy`` file (:mod:`infovae_core.datafiles`) as
    ``[N, C, H, W]`` float32 splits in [0, 1] (``uint8`` divided by 255, floats as they are).

    A file with its own ``train_images`` / ``val_images`` / ``test_images`` keeps them. One
    pool of ``images`` is split by ``numpy.random.default_rng(seed).permutation``: the first
    ``round(val_fraction * N)`` images validate, the next ``round(test_fraction * N)`` test,
    the rest train (:func:`infovae_core.datafiles.split_sizes`); the split depends on the file
    and these three settings only. Labels are kept when the file has them, else None. Raises
    :class:`ArrayFileError` naming the file and what is wrong with it.
    """
    resolved = Path(path).expanduser().resolve()
    arrays = _read_array_file(_array_stamp(resolved))
    sizes = check_split(arrays, val_fraction, test_fraction)
    labels = arrays.labels
    if arrays.has_own_splits:
        parts = {
            name: (arrays.images[name], None if labels is None else labels[name])
            for name in SPLIT_NAMES
        }
        index = {name: np.arange(sizes[name]) for name in SPLIT_NAMES}
    else:
        pool = (arrays.images[POOL], None if labels is None else labels[POOL])
        parts = dict.fromkeys(SPLIT_NAMES, pool)
        perm = np.random.default_rng(seed).permutation(pool[0].shape[0])
        val_idx, test_idx, train_idx = np.split(perm, [sizes["val"], sizes["val"] + sizes["test"]])
        index = {"train": train_idx, "val": val_idx, "test": test_idx}
    splits = {}
    for name in SPLIT_NAMES:
        images, split_labels = parts[name]
        scale = 255.0 if images.dtype == np.uint8 else 1.0
        splits[name] = _split(images, split_labels, index[name], scale)
    return DatasetSplits(name="array", **splits)


def load_dataset(config: DataConfig) -> DatasetSplits:
    """The splits named by ``config.dataset`` as grey levels in [0, 1] (not binarised).

    ``digits``: :func:`load_digits_splits`; ``mnist`` and ``fashion_mnist``:
    :func:`load_idx_dataset` from ``resolve_data_dir(config.data_dir)``, downloading missing
    files only when ``config.download``; ``array``: :func:`load_array_splits` of
    ``config.path``. ``config.seed`` fixes the split. ``config.train_size`` keeps a seeded
    subset of the training split (:func:`apply_train_size`); validation and test are whole.
    """
    if config.dataset == "digits":
        splits = load_digits_splits(config.seed)
    elif config.dataset in IDX_SOURCES:
        splits = load_idx_dataset(
            IDX_SOURCES[config.dataset],
            resolve_data_dir(config.data_dir),
            config.seed,
            download=config.download,
        )
    elif config.dataset == "array" and config.path:
        splits = load_array_splits(
            config.path, config.seed, config.val_fraction, config.test_fraction
        )
    else:
        raise ConfigError(
            f"data.dataset: must be one of ['digits', 'mnist', 'fashion_mnist', 'array'] (array "
            f"with data.path), got {config.dataset!r}"
        )
    return apply_train_size(splits, config)


#: Second word of the subset generator's seed, so the subset's stream differs from the split's
#: (``default_rng(seed)``) for the same ``data.seed``.
_SUBSET_STREAM = 1


def train_subset_indices(n_train: int, train_size: int, seed: int) -> np.ndarray:
    """Sorted indices of ``train_size`` of ``n_train`` training images:
    ``sort(default_rng([seed, 1]).permutation(n_train)[:train_size])``.

    A function of (``n_train``, ``train_size``, ``seed``) only; for one seed, the subset of a
    smaller size is contained in that of a larger one (both are prefixes of one permutation).
    Raises :class:`ConfigError` naming ``data.train_size`` when it is < 2 or > ``n_train``.
    """
    if train_size < 2:
        raise ConfigError(f"data.train_size: must be >= 2 or null, got {train_size}")
    if train_size > n_train:
        raise ConfigError(
            f"data.train_size: {train_size} is more than the {n_train} images of the training split"
        )
    perm = np.random.default_rng([seed, _SUBSET_STREAM]).permutation(n_train)
    return np.sort(perm[:train_size])


def apply_train_size(splits: DatasetSplits, config: DataConfig) -> DatasetSplits:
    """``splits`` with the training split cut to ``config.train_size`` images chosen by
    :func:`train_subset_indices` (seeded by ``config.seed``); ``splits`` itself when
    ``train_size`` is None. Validation and test are the same objects, untouched.

    ``splits`` must be the whole splits of ``config`` (as :func:`load_dataset` builds them
    before the cut): the sweep loads those once and cuts per trial, so a searched
    ``data.train_size`` shares one copy of the dataset.
    """
    if config.train_size is None:
        return splits
    index = torch.from_numpy(
        train_subset_indices(len(splits.train), config.train_size, config.seed)
    ).to(splits.train.images.device)
    labels = splits.train.labels
    train = Split(
        images=splits.train.images[index], labels=None if labels is None else labels[index]
    )
    return DatasetSplits(name=splits.name, train=train, val=splits.val, test=splits.test)


# ---------------------------------------------------------------------------------------------
# Binarisation


def binarize(images: Tensor, generator: torch.Generator) -> Tensor:
    """Bernoulli sample of every pixel: ``x_b = 1[u < p]``, ``u ~ U(0, 1)``, so P(x_b = 1) = p.

    ``images``: grey levels p in [0, 1], any shape; the result has the same shape, dtype and
    device with values in {0, 1}. ``generator`` must live on ``images.device``; the same
    generator state gives the same sample.
    """
    u = torch.rand(images.shape, generator=generator, dtype=images.dtype, device=images.device)
    return (u < images).to(images.dtype)


def static_binarize(splits: DatasetSplits, seed: int) -> DatasetSplits:
    """Binarise every split once (train, then val, then test from one generator seeded by
    ``seed``): the fixed binarisation used for ``binarize='static'``. Labels are kept."""
    generator = torch.Generator(device=splits.train.images.device).manual_seed(seed)

    def one(split: Split) -> Split:
        return Split(images=binarize(split.images, generator), labels=split.labels)

    return DatasetSplits(
        name=splits.name, train=one(splits.train), val=one(splits.val), test=one(splits.test)
    )
