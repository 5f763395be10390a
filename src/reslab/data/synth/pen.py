"""Drawing primitives in character units: colours, ellipse points, the :class:`Pen` and the head outlines."""

from __future__ import annotations

import math
import random
from collections.abc import Callable

from PIL import ImageDraw

from .catalogue import Color

Point = tuple[float, float]


def clip8(v: float) -> int:
    """``v`` rounded and clipped to a colour channel."""
    return 0 if v < 0 else 255 if v > 255 else int(v + 0.5)


def jitter(c: Color, r: random.Random, amount: float) -> Color:
    """``c`` with each channel moved by up to ``amount``."""
    return (clip8(c[0] + r.uniform(-amount, amount)),
            clip8(c[1] + r.uniform(-amount, amount)),
            clip8(c[2] + r.uniform(-amount, amount)))


def darker(c: Color, f: float = 0.72) -> Color:
    """``c`` scaled by ``f``."""
    return (clip8(c[0] * f), clip8(c[1] * f), clip8(c[2] * f))


def ellipse_pts(cx: float, cy: float, rx: float, ry: float,
                a0: float = 0.0, a1: float = 360.0, n: int = 40) -> list[Point]:
    """Points on an ellipse, angles in degrees, y down (90 deg = bottom)."""
    pts = []
    for k in range(n + 1):
        a = math.radians(a0 + (a1 - a0) * k / n)
        pts.append((cx + rx * math.cos(a), cy + ry * math.sin(a)))
    return pts


class Pen:
    """Draws shapes given in character units (head radius = 1, head centre = origin).

    Scale, rotation, mirroring and translation are applied to the coordinates, so the character is drawn straight
    onto the canvas (no per-image layer rotation).

    Args:
        draw: the canvas.
        cx, cy: head centre on the canvas, in px.
        u: head radius in px.
        angle_deg: rotation of the character.
        flip: mirror the character left-right.
    """

    OUTLINE: Color = (30, 26, 24)

    def __init__(self, draw: ImageDraw.ImageDraw, cx: float, cy: float, u: float, angle_deg: float, flip: bool):
        self.d = draw
        self.cx, self.cy, self.u = cx, cy, u
        a = math.radians(angle_deg)
        self.c, self.s = math.cos(a), math.sin(a)
        self.f = -1.0 if flip else 1.0
        self.lw = max(1, int(round(0.06 * u)))

    def pt(self, x: float, y: float) -> Point:
        """Canvas position of a point in character units."""
        x *= self.f
        return (self.cx + self.u * (x * self.c - y * self.s),
                self.cy + self.u * (x * self.s + y * self.c))

    def width(self, w: float) -> int:
        """Line width in px for a width in character units."""
        return max(1, int(round(w * self.u)))

    def poly(self, pts: list[Point], fill: Color, outline: bool = True) -> None:
        """A filled polygon, outlined unless ``outline`` is false."""
        xy = [self.pt(x, y) for x, y in pts]
        if outline:
            self.d.polygon(xy, fill=fill, outline=self.OUTLINE, width=self.lw)
        else:
            self.d.polygon(xy, fill=fill)

    def ellipse(self, cx: float, cy: float, rx: float, ry: float, fill: Color, outline: bool = True,
                n: int = 36) -> None:
        """A filled ellipse (a polygon, so that it rotates with the character)."""
        self.poly(ellipse_pts(cx, cy, rx, ry, n=n)[:-1], fill, outline)

    def line(self, pts: list[Point], color: Color, w: float) -> None:
        """A polyline of width ``w`` in character units."""
        self.d.line([self.pt(x, y) for x, y in pts], fill=color, width=self.width(w), joint="curve")

    def arc(self, cx: float, cy: float, rx: float, ry: float, a0: float, a1: float, color: Color, w: float) -> None:
        """An elliptic arc from ``a0`` to ``a1`` degrees."""
        self.line(ellipse_pts(cx, cy, rx, ry, a0, a1, n=16), color, w)


def _circle(ax: float, ay: float) -> list[Point]:
    return ellipse_pts(0, 0, ax, ay)[:-1]


def _ellipse(ax: float, ay: float) -> list[Point]:
    return ellipse_pts(0, 0, 0.8 * ax, 1.18 * ay)[:-1]


def _rounded_square(ax: float, ay: float) -> list[Point]:
    r, h, pts = 0.38, 1.0, []
    for qx, qy, a0 in ((h - r, h - r, 0), (-(h - r), h - r, 90), (-(h - r), -(h - r), 180),
                       (h - r, -(h - r), 270)):
        pts += ellipse_pts(qx * ax, qy * ay, r * ax, r * ay, a0, a0 + 90, n=6)
    return pts


def _triangle(ax: float, ay: float) -> list[Point]:
    """Wide forehead, pointed chin."""
    top = ellipse_pts(0, -0.35 * ay, 1.1 * ax, 0.65 * ay, 180, 360, n=16)
    return top + [(0.35 * ax, 0.95 * ay), (0.0, 1.2 * ay), (-0.35 * ax, 0.95 * ay)]


def _pear(ax: float, ay: float) -> list[Point]:
    """Narrow top, wide jowls."""
    top = ellipse_pts(0, -0.3 * ay, 0.68 * ax, 0.85 * ay, 180, 360, n=16)
    bottom = ellipse_pts(0, 0.25 * ay, 1.05 * ax, 0.85 * ay, -10, 190, n=20)
    return top + bottom


#: Head outline by shape name, for a head of aspect (ax, ay).
HEAD_SHAPES: dict[str, Callable[[float, float], list[Point]]] = {
    "circle": _circle,
    "ellipse": _ellipse,
    "rsquare": _rounded_square,
    "triangle": _triangle,
    "pear": _pear,
}
