"""PNG grids written with the standard library, read back by an independent chunk parser."""

from __future__ import annotations

import struct
import zlib

import numpy as np

from sweep.images import encode_png, image_grid


def _decode_grey_png(data: bytes) -> np.ndarray:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    position, idat, size = 8, b"", None
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        body = data[position + 8 : position + 8 + length]
        (crc,) = struct.unpack(">I", data[position + 8 + length : position + 12 + length])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF, kind
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", body[:10])
            assert (depth, colour) == (8, 0)
            size = (height, width)
        elif kind == b"IDAT":
            idat += body
        position += 12 + length
    raw = zlib.decompress(idat)
    height, width = size
    rows = [raw[r * (width + 1) : (r + 1) * (width + 1)] for r in range(height)]
    assert all(row[0] == 0 for row in rows)  # filter type none
    return np.array([list(row[1:]) for row in rows], dtype=np.uint8)


def test_png_round_trips_the_pixels_at_scale():
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    decoded = _decode_grey_png(encode_png(grey, scale=2))
    assert decoded.shape == (6, 8)
    assert (decoded[::2, ::2] == grey).all() and (decoded[1::2, 1::2] == grey).all()


def test_grid_places_each_image_in_its_tile_with_padding():
    images = np.stack([np.full((1, 2, 2), v) for v in (0.0, 0.5, 1.0)])
    grid = image_grid(images, columns=2, padding=1)
    assert grid.shape == (7, 7)
    assert (grid[1:3, 4:6] == 128).all() and (grid[4:6, 1:3] == 255).all()
    assert (grid[0] == 0).all() and (grid[4:6, 4:6] == 0).all()  # padding and the empty tile
