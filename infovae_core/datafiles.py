"""A user's image file (``.npz`` / ``.npy``) read and checked with NumPy alone, and the errors
of every dataset file.

Nothing here imports torch, so that ``infovae-sweep validate`` checks a study's file quickly;
:mod:`infovae_core.data` turns the checked arrays into tensors and splits.

Accepted layouts (``numpy.load(path, allow_pickle=False)``: nothing is ever unpickled):

- ``.npz`` with ``images`` and optionally ``labels``: one pool, split by the study's seeded
  fractions (:func:`split_sizes`);
- ``.npz`` with ``train_images``, ``val_images``, ``test_images`` and optionally all three
  ``*_labels``: the file's own splits;
- ``.npy``: one array of images, no labels.

Images are ``N x H x W`` (one channel) or ``N x C x H x W``, ``uint8`` (grey levels 0..255) or
floating point in [0, 1]; labels are one integer per image. Anything else raises
:class:`ArrayFileError` with one line naming the file, the array and what is wrong.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "DataError",
    "MissingDataError",
    "ChecksumError",
    "IdxFormatError",
    "ArrayFileError",
    "ImageArrays",
    "SPLIT_NAMES",
    "check_split",
    "read_image_arrays",
    "split_sizes",
]


class DataError(ValueError):
    """A dataset cannot be loaded; the message names the file or setting at fault."""


class MissingDataError(DataError):
    """Dataset files are absent (and could not be downloaded)."""


class ChecksumError(DataError):
    """A file's content does not have the expected MD5."""


class IdxFormatError(DataError):
    """A file is not a well-formed IDX file (wrong magic, truncated, trailing bytes, bad gzip)."""


class ArrayFileError(DataError):
    """A user's image file is missing, unreadable, or holds arrays of the wrong kind."""


SPLIT_NAMES: tuple[str, ...] = ("train", "val", "test")
#: The key of the pool of images a seeded split divides (a file without its own splits).
POOL = "all"
_LAYOUTS = (
    "expected 'images' (and optionally 'labels'), or 'train_images', 'val_images', "
    "'test_images' (and optionally all three '*_labels')"
)
#: Smallest images the convolutional encoder and decoder take (each stride-2 layer halves a side).
MIN_SIDE = 2
#: Images per split: the divergence and the evaluation need two codes at least.
MIN_SPLIT = 2


@dataclass(frozen=True, eq=False)
class ImageArrays:
    """The checked arrays of one file.

    ``images``: part -> ``[N, C, H, W]`` ``uint8`` or float array; the parts are ``train``,
    ``val``, ``test`` (the file's own splits) or ``all`` (one pool for a seeded split).
    ``labels``: part -> ``[N]`` int64, or None when the file has no labels.
    """

    path: str
    images: dict[str, np.ndarray]
    labels: dict[str, np.ndarray] | None

    @property
    def has_own_splits(self) -> bool:
        return POOL not in self.images

    @property
    def image_shape(self) -> tuple[int, int, int]:
        c, h, w = next(iter(self.images.values())).shape[1:]
        return (int(c), int(h), int(w))

    def split_sizes(self, val_fraction: float, test_fraction: float) -> dict[str, int]:
        """Images per split: the file's own, or those of :func:`split_sizes` of the pool."""
        if self.has_own_splits:
            return {name: int(self.images[name].shape[0]) for name in SPLIT_NAMES}
        n = int(self.images[POOL].shape[0])
        return dict(zip(SPLIT_NAMES, split_sizes(n, val_fraction, test_fraction), strict=True))


def split_sizes(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int, int]:
    """(train, val, test) sizes of a seeded split of ``n`` images: validation and test rounded
    to the nearest image (``round(fraction * n)``), train the rest (as for ``digits``)."""
    n_val = round(val_fraction * n)
    n_test = round(test_fraction * n)
    return n - n_val - n_test, n_val, n_test


def _fail(path: Path, message: str) -> ArrayFileError:
    return ArrayFileError(f"{path}: {message}")


def _open(path: Path) -> dict[str, np.ndarray]:
    """Every array of the file by name (``images`` for a ``.npy``), never unpickling."""
    if not path.exists():
        raise _fail(path, "file not found (data.path names a .npz or .npy file of images)")
    if path.is_dir():
        raise _fail(path, "is a folder, not a .npz or .npy file")
    try:
        loaded = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
        raise _fail(
            path, f"not a NumPy .npz or .npy file of numeric arrays ({_reason(err)})"
        ) from None
    if isinstance(loaded, np.ndarray):
        return {"images": loaded}
    arrays: dict[str, np.ndarray] = {}
    with loaded:
        for key in loaded.files:
            try:
                arrays[key] = loaded[key]
            except ValueError as err:  # object arrays need pickle, which stays off
                raise _fail(path, f"{key}: cannot be read ({_reason(err)})") from None
            except (OSError, EOFError, zipfile.BadZipFile) as err:
                raise _fail(path, f"{key}: corrupt ({_reason(err)})") from None
    return arrays


