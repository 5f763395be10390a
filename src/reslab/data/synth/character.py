"""Drawing one character, layer by layer, from tables of drawers.

Each layer is a table from a hair style or accessory name to the function that draws it; :func:`draw_character`
walks the layers back to front and, within a layer, the table in its written order.  That order, and the order in
which drawers take numbers from the RNG, is part of the output: reordering a table changes the bytes written.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .catalogue import Character, Color
from .pen import HEAD_SHAPES, Pen, darker, ellipse_pts, jitter

_WHITE: Color = (245, 245, 245)
_GLASSES: Color = (25, 25, 25)
_METAL: Color = (150, 150, 158)
_BELL: Color = (245, 205, 40)


@dataclass
class Look:
    """One image's drawing of a character: its colours after jitter, head aspect and eye geometry."""

    shape: str
    skin: Color
    hair: Color
    shirt: Color
    acc: Color
    beard: Color
    ax: float
    ay: float
    eye_x: float
    eye_y: float
    eye_size: float = 0.0  # drawn with the eyes, after the head, to keep the RNG order


Drawer = Callable[[Pen, Look, random.Random], None]


# --- hair behind the head ---------------------------------------------------------------------------------------
def _tower(pen: Pen, k: Look, r: random.Random) -> None:
    top = -3.2 - r.uniform(0, 0.5)
    pen.poly([(-0.72, -0.4)] + ellipse_pts(0, top + 0.7, 0.78, 0.75, 180, 360, n=12) + [(0.72, -0.4)], k.hair)
    for x in (-0.35, 0.0, 0.35):
        pen.line([(x, -0.9), (x + 0.05, top + 0.6)], darker(k.hair), 0.04)


def _bob_back(pen: Pen, k: Look, r: random.Random) -> None:
    pen.ellipse(0, -0.15, 1.18 * k.ax, 1.05 * k.ay, k.hair)


def _long_back(pen: Pen, k: Look, r: random.Random) -> None:
    pen.poly([(-1.15, -0.6), (1.15, -0.6), (1.25, 1.7), (-1.25, 1.7)], k.hair)


def _curly_back(pen: Pen, k: Look, r: random.Random) -> None:
    for a in range(150, 400, 26):
        ar = math.radians(a)
        pen.ellipse(1.05 * k.ax * math.cos(ar), 1.0 * k.ay * math.sin(ar) - 0.05, 0.36, 0.36, k.hair)


def _bun(pen: Pen, k: Look, r: random.Random) -> None:
    pen.ellipse(0, -1.3 * k.ay, 0.5, 0.45, k.hair)


def _tufts(pen: Pen, k: Look, r: random.Random) -> None:
    wide = 1.02 if k.shape != "pear" else 0.92
    for sx in (-1, 1):
        pen.ellipse(sx * wide * k.ax, -0.35, 0.32, 0.4, k.hair)


# --- on the body ----------------------------------------------------------------------------------------------
def _tie(pen: Pen, k: Look, r: random.Random) -> None:
    pen.poly([(-0.42, 0.9), (0.42, 0.9), (0.0, 1.75)], _WHITE)
    pen.poly([(0, 0.95), (0.14, 1.08), (0.1, 2.1), (0, 2.3), (-0.1, 2.1), (-0.14, 1.08)], k.acc)


def _apron(pen: Pen, k: Look, r: random.Random) -> None:
    pen.poly([(-0.75, 1.35), (0.75, 1.35), (0.85, 4.6), (-0.85, 4.6)], (240, 240, 236))


def _bowtie(pen: Pen, k: Look, r: random.Random) -> None:
    pen.poly([(0, 1.0), (-0.5, 0.75), (-0.5, 1.25)], k.acc)
    pen.poly([(0, 1.0), (0.5, 0.75), (0.5, 1.25)], k.acc)


def _necklace(pen: Pen, k: Look, r: random.Random) -> None:
    for i in range(9):
        a = math.radians(25 + 130 * i / 8)
        pen.ellipse(0.75 * math.cos(a), 0.8 + 0.4 * math.sin(a), 0.1, 0.1, k.acc, outline=False)


