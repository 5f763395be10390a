"""Deterministic synthetic "cartoon characters" data set (stand-in for Kaggle's Simpsons set).

Why this exists
---------------
The experiments compare a plain CNN with a small ResNet on an ImageFolder data set of
cartoon characters.  The real Kaggle data cannot be downloaded in CI or on an offline
machine, so this module *draws* an equivalent data set.  Everything about it is chosen so
that the rest of the pipeline (validity filtering, de-duplication, the ">= 100 images per
class" rule, a 64x64 classifier) meets the same situations as with the real data.

What defines a class
--------------------
A class is a character: a fixed combination of head shape, skin/fur colour, hair style and
colour, shirt colour and accessories (glasses, hats, bow, beard, earrings, collar, tie,
...).  Those are the *only* things that carry the label.  Several classes are made
deliberately confusable so that a model must look at small details rather than at the
dominant colour: ``spiky_boy``/``spiky_girl`` differ by a bow and a shade of shirt,
``grey_boss``/``grey_clerk`` differ by glasses only, ``red_cat``/``orange_cat`` differ by a
shade of fur, and four classes share the same yellow skin.

What is nuisance
----------------
Everything else is random per image and carries no label information: canvas size and
aspect ratio, character position/scale/rotation/mirroring, facial expression and gaze,
small shape jitter, colour jitter of the class colours, cluttered backgrounds (whose
colours are often borrowed from *other* characters' palettes, so that "lots of yellow" is
not a shortcut), occluders over part of the character, an occasional small distractor
character of any class, lighting (brightness, contrast, colour cast, shading gradient),
blur, sensor noise and JPEG quality.  All knobs live in :data:`NUISANCE` so difficulty can
be tuned in one place; a ``nuisance=`` override is also accepted by
:func:`generate_dataset` and is recorded in the marker file.

Class sizes are long-tailed (:data:`BASE_COUNTS`) so that the rule "keep classes with at
least 100 valid images" keeps exactly 10 classes and drops 6.  Like the Kaggle data, a few
files are broken (truncated JPEGs, a text file named ``.jpg``) and about 1 % are exact
byte duplicates under another name; those files come *on top of* the counts so that the
keep/drop rule is not affected.

Why it is deterministic
-----------------------
The generated directory is tracked with DVC, so a fresh machine must produce exactly the
same bytes.  Each image is a pure function of ``(seed, class index, image index)``: its
RNG is ``random.Random`` seeded with a string of those (hashed with SHA-512 by Python,
independent of ``PYTHONHASHSEED``) plus a ``numpy.random.default_rng`` derived from it;
no global RNG state is used, so the number of worker processes and the order of
generation do not matter.  Byte identity does assume the same Pillow / libjpeg build (the
JPEG encoder and resamplers are part of the output), so pin Pillow in the lock file.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import time
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from io import BytesIO
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

__all__ = [
    "BASE_COUNTS",
    "CLASSES",
    "CLASS_NAMES",
    "KEEP_MIN_IMAGES",
    "MARKER_NAME",
    "NUISANCE",
    "class_counts",
    "duplicate_counts",
    "generate_dataset",
    "main",
    "render_image",
]

GENERATOR_ID = "reslab.data.synth"
#: Bump when the drawing code changes in a way that changes the bytes written.
GENERATOR_VERSION = 1
#: File written at the root of the output directory; marks it as ours (safe to regenerate).
MARKER_NAME = ".reslab_synth.json"
#: The downstream rule this data set is designed around.
KEEP_MIN_IMAGES = 100

Color = tuple[int, int, int]

# --------------------------------------------------------------------------------------
# Class definitions: the only label-bearing properties.
# --------------------------------------------------------------------------------------
_YELLOW: Color = (250, 214, 48)
_PALE: Color = (242, 204, 172)

#: One dict per class, ordered by size (largest first).  Keys:
#: head (circle|ellipse|rsquare|triangle|pear), skin, hair (style), hair_color, shirt,
#: acc (list of accessory names), plus accessory colours.
CLASSES: list[dict[str, Any]] = [
    # --- kept at scale=1 (>= 100 images) ---
    dict(name="bald_baker", head="circle", skin=_YELLOW, hair="strands", hair_color=(60, 45, 35),
         shirt=(240, 240, 232), acc=["stubble"], beard_color=(196, 170, 120)),
    dict(name="tower_mom", head="ellipse", skin=_YELLOW, hair="tower", hair_color=(45, 85, 205),
         shirt=(120, 190, 60), acc=["necklace"], acc_color=(215, 30, 40)),
    dict(name="spiky_boy", head="circle", skin=_YELLOW, hair="spiky", hair_color=(238, 196, 40),
         shirt=(240, 125, 30), acc=[]),
    # differs from spiky_boy by a bow and a redder shirt
    dict(name="spiky_girl", head="circle", skin=_YELLOW, hair="spiky", hair_color=(238, 196, 40),
         shirt=(220, 50, 45), acc=["bow"], acc_color=(40, 110, 220)),
    dict(name="grey_boss", head="pear", skin=_PALE, hair="tufts", hair_color=(165, 165, 165),
         shirt=(52, 56, 72), acc=["tie"], acc_color=(200, 30, 40)),
    # differs from grey_boss by glasses only
    dict(name="grey_clerk", head="pear", skin=_PALE, hair="tufts", hair_color=(165, 165, 165),
         shirt=(52, 56, 72), acc=["tie", "glasses"], acc_color=(200, 30, 40)),
    dict(name="red_cat", head="circle", skin=(200, 68, 45), hair="none", hair_color=(0, 0, 0),
         shirt=(200, 68, 45), acc=["cat_ears", "whiskers", "bell_collar"], acc_color=(40, 90, 200)),
    # differs from red_cat by a shade of fur only
    dict(name="orange_cat", head="circle", skin=(228, 128, 45), hair="none", hair_color=(0, 0, 0),
         shirt=(228, 128, 45), acc=["cat_ears", "whiskers", "bell_collar"], acc_color=(40, 90, 200)),
    dict(name="blue_robot", head="rsquare", skin=(120, 150, 192), hair="none", hair_color=(0, 0, 0),
         shirt=(88, 100, 124), acc=["antenna", "bolts"], acc_color=(220, 40, 40)),
    dict(name="green_grocer", head="rsquare", skin=(205, 150, 100), hair="bob", hair_color=(35, 30, 28),
         shirt=(60, 150, 70), acc=["mustache", "apron"], beard_color=(35, 30, 28)),
    # --- dropped at scale=1 (< 100 images) ---
    dict(name="white_beard_sailor", head="ellipse", skin=(228, 182, 142), hair="none", hair_color=(0, 0, 0),
         shirt=(40, 52, 112), acc=["full_beard", "sailor_hat"], beard_color=(245, 245, 245),
         acc_color=(30, 40, 100)),
    dict(name="purple_witch", head="triangle", skin=(140, 192, 92), hair="long", hair_color=(30, 25, 35),
         shirt=(110, 50, 150), acc=["pointy_hat"], acc_color=(110, 50, 150)),
    dict(name="curly_clown", head="circle", skin=(246, 244, 240), hair="curly", hair_color=(245, 120, 20),
         shirt=(230, 200, 40), acc=["red_nose", "bowtie"], acc_color=(220, 30, 40)),
    dict(name="teal_robot", head="rsquare", skin=(80, 172, 160), hair="none", hair_color=(0, 0, 0),
         shirt=(60, 110, 105), acc=["antenna", "bolts"], acc_color=(250, 210, 40)),
    dict(name="bun_lady", head="ellipse", skin=(150, 100, 70), hair="bun", hair_color=(25, 20, 20),
         shirt=(235, 120, 170), acc=["earrings"], acc_color=(240, 200, 40)),
    dict(name="pig_chef", head="circle", skin=(242, 162, 172), hair="none", hair_color=(0, 0, 0),
         shirt=(245, 245, 245), acc=["snout", "chef_hat"], acc_color=(250, 250, 250)),
]
CLASS_NAMES: list[str] = [c["name"] for c in CLASSES]

#: Images per class at scale=1 (valid, unique images; extras come on top).  The first 10
#: are >= KEEP_MIN_IMAGES + 15, the last 6 are well below it.  Sum: 3727.
BASE_COUNTS: dict[str, int] = dict(zip(CLASS_NAMES, [
    760, 600, 480, 400, 330, 270, 220, 180, 145, 115,
    85, 60, 40, 24, 12, 6,
]))

#: Realism extras (added on top of the counts): truncated JPEGs in two classes, one text
#: file named .jpg, and ~DUPLICATE_RATE byte-identical copies inside each class.
TRUNCATED_IN: tuple[str, ...] = ("spiky_boy", "purple_witch")
TEXT_FILE_IN: str = "grey_boss"
DUPLICATE_RATE = 0.01
TRUNCATE_FRACTION = 0.4

#: Nuisance / difficulty knobs.  Raise probabilities and ranges to make the task harder.
NUISANCE: dict[str, Any] = {
    "size_range": (72, 220),          # width and height, independently, in px
    "head_frac": (0.30, 0.52),        # head diameter / min(width, height)
    "center_x": (0.18, 0.82),         # head centre, fraction of width
    "center_y": (0.22, 0.62),         # head centre, fraction of height
    "rotation_deg": 28.0,             # uniform in [-r, r]
    "flip_prob": 0.5,
    "shape_jitter": 0.08,             # relative jitter of head aspect, eye size, ...
    "color_jitter": 20.0,             # +- per channel on every class colour
    "clutter_count": (1, 10),
    "clutter_borrow_prob": 0.5,       # clutter colour taken from another class's palette
    "gradient_bg_prob": 0.6,
    "occlusion_prob": 0.3,
    "occlusion_count": (1, 3),
    "occlusion_size": (0.2, 0.5),    # occluder size in head diameters
    "distractor_prob": 0.08,          # small partial character of a random class
    "brightness": (0.7, 1.25),
    "contrast": (0.7, 1.2),
    "color_cast": 0.08,               # per-channel gain in [1-c, 1+c]
    "shade_prob": 0.4,                # multiplicative shading gradient
    "shade_range": (0.55, 1.15),
    "blur_prob": 0.25,
    "blur_radius": (0.4, 1.3),
    "noise_prob": 0.25,
    "noise_sigma": (2.0, 10.0),
    "jpeg_quality": (40, 95),
}


# --------------------------------------------------------------------------------------
# Counts
# --------------------------------------------------------------------------------------
def _scaled(n: int, scale: float) -> int:
    if scale == 1.0:
        return n
    return max(2, round(n * scale))


def class_counts(scale: float = 1.0) -> dict[str, int]:
    """Valid, unique images per class at ``scale`` (``round(count*scale)``, at least 2)."""
    if not (scale > 0 and math.isfinite(scale)):
        raise ValueError(f"scale must be a positive finite number, got {scale!r}")
    return {name: _scaled(n, scale) for name, n in BASE_COUNTS.items()}


def duplicate_counts(scale: float = 1.0) -> dict[str, int]:
    """Extra byte-duplicate files per class (~1 %; at least one in the largest class)."""
    counts = class_counts(scale)
    dups = {name: round(n * DUPLICATE_RATE) for name, n in counts.items()}
    first = CLASS_NAMES[0]
    dups[first] = max(1, dups[first])
    return dups


# --------------------------------------------------------------------------------------
# Drawing helpers
# --------------------------------------------------------------------------------------
def _clip8(v: float) -> int:
    return 0 if v < 0 else 255 if v > 255 else int(v + 0.5)


def _jitter(c: Color, r: random.Random, amount: float) -> Color:
    return (_clip8(c[0] + r.uniform(-amount, amount)),
            _clip8(c[1] + r.uniform(-amount, amount)),
            _clip8(c[2] + r.uniform(-amount, amount)))


def _darker(c: Color, f: float = 0.72) -> Color:
    return (_clip8(c[0] * f), _clip8(c[1] * f), _clip8(c[2] * f))


def _ellipse_pts(cx: float, cy: float, rx: float, ry: float,
                 a0: float = 0.0, a1: float = 360.0, n: int = 40) -> list[tuple[float, float]]:
    """Points on an ellipse, angles in degrees, y down (90 deg = bottom)."""
    pts = []
    for k in range(n + 1):
        a = math.radians(a0 + (a1 - a0) * k / n)
        pts.append((cx + rx * math.cos(a), cy + ry * math.sin(a)))
    return pts


class _Pen:
    """Draws shapes given in character units (head radius = 1, head centre = origin).

    Scale, rotation, mirroring and translation are applied to the coordinates, so the
    character is drawn straight onto the canvas (no per-image layer rotation)."""

    OUTLINE: Color = (30, 26, 24)

    def __init__(self, draw: ImageDraw.ImageDraw, cx: float, cy: float, u: float,
                 angle_deg: float, flip: bool):
        self.d = draw
        self.cx, self.cy, self.u = cx, cy, u
        a = math.radians(angle_deg)
        self.c, self.s = math.cos(a), math.sin(a)
        self.f = -1.0 if flip else 1.0
        self.lw = max(1, int(round(0.06 * u)))

    def pt(self, x: float, y: float) -> tuple[float, float]:
        x *= self.f
        return (self.cx + self.u * (x * self.c - y * self.s),
                self.cy + self.u * (x * self.s + y * self.c))

    def width(self, w: float) -> int:
        return max(1, int(round(w * self.u)))

    def poly(self, pts, fill, outline: bool = True) -> None:
        xy = [self.pt(x, y) for x, y in pts]
        if outline:
            self.d.polygon(xy, fill=fill, outline=self.OUTLINE, width=self.lw)
        else:
            self.d.polygon(xy, fill=fill)

    def ellipse(self, cx, cy, rx, ry, fill, outline: bool = True, n: int = 36) -> None:
        self.poly(_ellipse_pts(cx, cy, rx, ry, n=n)[:-1], fill, outline)

    def line(self, pts, color, w: float) -> None:
        self.d.line([self.pt(x, y) for x, y in pts], fill=color, width=self.width(w), joint="curve")

    def arc(self, cx, cy, rx, ry, a0, a1, color, w: float) -> None:
        self.line(_ellipse_pts(cx, cy, rx, ry, a0, a1, n=16), color, w)


def _head_pts(shape: str, ax: float, ay: float) -> list[tuple[float, float]]:
    if shape == "circle":
        return _ellipse_pts(0, 0, ax, ay)[:-1]
    if shape == "ellipse":
        return _ellipse_pts(0, 0, 0.8 * ax, 1.18 * ay)[:-1]
    if shape == "rsquare":
        r, h, pts = 0.38, 1.0, []
        for qx, qy, a0 in ((h - r, h - r, 0), (-(h - r), h - r, 90), (-(h - r), -(h - r), 180),
                           (h - r, -(h - r), 270)):
            pts += _ellipse_pts(qx * ax, qy * ay, r * ax, r * ay, a0, a0 + 90, n=6)
        return pts
    if shape == "triangle":  # wide forehead, pointed chin
        top = _ellipse_pts(0, -0.35 * ay, 1.1 * ax, 0.65 * ay, 180, 360, n=16)
        return top + [(0.35 * ax, 0.95 * ay), (0.0, 1.2 * ay), (-0.35 * ax, 0.95 * ay)]
    if shape == "pear":  # narrow top, wide jowls
        top = _ellipse_pts(0, -0.3 * ay, 0.68 * ax, 0.85 * ay, 180, 360, n=16)
        bottom = _ellipse_pts(0, 0.25 * ay, 1.05 * ax, 0.85 * ay, -10, 190, n=20)
        return top + bottom
    raise ValueError(f"unknown head shape {shape!r}")


def _draw_character(pen: _Pen, spec: Mapping[str, Any], r: random.Random, nz: Mapping[str, Any]) -> None:
    cj, sj = float(nz["color_jitter"]), float(nz["shape_jitter"])
    skin = _jitter(spec["skin"], r, cj)
    hair = _jitter(spec["hair_color"], r, cj)
    shirt = _jitter(spec["shirt"], r, cj)
    accc = _jitter(spec.get("acc_color", (0, 0, 0)), r, cj)
    beardc = _jitter(spec.get("beard_color", (0, 0, 0)), r, cj)
    ax, ay = 1.0 + r.uniform(-sj, sj), 1.0 + r.uniform(-sj, sj)
    shape, style, acc = spec["head"], spec["hair"], set(spec["acc"])
    ol = _Pen.OUTLINE

    # hair behind the head
    if style == "tower":
        top = -3.2 - r.uniform(0, 0.5)
        pen.poly([(-0.72, -0.4)] + _ellipse_pts(0, top + 0.7, 0.78, 0.75, 180, 360, n=12) + [(0.72, -0.4)], hair)
        for k in (-0.35, 0.0, 0.35):
            pen.line([(k, -0.9), (k + 0.05, top + 0.6)], _darker(hair), 0.04)
    elif style == "bob":
        pen.ellipse(0, -0.15, 1.18 * ax, 1.05 * ay, hair)
    elif style == "long":
        pen.poly([(-1.15, -0.6), (1.15, -0.6), (1.25, 1.7), (-1.25, 1.7)], hair)
    elif style == "curly":
        for a in range(150, 400, 26):
            ar = math.radians(a)
            pen.ellipse(1.05 * ax * math.cos(ar), 1.0 * ay * math.sin(ar) - 0.05, 0.36, 0.36, hair)
    elif style == "bun":
        pen.ellipse(0, -1.3 * ay, 0.5, 0.45, hair)
    elif style == "tufts":
        wide = 1.02 if shape != "pear" else 0.92
        for sx in (-1, 1):
            pen.ellipse(sx * wide * ax, -0.35, 0.32, 0.4, hair)

    # body, neck
    sw = 1.55 + r.uniform(-0.15, 0.15)
    pen.poly([(-0.55, 0.85), (0.55, 0.85), (sw, 1.55), (sw + 0.2, 4.6), (-sw - 0.2, 4.6), (-sw, 1.55)], shirt)
    pen.poly([(-0.3, 0.55), (0.3, 0.55), (0.32, 1.02), (-0.32, 1.02)], skin)
    if "tie" in acc:
        pen.poly([(-0.42, 0.9), (0.42, 0.9), (0.0, 1.75)], (245, 245, 245))
        pen.poly([(0, 0.95), (0.14, 1.08), (0.1, 2.1), (0, 2.3), (-0.1, 2.1), (-0.14, 1.08)], accc)
    if "apron" in acc:
        pen.poly([(-0.75, 1.35), (0.75, 1.35), (0.85, 4.6), (-0.85, 4.6)], (240, 240, 236))
    if "bowtie" in acc:
        pen.poly([(0, 1.0), (-0.5, 0.75), (-0.5, 1.25)], accc)
        pen.poly([(0, 1.0), (0.5, 0.75), (0.5, 1.25)], accc)
    if "necklace" in acc:
        for k in range(9):
            a = math.radians(25 + 130 * k / 8)
            pen.ellipse(0.75 * math.cos(a), 0.8 + 0.4 * math.sin(a), 0.1, 0.1, accc, outline=False)
    if "cat_ears" in acc:
        for sx in (-1, 1):
            pen.poly([(sx * 0.95 * ax, -0.25), (sx * 0.85 * ax, -1.55 * ay), (sx * 0.2, -0.95 * ay)], skin)
            pen.poly([(sx * 0.8 * ax, -0.45), (sx * 0.78 * ax, -1.3 * ay), (sx * 0.38, -0.9 * ay)],
                     (240, 160, 170), outline=False)

    # head
    pen.poly(_head_pts(shape, ax, ay), skin)

    # lower-face hair
    if "stubble" in acc:
        pen.poly(_ellipse_pts(0, 0.05, 0.92 * ax, 0.9 * ay, 15, 165, n=16), beardc, outline=False)
    if "full_beard" in acc:
        pts = _ellipse_pts(0, 0.1, 0.82 * ax, 1.35 * ay, 0, 180, n=18)
        pen.poly(pts, beardc)

    # eyes
    es = 0.27 * (1.0 + r.uniform(-sj, sj) * 2)
    ey = -0.18 if shape != "pear" else -0.3
    ex = 0.36 if shape != "pear" else 0.3
    gx, gy = r.uniform(-0.1, 0.1), r.uniform(-0.08, 0.08)
    for sx in (-1, 1):
        pen.ellipse(sx * ex, ey, es, es * 1.05, (252, 252, 250))
        pen.ellipse(sx * ex + gx, ey + gy, 0.08, 0.08, ol, outline=False)

    # nose
    if "snout" in acc:
        pen.ellipse(0, 0.2, 0.32, 0.22, _darker(skin, 0.88))
        for sx in (-1, 1):
            pen.ellipse(sx * 0.11, 0.2, 0.05, 0.07, ol, outline=False)
    elif "red_nose" in acc:
        pen.ellipse(0, 0.16, 0.19, 0.19, accc)
    elif "cat_ears" in acc:
        pen.poly([(-0.1, 0.12), (0.1, 0.12), (0, 0.24)], (235, 120, 140), outline=False)
    else:
        pen.ellipse(0, 0.12, 0.11, 0.09, _darker(skin, 0.85), outline=False)

    # mouth: expression is nuisance
    mouth = r.randrange(3)
    my = 0.5 if shape != "pear" else 0.55
    if "mustache" in acc:
        for sx in (-1, 1):
            pen.ellipse(sx * 0.2, 0.35, 0.24, 0.1, beardc, outline=False)
    if mouth == 0:
        pen.arc(0, my - 0.15, 0.33, 0.18, 20, 160, ol, 0.06)
    elif mouth == 1:
        pen.ellipse(0, my, 0.2, 0.12, (120, 30, 40))
    else:
        pen.line([(-0.25, my), (0.25, my + r.uniform(-0.06, 0.06))], ol, 0.06)
    if "whiskers" in acc:
        for sx in (-1, 1):
            for dy in (-0.08, 0.08):
                pen.line([(sx * 0.25, 0.28), (sx * 1.15, 0.2 + 2.2 * dy)], ol, 0.03)

    # hair in front
    if style == "strands":
        for k in (-0.18, 0.12):
            pen.line([(k, -0.97 * ay), (k + 0.06, -1.25 * ay), (k + 0.14, -0.97 * ay)], hair, 0.05)
    elif style == "spiky":
        n = 9 + r.randrange(-1, 2)
        pts = []
        for k in range(n * 2 + 1):
            a = math.radians(185 + 170 * k / (n * 2))
            rad = 1.02 if k % 2 == 0 else 1.42 + r.uniform(-0.08, 0.08)
            pts.append((rad * ax * math.cos(a), rad * ay * math.sin(a) + 0.05))
        pts += _ellipse_pts(0, 0.05, 0.98 * ax, 0.6 * ay, 355, 185, n=10)
        pen.poly(pts, hair)
    elif style in ("bob", "long", "bun"):
        cap = _ellipse_pts(0, 0, 1.03 * ax, 1.03 * ay, 190, 350, n=14)
        pen.poly(cap + [(0.6, -0.55), (-0.6, -0.55)], hair)
    elif style == "curly":
        for a in range(215, 340, 30):
            ar = math.radians(a)
            pen.ellipse(0.85 * ax * math.cos(ar), 0.9 * ay * math.sin(ar), 0.28, 0.28, hair)

    # accessories on the head
    if "glasses" in acc:
        for sx in (-1, 1):
            pen.arc(sx * ex, ey, es + 0.08, es + 0.08, 0, 360, (25, 25, 25), 0.07)
        pen.line([(-ex + es + 0.08, ey), (ex - es - 0.08, ey)], (25, 25, 25), 0.06)
    if "bow" in acc:
        bx, by = 0.62, -1.05
        pen.poly([(bx, by), (bx - 0.45, by - 0.3), (bx - 0.45, by + 0.25)], accc)
        pen.poly([(bx, by), (bx + 0.45, by - 0.3), (bx + 0.45, by + 0.25)], accc)
        pen.ellipse(bx, by, 0.12, 0.12, _darker(accc))
    if "earrings" in acc:
        for sx in (-1, 1):
            pen.ellipse(sx * 0.82 * ax, 0.55, 0.11, 0.11, accc)
    if "bell_collar" in acc:
        pen.poly([(-0.42, 0.78), (0.42, 0.78), (0.44, 0.98), (-0.44, 0.98)], accc)
        pen.ellipse(0, 1.08, 0.14, 0.14, (245, 205, 40))
    if "antenna" in acc:
        pen.line([(0, -0.98 * ay), (0.05, -1.7 * ay)], (80, 80, 90), 0.07)
        pen.ellipse(0.05, -1.78 * ay, 0.15, 0.15, accc)
    if "bolts" in acc:
        for sx in (-1, 1):
            pen.ellipse(sx * 1.05 * ax, 0.05, 0.14, 0.2, (150, 150, 158))
    if "sailor_hat" in acc:
        pen.poly(_ellipse_pts(0, -0.72 * ay, 0.92, 0.62, 180, 360, n=14), accc)
        pen.poly([(-1.05, -0.78 * ay), (1.05, -0.78 * ay), (0.95, -0.62 * ay), (-0.95, -0.62 * ay)],
                 (245, 245, 245))
    if "pointy_hat" in acc:
        tip = (0.25 + r.uniform(-0.2, 0.2), -3.0)
        pen.poly([(-1.0, -0.75), (1.0, -0.75), tip], accc)
        pen.ellipse(0, -0.78, 1.45, 0.2, _darker(accc, 0.8))
    if "chef_hat" in acc:
        for cx in (-0.5, 0.0, 0.5):
            pen.ellipse(cx, -1.65, 0.45, 0.45, accc)
        pen.poly([(-0.8, -0.8), (0.8, -0.8), (0.8, -1.45), (-0.8, -1.45)], accc)


def _palette() -> list[Color]:
    cols: list[Color] = []
    for c in CLASSES:
        cols += [c["skin"], c["shirt"], c["hair_color"]]
    return cols


_PALETTE = _palette()


def _rand_color(r: random.Random, nz: Mapping[str, Any]) -> Color:
    if r.random() < nz["clutter_borrow_prob"]:
        return _jitter(r.choice(_PALETTE), r, 25)
    return (r.randrange(256), r.randrange(256), r.randrange(256))


def _background(r: random.Random, w: int, h: int, nz: Mapping[str, Any]) -> Image.Image:
    c1 = (r.randrange(40, 256), r.randrange(40, 256), r.randrange(40, 256))
    if r.random() < nz["gradient_bg_prob"]:
        c2 = _rand_color(r, nz)
        a = r.uniform(0, 2 * math.pi)
        xs = np.arange(w, dtype=np.float32)[None, :] * np.float32(math.cos(a) / max(w, h))
        ys = np.arange(h, dtype=np.float32)[:, None] * np.float32(math.sin(a) / max(w, h))
        t = xs + ys
        t -= t.min()
        t /= max(float(t.max()), 1e-6)
        arr = (np.asarray(c1, np.float32)[None, None, :] * (1 - t)[..., None]
               + np.asarray(c2, np.float32)[None, None, :] * t[..., None])
        img = Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8), "RGB")
    else:
        img = Image.new("RGB", (w, h), c1)
    d = ImageDraw.Draw(img)
    lo, hi = nz["clutter_count"]
    m = max(w, h)
    for _ in range(r.randint(lo, hi)):
        col = _rand_color(r, nz)
        x0, y0 = r.uniform(-0.1 * w, w), r.uniform(-0.1 * h, h)
        sx, sy = r.uniform(0.05, 0.5) * m, r.uniform(0.05, 0.5) * m
        kind = r.randrange(5)
        if kind == 0:
            d.rectangle([x0, y0, x0 + sx, y0 + sy], fill=col)
        elif kind == 1:
            d.ellipse([x0, y0, x0 + sx, y0 + sy], fill=col)
        elif kind == 2:
            d.line([(x0, y0), (x0 + r.uniform(-1, 1) * m, y0 + r.uniform(-1, 1) * m)], fill=col,
                   width=max(1, int(r.uniform(0.005, 0.04) * m)))
        elif kind == 3:
            d.polygon([(x0 + r.uniform(0, sx), y0 + r.uniform(0, sy)) for _ in range(3)], fill=col)
        else:  # floor / wall band
            y = r.uniform(0.4, 1.0) * h
            d.rectangle([0, y, w, h], fill=col)
    return img


def render_image(class_index: int, image_index: int, seed: int = 0,
                 nuisance: Mapping[str, Any] | None = None, quality: int | None = None) -> bytes:
    """JPEG bytes of one image; a pure function of its arguments."""
    nz = dict(NUISANCE) if nuisance is None else nuisance
    r = random.Random(f"{GENERATOR_ID}/{seed}/{class_index}/{image_index}")
    spec = CLASSES[class_index]
    lo, hi = nz["size_range"]
    w, h = r.randint(lo, hi), r.randint(lo, hi)
    W, H = 2 * w, 2 * h  # draw at 2x, downscale for antialiasing
    img = _background(r, W, H, nz)
    d = ImageDraw.Draw(img)
    m = min(W, H)
    u = r.uniform(*nz["head_frac"]) * m / 2

    if r.random() < nz["distractor_prob"]:
        other = CLASSES[r.randrange(len(CLASSES))]
        side = r.choice((-1, 1))
        dcx = W / 2 + side * r.uniform(0.45, 0.65) * W
        pen = _Pen(d, dcx, r.uniform(0.2, 0.7) * H, u * r.uniform(0.45, 0.7),
                   r.uniform(-40, 40), r.random() < 0.5)
        _draw_character(pen, other, r, nz)

    cx, cy = r.uniform(*nz["center_x"]) * W, r.uniform(*nz["center_y"]) * H
    rot = float(nz["rotation_deg"])
    pen = _Pen(d, cx, cy, u, r.uniform(-rot, rot), r.random() < nz["flip_prob"])
    _draw_character(pen, spec, r, nz)

    if r.random() < nz["occlusion_prob"]:
        lo_o, hi_o = nz["occlusion_count"]
        for _ in range(r.randint(lo_o, hi_o)):
            s = r.uniform(*nz["occlusion_size"]) * 2 * u
            ox = cx + r.uniform(-1.3, 1.3) * u
            oy = cy + r.uniform(-1.3, 1.6) * u
            box = [ox - s / 2, oy - s * r.uniform(0.3, 0.6), ox + s / 2, oy + s * r.uniform(0.3, 0.6)]
            col = _rand_color(r, nz)
            if r.random() < 0.5:
                d.rectangle(box, fill=col)
            else:
                d.ellipse(box, fill=col)

    img = img.reduce(2)
    if r.random() < nz["blur_prob"]:
        img = img.filter(ImageFilter.GaussianBlur(r.uniform(*nz["blur_radius"])))

    # lighting, colour cast, shading, noise
    arr = np.asarray(img, dtype=np.float32)
    cc = float(nz["color_cast"])
    gain = np.asarray([r.uniform(1 - cc, 1 + cc) for _ in range(3)], np.float32)
    b, c = r.uniform(*nz["brightness"]), r.uniform(*nz["contrast"])
    arr = (arr - np.float32(128.0)) * np.float32(c) + np.float32(128.0)
    arr = arr * (gain * np.float32(b))[None, None, :]
    if r.random() < nz["shade_prob"]:
        s0, s1 = nz["shade_range"]
        g0, g1 = r.uniform(s0, s1), r.uniform(s0, s1)
        if r.random() < 0.5:
            ramp = np.linspace(g0, g1, w, dtype=np.float32)[None, :, None]
        else:
            ramp = np.linspace(g0, g1, h, dtype=np.float32)[:, None, None]
        arr = arr * ramp
    if r.random() < nz["noise_prob"]:
        nrng = np.random.default_rng(r.getrandbits(64))
        arr = arr + nrng.standard_normal(arr.shape, dtype=np.float32) * np.float32(r.uniform(*nz["noise_sigma"]))
    out = Image.fromarray(np.clip(arr + np.float32(0.5), 0, 255).astype(np.uint8), "RGB")

    q = r.randint(*nz["jpeg_quality"]) if quality is None else quality
    buf = BytesIO()
    out.save(buf, format="JPEG", quality=q)
    return buf.getvalue()


# --------------------------------------------------------------------------------------
# Data set writer
# --------------------------------------------------------------------------------------
def _file_name(i: int) -> str:
    return f"pic_{i:04d}.jpg"


_WORKER_NZ: dict[str, Any] = {}


def _init_worker(nz: dict[str, Any]) -> None:
    _WORKER_NZ.clear()
    _WORKER_NZ.update(nz)


def _write_chunk(job: tuple[str, int, list[tuple[int, int]]]) -> int:
    out, seed, items = job
    for ci, ii in items:
        data = render_image(ci, ii, seed, _WORKER_NZ)
        (Path(out) / CLASS_NAMES[ci] / _file_name(ii)).write_bytes(data)
    return len(items)


def _read_marker(out: Path) -> dict[str, Any] | None:
    p = out / MARKER_NAME
    try:
        meta = json.loads(p.read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and meta.get("generator") == GENERATOR_ID else None


def _prepare_out_dir(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    entries = list(out.iterdir())
    if not entries:
        return
    meta = _read_marker(out)
    if meta is None and not overwrite:
        raise ValueError(
            f"refusing to write the synthetic data set into non-empty directory {out}: it was not "
            f"produced by {GENERATOR_ID} (no valid {MARKER_NAME}); empty it, choose another "
            f"directory, or pass overwrite=True")
    # Only our own entries are removed; anything else in the directory is left alone.
    ours = set(CLASS_NAMES) | set((meta or {}).get("classes", {})) | {MARKER_NAME}
    for e in entries:
        if e.name in ours:
            if e.is_dir() and not e.is_symlink():
                shutil.rmtree(e)
            else:
                e.unlink()


def generate_dataset(out_dir: str | Path, *, seed: int = 0, scale: float = 1.0,
                     workers: int | None = None, overwrite: bool = False,
                     nuisance: Mapping[str, Any] | None = None) -> dict:
    """Write the built-in data set to out_dir (ImageFolder layout); returns a summary dict
    {"classes": {name: n_files}, "n_images": int, "n_corrupt": int, "n_duplicates": int}.

    ``classes`` counts every file in each class folder (valid images + duplicates +
    corrupt files); ``n_images`` is the number of valid, unique images (the sum of
    :func:`class_counts`); ``n_corrupt`` counts truncated JPEGs plus the text file;
    ``n_duplicates`` the extra byte-identical copies.

    The output is byte-identical for the same ``seed``/``scale``/``nuisance`` whatever
    ``workers`` is (default ``min(2, os.cpu_count())``).  A non-empty ``out_dir`` is only
    accepted if it holds the marker file of an earlier run (its class folders are then
    deleted and regenerated) or if ``overwrite=True`` (entries named like our classes are
    replaced; other entries are left untouched).  ``nuisance`` overrides keys of
    :data:`NUISANCE` (e.g. to tune difficulty) and is recorded in the marker file.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an int, got {seed!r}")
    seed = int(seed)
    counts = class_counts(scale)
    dups = duplicate_counts(scale)
    nz = dict(NUISANCE)
    if nuisance:
        unknown = set(nuisance) - set(NUISANCE)
        if unknown:
            raise ValueError(f"unknown nuisance keys: {sorted(unknown)}")
        nz.update(nuisance)
    if workers is None:
        workers = min(2, os.cpu_count() or 1)
    workers = max(1, int(workers))

    out = Path(out_dir)
    _prepare_out_dir(out, overwrite)
    for name in CLASS_NAMES:
        (out / name).mkdir()

    # Interleave classes so chunks have similar cost; order does not affect the bytes.
    items = [(ci, ii) for ci, name in enumerate(CLASS_NAMES) for ii in range(counts[name])]
    items.sort(key=lambda t: (t[1], t[0]))
    if workers == 1 or len(items) < 64:
        _init_worker(nz)
        _write_chunk((str(out), seed, items))
    else:
        n_chunks = workers * 8
        jobs = [(str(out), seed, items[k::n_chunks]) for k in range(n_chunks)]
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"),
                                 initializer=_init_worker, initargs=(nz,)) as ex:
            for _ in ex.map(_write_chunk, jobs):
                pass

    # Extras (on top of the counts): byte duplicates, truncated JPEGs, a text file.
    n_dup = n_corrupt = 0
    for ci, name in enumerate(CLASS_NAMES):
        n, nd = counts[name], min(dups[name], counts[name])
        r = random.Random(f"{GENERATOR_ID}/{seed}/{ci}/extras")
        nxt = n
        for src in sorted(r.sample(range(n), nd)):
            shutil.copyfile(out / name / _file_name(src), out / name / _file_name(nxt))
            nxt += 1
            n_dup += 1
        if name in TRUNCATED_IN:
            # A large, high-quality image so the cut is well past the JPEG header:
            # PIL opens it but fails to load it, as with the broken Kaggle files.
            big = dict(nz, size_range=(200, 220))
            data = render_image(ci, 10_000_000, seed, big, quality=95)
            (out / name / _file_name(nxt)).write_bytes(data[: int(len(data) * TRUNCATE_FRACTION)])
            nxt += 1
            n_corrupt += 1
        if name == TEXT_FILE_IN:
            text = ("<html><head><title>404 Not Found</title></head>\n"
                    "<body><h1>Not Found</h1><p>The requested image was not found.</p></body></html>\n")
            (out / name / _file_name(nxt)).write_text(text, encoding="ascii", newline="\n")
            nxt += 1
            n_corrupt += 1

    n_files = {name: sum(1 for p in (out / name).iterdir() if p.is_file()) for name in CLASS_NAMES}
    summary = {
        "classes": n_files,
        "n_images": sum(counts.values()),
        "n_corrupt": n_corrupt,
        "n_duplicates": n_dup,
    }
    marker = {
        "generator": GENERATOR_ID,
        "version": GENERATOR_VERSION,
        "seed": seed,
        "scale": float(scale),
        "nuisance": {k: list(v) if isinstance(v, tuple) else v for k, v in sorted(nz.items())},
        **summary,
    }
    (out / MARKER_NAME).write_text(json.dumps(marker, indent=2, sort_keys=True) + "\n",
                                   encoding="utf-8", newline="\n")
    return summary


def main(out_dir: str | Path, *, seed: int = 0, scale: float = 1.0, workers: int | None = None,
         overwrite: bool = False) -> dict:
    """Generate the data set and print a short human-readable summary (not a CLI)."""
    t0 = time.perf_counter()
    summary = generate_dataset(out_dir, seed=seed, scale=scale, workers=workers, overwrite=overwrite)
    dt = time.perf_counter() - t0
    total = sum(summary["classes"].values())
    print(f"wrote {total} files ({summary['n_images']} images, {summary['n_duplicates']} duplicates, "
          f"{summary['n_corrupt']} corrupt) to {out_dir} in {dt:.1f}s")
    for name, n in summary["classes"].items():
        print(f"  {name:20s} {n:5d}")
    return summary
