"""One image: background clutter, the character (and maybe a distractor), occluders, lighting, noise and JPEG."""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from io import BytesIO
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .catalogue import CLASSES, GENERATOR_ID, NUISANCE, Color
from .character import draw_character
from .pen import Pen, jitter

#: Every class colour; clutter often borrows from it so that "lots of yellow" is not a shortcut to a class.
_PALETTE: list[Color] = [c for spec in CLASSES for c in (spec.skin, spec.shirt, spec.hair_color)]


def _rand_color(r: random.Random, nz: Mapping[str, Any]) -> Color:
    """A clutter colour: a jittered class colour or a uniform random one."""
    if r.random() < nz["clutter_borrow_prob"]:
        return jitter(r.choice(_PALETTE), r, 25)
    return (r.randrange(256), r.randrange(256), r.randrange(256))


def _background(r: random.Random, w: int, h: int, nz: Mapping[str, Any]) -> Image.Image:
    """A plain or gradient canvas with random shapes on it."""
    c1 = (r.randrange(40, 256), r.randrange(40, 256), r.randrange(40, 256))
    if r.random() < nz["gradient_bg_prob"]:
        c2 = _rand_color(r, nz)
        a = r.uniform(0, 2 * math.pi)
        xs = np.arange(w, dtype=np.float32)[None, :] * np.float32(math.cos(a) / max(w, h))
        ys = np.arange(h, dtype=np.float32)[:, None] * np.float32(math.sin(a) / max(w, h))
        t = xs + ys  # (H, W)
        t -= t.min()
        t /= max(float(t.max()), 1e-6)
        arr = (np.asarray(c1, np.float32)[None, None, :] * (1 - t)[..., None]
               + np.asarray(c2, np.float32)[None, None, :] * t[..., None])  # (H, W, 3)
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


def _occlude(d: ImageDraw.ImageDraw, r: random.Random, cx: float, cy: float, u: float,
             nz: Mapping[str, Any]) -> None:
    """Boxes and blobs over part of the character at (cx, cy) with head radius u."""
    lo, hi = nz["occlusion_count"]
    for _ in range(r.randint(lo, hi)):
        s = r.uniform(*nz["occlusion_size"]) * 2 * u
        ox = cx + r.uniform(-1.3, 1.3) * u
        oy = cy + r.uniform(-1.3, 1.6) * u
        box = [ox - s / 2, oy - s * r.uniform(0.3, 0.6), ox + s / 2, oy + s * r.uniform(0.3, 0.6)]
        col = _rand_color(r, nz)
        if r.random() < 0.5:
            d.rectangle(box, fill=col)
        else:
            d.ellipse(box, fill=col)


def _light(img: Image.Image, r: random.Random, nz: Mapping[str, Any]) -> Image.Image:
    """Brightness, contrast, colour cast, a shading ramp and sensor noise."""
    w, h = img.size
    arr = np.asarray(img, dtype=np.float32)  # (H, W, 3)
    cc = float(nz["color_cast"])
    gain = np.asarray([r.uniform(1 - cc, 1 + cc) for _ in range(3)], np.float32)
    b, c = r.uniform(*nz["brightness"]), r.uniform(*nz["contrast"])
    arr = (arr - np.float32(128.0)) * np.float32(c) + np.float32(128.0)
    arr = arr * (gain * np.float32(b))[None, None, :]
    if r.random() < nz["shade_prob"]:
        s0, s1 = nz["shade_range"]
        g0, g1 = r.uniform(s0, s1), r.uniform(s0, s1)
        if r.random() < 0.5:
            ramp = np.linspace(g0, g1, w, dtype=np.float32)[None, :, None]  # (1, W, 1)
        else:
            ramp = np.linspace(g0, g1, h, dtype=np.float32)[:, None, None]  # (H, 1, 1)
        arr = arr * ramp
    if r.random() < nz["noise_prob"]:
        nrng = np.random.default_rng(r.getrandbits(64))
        arr = arr + nrng.standard_normal(arr.shape, dtype=np.float32) * np.float32(r.uniform(*nz["noise_sigma"]))
    return Image.fromarray(np.clip(arr + np.float32(0.5), 0, 255).astype(np.uint8), "RGB")


def render_image(class_index: int, image_index: int, seed: int = 0,
                 nuisance: Mapping[str, Any] | None = None, quality: int | None = None) -> bytes:
    """JPEG bytes of one image; a pure function of its arguments.

    Args:
        class_index: index into :data:`~reslab.data.synth.catalogue.CLASSES`.
        image_index: the image's number within its class.
        seed: data set seed.
        nuisance: all the knobs of :data:`~reslab.data.synth.catalogue.NUISANCE` (default: those).
        quality: JPEG quality; default drawn from ``nuisance["jpeg_quality"]``.
    """
    nz = dict(NUISANCE) if nuisance is None else nuisance
    # Python seeds from a string via SHA-512, independent of PYTHONHASHSEED.
    r = random.Random(f"{GENERATOR_ID}/{seed}/{class_index}/{image_index}")
    lo, hi = nz["size_range"]
    w, h = r.randint(lo, hi), r.randint(lo, hi)
    W, H = 2 * w, 2 * h  # draw at 2x, downscale for antialiasing
    img = _background(r, W, H, nz)
    d = ImageDraw.Draw(img)
    u = r.uniform(*nz["head_frac"]) * min(W, H) / 2

    if r.random() < nz["distractor_prob"]:
        other = CLASSES[r.randrange(len(CLASSES))]
        side = r.choice((-1, 1))
        dcx = W / 2 + side * r.uniform(0.45, 0.65) * W
        pen = Pen(d, dcx, r.uniform(0.2, 0.7) * H, u * r.uniform(0.45, 0.7), r.uniform(-40, 40), r.random() < 0.5)
        draw_character(pen, other, r, nz)

    cx, cy = r.uniform(*nz["center_x"]) * W, r.uniform(*nz["center_y"]) * H
    rot = float(nz["rotation_deg"])
    pen = Pen(d, cx, cy, u, r.uniform(-rot, rot), r.random() < nz["flip_prob"])
    draw_character(pen, CLASSES[class_index], r, nz)
    if r.random() < nz["occlusion_prob"]:
        _occlude(d, r, cx, cy, u, nz)

    img = img.reduce(2)  # (h, w)
    if r.random() < nz["blur_prob"]:
        img = img.filter(ImageFilter.GaussianBlur(r.uniform(*nz["blur_radius"])))
    out = _light(img, r, nz)

    q = r.randint(*nz["jpeg_quality"]) if quality is None else quality
    buf = BytesIO()
    out.save(buf, format="JPEG", quality=q)
    return buf.getvalue()