def _cat_ears(pen: Pen, k: Look, r: random.Random) -> None:
    ax, ay = k.ax, k.ay
    for sx in (-1, 1):
        pen.poly([(sx * 0.95 * ax, -0.25), (sx * 0.85 * ax, -1.55 * ay), (sx * 0.2, -0.95 * ay)], k.skin)
        pen.poly([(sx * 0.8 * ax, -0.45), (sx * 0.78 * ax, -1.3 * ay), (sx * 0.38, -0.9 * ay)],
                 (240, 160, 170), outline=False)


# --- on the face ----------------------------------------------------------------------------------------------
def _stubble(pen: Pen, k: Look, r: random.Random) -> None:
    pen.poly(ellipse_pts(0, 0.05, 0.92 * k.ax, 0.9 * k.ay, 15, 165, n=16), k.beard, outline=False)


def _full_beard(pen: Pen, k: Look, r: random.Random) -> None:
    pen.poly(ellipse_pts(0, 0.1, 0.82 * k.ax, 1.35 * k.ay, 0, 180, n=18), k.beard)


def _snout(pen: Pen, k: Look, r: random.Random) -> None:
    pen.ellipse(0, 0.2, 0.32, 0.22, darker(k.skin, 0.88))
    for sx in (-1, 1):
        pen.ellipse(sx * 0.11, 0.2, 0.05, 0.07, Pen.OUTLINE, outline=False)


def _red_nose(pen: Pen, k: Look, r: random.Random) -> None:
    pen.ellipse(0, 0.16, 0.19, 0.19, k.acc)


def _cat_nose(pen: Pen, k: Look, r: random.Random) -> None:
    pen.poly([(-0.1, 0.12), (0.1, 0.12), (0, 0.24)], (235, 120, 140), outline=False)


def _plain_nose(pen: Pen, k: Look, r: random.Random) -> None:
    pen.ellipse(0, 0.12, 0.11, 0.09, darker(k.skin, 0.85), outline=False)


def _mustache(pen: Pen, k: Look, r: random.Random) -> None:
    for sx in (-1, 1):
        pen.ellipse(sx * 0.2, 0.35, 0.24, 0.1, k.beard, outline=False)


def _whiskers(pen: Pen, k: Look, r: random.Random) -> None:
    for sx in (-1, 1):
        for dy in (-0.08, 0.08):
            pen.line([(sx * 0.25, 0.28), (sx * 1.15, 0.2 + 2.2 * dy)], Pen.OUTLINE, 0.03)


# --- hair in front ----------------------------------------------------------------------------------------------
def _strands(pen: Pen, k: Look, r: random.Random) -> None:
    for x in (-0.18, 0.12):
        pen.line([(x, -0.97 * k.ay), (x + 0.06, -1.25 * k.ay), (x + 0.14, -0.97 * k.ay)], k.hair, 0.05)


def _spiky(pen: Pen, k: Look, r: random.Random) -> None:
    n = 9 + r.randrange(-1, 2)
    pts = []
    for i in range(n * 2 + 1):
        a = math.radians(185 + 170 * i / (n * 2))
        rad = 1.02 if i % 2 == 0 else 1.42 + r.uniform(-0.08, 0.08)
        pts.append((rad * k.ax * math.cos(a), rad * k.ay * math.sin(a) + 0.05))
    pts += ellipse_pts(0, 0.05, 0.98 * k.ax, 0.6 * k.ay, 355, 185, n=10)
    pen.poly(pts, k.hair)


def _cap(pen: Pen, k: Look, r: random.Random) -> None:
    cap = ellipse_pts(0, 0, 1.03 * k.ax, 1.03 * k.ay, 190, 350, n=14)
    pen.poly(cap + [(0.6, -0.55), (-0.6, -0.55)], k.hair)


def _curls(pen: Pen, k: Look, r: random.Random) -> None:
    for a in range(215, 340, 30):
        ar = math.radians(a)
        pen.ellipse(0.85 * k.ax * math.cos(ar), 0.9 * k.ay * math.sin(ar), 0.28, 0.28, k.hair)


# --- on the head ----------------------------------------------------------------------------------------------
def _glasses(pen: Pen, k: Look, r: random.Random) -> None:
    ex, ey, es = k.eye_x, k.eye_y, k.eye_size
    for sx in (-1, 1):
        pen.arc(sx * ex, ey, es + 0.08, es + 0.08, 0, 360, _GLASSES, 0.07)
    pen.line([(-ex + es + 0.08, ey), (ex - es - 0.08, ey)], _GLASSES, 0.06)


