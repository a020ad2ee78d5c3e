"""Small greyscale PNG grids of images, written with the standard library (zlib) alone."""

from __future__ import annotations

import math
import struct
import zlib

import numpy as np


def image_grid(images: np.ndarray, columns: int | None = None, padding: int = 1) -> np.ndarray:
    """Tile ``images`` [N, 1, H, W] (or [N, H, W]) with values in [0, 1] into one [rows, cols]
    uint8 array, ``padding`` black pixels between tiles."""
    array = np.asarray(images, dtype=np.float32)
    if array.ndim == 4:
        array = array[:, 0]
    if array.ndim != 3 or array.shape[0] == 0:
        raise ValueError(f"expected [N, 1, H, W] or [N, H, W] images, got shape {array.shape}")
    n, height, width = array.shape
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    grid = np.zeros(
        (rows * (height + padding) + padding, columns * (width + padding) + padding), np.uint8
    )
    pixels = np.clip(np.rint(array * 255.0), 0, 255).astype(np.uint8)
    for index in range(n):
        r, c = divmod(index, columns)
        top, left = padding + r * (height + padding), padding + c * (width + padding)
        grid[top : top + height, left : left + width] = pixels[index]
    return grid


def encode_png(grey: np.ndarray, scale: int = 1) -> bytes:
    """PNG bytes of a 2-D uint8 array (8-bit greyscale), each pixel repeated ``scale`` times."""
    if grey.ndim != 2 or grey.dtype != np.uint8:
        raise ValueError("encode_png takes a 2-D uint8 array")
    if scale > 1:
        grey = np.kron(grey, np.ones((scale, scale), dtype=np.uint8))
    height, width = grey.shape
    # Each scanline starts with filter type 0 (none).
    raw = b"".join(b"\x00" + grey[row].tobytes() for row in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )
