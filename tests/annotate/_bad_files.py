"""Files that are not readable images, for the annotation server's fault tests: each a function writing one
into a folder and returning its name."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_header(width: int, height: int, bit_depth: int = 8, colour_type: int = 2) -> bytes:
    """The PNG signature and an IHDR chunk claiming ``width`` x ``height``."""
    return PNG_SIGNATURE + png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0))


def png_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def noise(height: int = 48, width: int = 64, seed: int = 0) -> np.ndarray:
    """(H, W, 3) uint8 noise: a PNG of it is mostly pixel data, so a cut lands inside the pixels."""
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def truncated_png(folder: Path, name: str = "truncated.png") -> str:
    """A PNG with a valid header whose pixel data stops at 60 %: the listing reads it, decoding fails."""
    data = png_bytes(noise())
    (folder / name).write_bytes(data[: int(len(data) * 0.6)])
    return name


def corrupt_png(folder: Path, name: str = "corrupt.png") -> str:
    """The PNG signature followed by garbage: no header can be read."""
    (folder / name).write_bytes(PNG_SIGNATURE + bytes(range(256)) * 4)
    return name


def huge_header_png(folder: Path, name: str = "huge_header.png") -> str:
    """A PNG header claiming 12000 x 12000 pixels, and no pixel data."""
    (folder / name).write_bytes(png_header(12000, 12000) + png_chunk(b"IEND", b""))
    return name


def bomb_png(folder: Path, name: str = "bomb.png", side: int = 20000) -> str:
    """A decompression bomb: a valid 1-bit ``side`` x ``side`` PNG (400 M pixels, 1.2 GB as RGB) of about 50 kB."""
    row = b"\x00" + b"\x00" * ((side + 7) // 8)
    compressor = zlib.compressobj(9)
    data = b"".join(compressor.compress(row * 1000) for _ in range(side // 1000)) + compressor.flush()
    (folder / name).write_bytes(png_header(side, side, bit_depth=1, colour_type=0) + png_chunk(b"IDAT", data)
                                + png_chunk(b"IEND", b""))
    return name


def zero_byte_png(folder: Path, name: str = "empty.png") -> str:
    (folder / name).write_bytes(b"")
    return name


def text_as_jpeg(folder: Path, name: str = "notes.jpg") -> str:
    """A text file with an image suffix."""
    (folder / name).write_text("not an image, only a name that says so\n")
    return name


UNREADABLE = (corrupt_png, huge_header_png, bomb_png, zero_byte_png, text_as_jpeg)
"""Files whose header cannot be read: the server lists them as unavailable and starts."""