def _bow(pen: Pen, k: Look, r: random.Random) -> None:
    bx, by = 0.62, -1.05
    pen.poly([(bx, by), (bx - 0.45, by - 0.3), (bx - 0.45, by + 0.25)], k.acc)
    pen.poly([(bx, by), (bx + 0.45, by - 0.3), (bx + 0.45, by + 0.25)], k.acc)
    pen.ellipse(bx, by, 0.12, 0.12, darker(k.acc))


def _earrings(pen: Pen, k: Look, r: random.Random) -> None:
    for sx in (-1, 1):
        pen.ellipse(sx * 0.82 * k.ax, 0.55, 0.11, 0.11, k.acc)


def _bell_collar(pen: Pen, k: Look, r: random.Random) -> None:
    pen.poly([(-0.42, 0.78), (0.42, 0.78), (0.44, 0.98), (-0.44, 0.98)], k.acc)
    pen.ellipse(0, 1.08, 0.14, 0.14, _BELL)


def _antenna(pen: Pen, k: Look, r: random.Random) -> None:
    pen.line([(0, -0.98 * k.ay), (0.05, -1.7 * k.ay)], (80, 80, 90), 0.07)
    pen.ellipse(0.05, -1.78 * k.ay, 0.15, 0.15, k.acc)


def _bolts(pen: Pen, k: Look, r: random.Random) -> None:
    for sx in (-1, 1):
        pen.ellipse(sx * 1.05 * k.ax, 0.05, 0.14, 0.2, _METAL)


def _sailor_hat(pen: Pen, k: Look, r: random.Random) -> None:
    ay = k.ay
    pen.poly(ellipse_pts(0, -0.72 * ay, 0.92, 0.62, 180, 360, n=14), k.acc)
    pen.poly([(-1.05, -0.78 * ay), (1.05, -0.78 * ay), (0.95, -0.62 * ay), (-0.95, -0.62 * ay)], _WHITE)


def _pointy_hat(pen: Pen, k: Look, r: random.Random) -> None:
    tip = (0.25 + r.uniform(-0.2, 0.2), -3.0)
    pen.poly([(-1.0, -0.75), (1.0, -0.75), tip], k.acc)
    pen.ellipse(0, -0.78, 1.45, 0.2, darker(k.acc, 0.8))


def _chef_hat(pen: Pen, k: Look, r: random.Random) -> None:
    for cx in (-0.5, 0.0, 0.5):
        pen.ellipse(cx, -1.65, 0.45, 0.45, k.acc)
    pen.poly([(-0.8, -0.8), (0.8, -0.8), (0.8, -1.45), (-0.8, -1.45)], k.acc)


#: Hair styles drawn behind the head (before the body).
HAIR_BEHIND: dict[str, Drawer] = {
    "tower": _tower, "bob": _bob_back, "long": _long_back, "curly": _curly_back, "bun": _bun, "tufts": _tufts,
}
#: Hair styles drawn over the head (after the face).
HAIR_IN_FRONT: dict[str, Drawer] = {
    "strands": _strands, "spiky": _spiky, "bob": _cap, "long": _cap, "bun": _cap, "curly": _curls,
}
#: Accessories drawn over the shirt, before the head.
ON_BODY: dict[str, Drawer] = {
    "tie": _tie, "apron": _apron, "bowtie": _bowtie, "necklace": _necklace, "cat_ears": _cat_ears,
}
#: Accessories drawn over the head, before the eyes.
ON_CHIN: dict[str, Drawer] = {"stubble": _stubble, "full_beard": _full_beard}
#: Noses by accessory: the first one the character has is drawn, else :func:`_plain_nose`.
NOSES: dict[str, Drawer] = {"snout": _snout, "red_nose": _red_nose, "cat_ears": _cat_nose}
#: Accessories drawn before the mouth.
ABOVE_MOUTH: dict[str, Drawer] = {"mustache": _mustache}
#: Accessories drawn after the mouth.
BESIDE_MOUTH: dict[str, Drawer] = {"whiskers": _whiskers}
#: Accessories drawn last, over the hair.
ON_HEAD: dict[str, Drawer] = {
    "glasses": _glasses, "bow": _bow, "earrings": _earrings, "bell_collar": _bell_collar, "antenna": _antenna,
    "bolts": _bolts, "sailor_hat": _sailor_hat, "pointy_hat": _pointy_hat, "chef_hat": _chef_hat,
}
#: Every accessory name some layer knows.
ACCESSORIES: frozenset[str] = frozenset().union(ON_BODY, ON_CHIN, NOSES, ABOVE_MOUTH, BESIDE_MOUTH, ON_HEAD)


