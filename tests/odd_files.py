"""Builders of the entries a data folder collected from the wild holds: odd images (16-bit, palette transparency,
CMYK, EXIF-rotated, animated, corrupt EXIF) and odd file-system entries (links, FIFOs, sockets, undecodable names).

Shared by test_filter.py, test_images.py and test_predict.py."""
from __future__ import annotations

import contextlib
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

RED, BLUE, WHITE = (255, 0, 0), (0, 0, 255), (255, 255, 255)


def img(path: Path, mode: str = "RGB", size: tuple[int, int] = (20, 16), seed: int | None = None) -> Path:
    """A random-noise image (distinct per file name unless `seed` is given), format from the suffix (or PNG)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed if seed is not None else int.from_bytes(path.name.encode()[-8:], "little"))
    channels = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
    arr = rng.integers(0, 255, (size[1], size[0], channels), dtype=np.uint8)
    Image.fromarray(arr.squeeze(-1) if mode == "L" else arr, mode).save(path, None if path.suffix else "PNG")
    return path


def link(path: Path, target: str | Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, path)
    return path


def fifo(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    return path


def socket_file(path: Path) -> Path:
    """A Unix socket's file; bound from its folder, since a socket address holds only ~100 bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    cwd = os.getcwd()
    os.chdir(path.parent)
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.bind(path.name)
    finally:
        os.chdir(cwd)
    return path


def undecodable_name(folder: Path, image_bytes: bytes) -> str:
    """A file whose name is not valid UTF-8 (b'\\xff\\xfe.jpg'); returns the name as a report shows it."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(os.fsencode(folder) + b"/\xff\xfe.jpg", "wb") as f:
        f.write(image_bytes)
    return "\\xff\\xfe.jpg"


def sixteen_bit_png(path: Path) -> Path:
    """16-bit grayscale, a horizontal ramp 0..65535 (Pillow's convert('RGB') would clip most of it to white)."""
    ramp = np.linspace(0, 65535, 32).round().astype(np.uint16)
    Image.fromarray(np.tile(ramp, (16, 1))).save(path)
    return path


def palette_transparent_png(path: Path) -> Path:
    """Palette image: left half index 0 (fully transparent red), right half index 1 (opaque blue)."""
    p = Image.new("P", (20, 16), 1)
    p.putpalette([*RED, *BLUE] + [0, 0, 0] * 254)
    p.paste(0, (0, 0, 10, 16))
    p.save(path, transparency=b"\x00\xff")  # per-index alpha as bytes: Pillow's RGB conversion would warn
    return path


def cmyk_jpeg(path: Path) -> Path:
    Image.new("CMYK", (20, 16), (0, 255, 255, 0)).save(path, quality=95)  # pure red in CMYK
    return path


def exif_rotated_jpeg(path: Path) -> Path:
    """Stored 40x20 landscape, left half red, right half blue, EXIF orientation 6: displayed as 20x40 portrait
    with red on top."""
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :20] = RED
    arr[:, 20:] = BLUE
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(arr).save(path, exif=exif, quality=95)
    return path


def animated_gif(path: Path) -> Path:
    """Two frames: red, then blue."""
    frames = [Image.new("RGB", (20, 16), c) for c in (RED, BLUE)]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    return path


def corrupt_exif_jpeg(path: Path) -> Path:
    """Decodes, but its EXIF block is cut short: Pillow warns 'Corrupt EXIF data' when reading it."""
    exif = b"Exif\x00\x00II*\x00\x08\x00\x00\x00\x05\x00\x12\x01\x03\x00\x01\x00\x00\x00"
    Image.fromarray(np.full((16, 20, 3), 90, np.uint8)).save(path, exif=exif)
    return path


_opened: list[str] | None = None  # paths opened or listed while `recording_opens` is active


def _record(event: str, args: tuple) -> None:
    if _opened is not None and event in ("open", "os.scandir", "os.listdir") and isinstance(args[0], (str, bytes)):
        _opened.append(os.fsdecode(args[0]))


_hooked = False


@contextlib.contextmanager
def recording_opens() -> Iterator[list[str]]:
    """The paths this process opens or lists inside the block (a Python audit hook; it stays installed, idle)."""
    global _opened, _hooked
    if not _hooked:
        sys.addaudithook(_record)
        _hooked = True
    _opened = opened = []
    try:
        yield opened
    finally:
        _opened = None
