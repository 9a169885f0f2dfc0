"""A tiny PNG reader for tests: size and pixels of 8-bit RGB or RGBA, non-interlaced images."""

from __future__ import annotations

import struct
import zlib

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {2: 3, 6: 4}  # colour type: RGB, RGBA


def read_png(data: bytes) -> tuple[int, int, list[bytes]]:
    """C{(width, height, rows)}: each row the unfiltered bytes of its pixels. Raises ValueError."""
    if not data.startswith(_SIGNATURE):
        raise ValueError("not a PNG file")
    position, header, compressed = len(_SIGNATURE), None, []
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        chunk = data[position + 8 : position + 8 + length]
        position += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", chunk)
        elif kind == b"IDAT":
            compressed.append(chunk)
        elif kind == b"IEND":
            break
    if header is None:
        raise ValueError("no IHDR chunk")
    width, height, depth, colour, _, _, interlace = header
    if depth != 8 or colour not in _CHANNELS or interlace:
        raise ValueError(f"unsupported PNG: depth {depth}, colour type {colour}, interlace {interlace}")
    size = _CHANNELS[colour]
    raw = zlib.decompress(b"".join(compressed))
    stride = width * size
    rows: list[bytes] = []
    previous = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        row = _unfilter(raw[start], bytearray(raw[start + 1 : start + 1 + stride]), previous, size)
        rows.append(bytes(row))
        previous = row
    return width, height, rows


def _unfilter(kind: int, row: bytearray, above: bytearray, size: int) -> bytearray:
    if kind == 0:
        return row
    for i in range(len(row)):
        left = row[i - size] if i >= size else 0
        up = above[i]
        if kind == 1:
            row[i] = (row[i] + left) & 0xFF
        elif kind == 2:
            row[i] = (row[i] + up) & 0xFF
        elif kind == 3:
            row[i] = (row[i] + (left + up) // 2) & 0xFF
        elif kind == 4:
            corner = above[i - size] if i >= size else 0
            guess = left + up - corner
            distances = (abs(guess - left), abs(guess - up), abs(guess - corner))
            row[i] = (row[i] + (left, up, corner)[distances.index(min(distances))]) & 0xFF
        else:
            raise ValueError(f"unknown PNG filter {kind}")
    return row


def colours(width: int, rows: list[bytes]) -> set[bytes]:
    """The distinct pixel values (RGB or RGBA bytes) of an image."""
    size = len(rows[0]) // width if rows else 3
    return {row[x : x + size] for row in rows for x in range(0, len(row), size)}