def _draw_layer(table: Mapping[str, Drawer], has: frozenset[str], pen: Pen, k: Look, r: random.Random) -> None:
    """Every drawer of ``table`` whose accessory the character has, in table order."""
    for name, draw in table.items():
        if name in has:
            draw(pen, k, r)


def _body(pen: Pen, k: Look, r: random.Random) -> None:
    """Shirt and neck."""
    sw = 1.55 + r.uniform(-0.15, 0.15)
    pen.poly([(-0.55, 0.85), (0.55, 0.85), (sw, 1.55), (sw + 0.2, 4.6), (-sw - 0.2, 4.6), (-sw, 1.55)], k.shirt)
    pen.poly([(-0.3, 0.55), (0.3, 0.55), (0.32, 1.02), (-0.32, 1.02)], k.skin)


def _eyes(pen: Pen, k: Look, r: random.Random, shape_jitter: float) -> None:
    """Eyes of jittered size; the gaze is nuisance."""
    k.eye_size = es = 0.27 * (1.0 + r.uniform(-shape_jitter, shape_jitter) * 2)
    gx, gy = r.uniform(-0.1, 0.1), r.uniform(-0.08, 0.08)
    for sx in (-1, 1):
        pen.ellipse(sx * k.eye_x, k.eye_y, es, es * 1.05, (252, 252, 250))
        pen.ellipse(sx * k.eye_x + gx, k.eye_y + gy, 0.08, 0.08, Pen.OUTLINE, outline=False)


def _mouth(pen: Pen, k: Look, r: random.Random, expression: int) -> None:
    """A smile, an open mouth or a straight line: the expression is nuisance."""
    my = 0.5 if k.shape != "pear" else 0.55
    if expression == 0:
        pen.arc(0, my - 0.15, 0.33, 0.18, 20, 160, Pen.OUTLINE, 0.06)
    elif expression == 1:
        pen.ellipse(0, my, 0.2, 0.12, (120, 30, 40))
    else:
        pen.line([(-0.25, my), (0.25, my + r.uniform(-0.06, 0.06))], Pen.OUTLINE, 0.06)


def draw_character(pen: Pen, spec: Character, r: random.Random, nuisance: Mapping[str, Any]) -> None:
    """Draw ``spec`` with ``pen``, taking every random choice from ``r``.

    Args:
        pen: places the character (head centre, size, rotation, mirroring) on the canvas.
        spec: the class to draw.
        r: the image's RNG.
        nuisance: the knobs of :data:`~reslab.data.synth.catalogue.NUISANCE`; uses ``color_jitter`` and
            ``shape_jitter``.
    """
    cj, sj = float(nuisance["color_jitter"]), float(nuisance["shape_jitter"])
    colors = [jitter(c, r, cj) for c in (spec.skin, spec.hair_color, spec.shirt, spec.acc_color, spec.beard_color)]
    ax, ay = 1.0 + r.uniform(-sj, sj), 1.0 + r.uniform(-sj, sj)
    pear = spec.head == "pear"
    k = Look(spec.head, *colors, ax=ax, ay=ay, eye_x=0.3 if pear else 0.36, eye_y=-0.3 if pear else -0.18)
    has = frozenset(spec.accessories)

    if spec.hair in HAIR_BEHIND:
        HAIR_BEHIND[spec.hair](pen, k, r)
    _body(pen, k, r)
    _draw_layer(ON_BODY, has, pen, k, r)
    pen.poly(HEAD_SHAPES[spec.head](ax, ay), k.skin)
    _draw_layer(ON_CHIN, has, pen, k, r)
    _eyes(pen, k, r, sj)
    nose = next((draw for name, draw in NOSES.items() if name in has), _plain_nose)
    nose(pen, k, r)
    expression = r.randrange(3)
    _draw_layer(ABOVE_MOUTH, has, pen, k, r)
    _mouth(pen, k, r, expression)
    _draw_layer(BESIDE_MOUTH, has, pen, k, r)
    if spec.hair in HAIR_IN_FRONT:
        HAIR_IN_FRONT[spec.hair](pen, k, r)
    _draw_layer(ON_HEAD, has, pen, k, r)