def _reason(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    if "pickle" in text:
        return "it holds Python objects, which are never unpickled; save numeric arrays"
    return text


def _check_images(path: Path, key: str, images: np.ndarray) -> np.ndarray:
    """``images`` as ``[N, C, H, W]``, or an error naming what is wrong."""
    if images.dtype != np.uint8 and not np.issubdtype(images.dtype, np.floating):
        raise _fail(path, f"{key}: dtype {images.dtype}; use uint8 (0-255) or float in [0, 1]")
    if images.ndim not in (3, 4):
        raise _fail(path, f"{key}: shape {images.shape}; images are N x H x W or N x C x H x W")
    if images.ndim == 3:
        images = images[:, None]
    n, c, h, w = images.shape
    if c > 4 and w <= 4:
        raise _fail(
            path,
            f"{key}: shape {images.shape} looks channels-last (N x H x W x C); save "
            "N x C x H x W, e.g. numpy.moveaxis(images, -1, 1)",
        )
    if n == 0:
        raise _fail(path, f"{key}: holds no images")
    if h < MIN_SIDE or w < MIN_SIDE:
        raise _fail(
            path,
            f"{key}: images of {h} x {w} pixels; the encoders and decoders take images of "
            f"at least {MIN_SIDE} x {MIN_SIDE} (any size above, any number of channels)",
        )
    if images.dtype != np.uint8:
        if np.isnan(images).any():
            raise _fail(path, f"{key}: contains NaN")
        if np.isinf(images).any():
            raise _fail(path, f"{key}: contains infinite values")
        low, high = float(images.min()), float(images.max())
        if low < 0.0 or high > 1.0:
            raise _fail(
                path,
                f"{key}: float values from {low:g} to {high:g}, outside [0, 1]; scale them to "
                "[0, 1] or save uint8 grey levels 0-255",
            )
    return images


def _check_labels(path: Path, key: str, labels: np.ndarray, n_images: int, images: str):
    if not np.issubdtype(labels.dtype, np.integer):
        raise _fail(path, f"{key}: dtype {labels.dtype}; labels are integers (one per image)")
    if labels.ndim != 1:
        raise _fail(path, f"{key}: shape {labels.shape}; labels are one integer per image")
    if labels.shape[0] != n_images:
        raise _fail(path, f"{key}: {labels.shape[0]} labels for the {n_images} {images}")
    return labels.astype(np.int64, copy=False)


def read_image_arrays(path: str | os.PathLike[str]) -> ImageArrays:
    """Read and check ``path`` (see the module docstring for the layouts).

    Raises :class:`ArrayFileError` naming the file (and the array) for a missing or unreadable
    file, unknown or missing arrays, wrong shapes or dtypes, NaN or out-of-range values, labels
    whose length differs from the images, splits of different image sizes, and a split of
    fewer than two images.
    """
    path = Path(path).expanduser()
    arrays = _open(path)
    if not arrays:
        raise _fail(path, f"holds no arrays; {_LAYOUTS}")
    if "images" in arrays or not any(f"{s}_images" in arrays for s in SPLIT_NAMES):
        parts = {POOL: ("images", "labels")}
    else:
        parts = {s: (f"{s}_images", f"{s}_labels") for s in SPLIT_NAMES}
    allowed = {key for pair in parts.values() for key in pair}
    unknown = sorted(set(arrays) - allowed)
    if unknown:
        raise _fail(path, f"unknown array(s) {', '.join(unknown)}; {_LAYOUTS}")
    missing = [image_key for image_key, _ in parts.values() if image_key not in arrays]
    if missing:
        raise _fail(path, f"missing array(s) {', '.join(missing)}; {_LAYOUTS}")
    label_keys = [label_key for _, label_key in parts.values()]
    present = [key for key in label_keys if key in arrays]
    if present and len(present) != len(label_keys):
        absent = [key for key in label_keys if key not in arrays]
        raise _fail(
            path, f"has {', '.join(present)} but not {', '.join(absent)}; label all splits or none"
        )

    images: dict[str, np.ndarray] = {}
    labels: dict[str, np.ndarray] = {}
    for part, (image_key, label_key) in parts.items():
        images[part] = _check_images(path, image_key, arrays[image_key])
        if present:
            n = images[part].shape[0]
            labels[part] = _check_labels(path, label_key, arrays[label_key], n, image_key)
    shapes = {part: x.shape[1:] for part, x in images.items()}
    first = next(iter(shapes))
    for part, shape in shapes.items():
        if shape != shapes[first]:
            raise _fail(
                path,
                f"{parts[part][0]}: images of shape {shape} (C, H, W) but {parts[first][0]} "
                f"holds {shapes[first]}; every split needs one image shape",
            )
    if POOL not in images:
        for part in SPLIT_NAMES:
            if images[part].shape[0] < MIN_SPLIT:
                raise _fail(
                    path,
                    f"{parts[part][0]}: {images[part].shape[0]} image(s); each split needs at "
                    f"least {MIN_SPLIT}",
                )
    return ImageArrays(path=str(path), images=images, labels=labels or None)


def check_split(arrays: ImageArrays, val_fraction: float, test_fraction: float) -> dict[str, int]:
    """The split sizes of ``arrays`` under the study's fractions (:meth:`ImageArrays.
    split_sizes`); :class:`ArrayFileError` when a seeded split leaves a split under two
    images."""
    sizes = arrays.split_sizes(val_fraction, test_fraction)
    if not arrays.has_own_splits and min(sizes.values()) < MIN_SPLIT:
        n = sum(sizes.values())
        counts = "/".join(str(sizes[s]) for s in SPLIT_NAMES)
        raise ArrayFileError(
            f"{arrays.path}: images: {n} images split {counts} (train/val/test) with "
            f"data.val_fraction {val_fraction:g} and data.test_fraction {test_fraction:g}; "
            f"each split needs at least {MIN_SPLIT} images"
        )
    return sizes
