"""The character catalogue: what each class looks like, how many images it gets, and the nuisance knobs.

Only the fields of :class:`Character` carry the label; everything in :data:`NUISANCE` is drawn at random per image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

Color = tuple[int, int, int]

#: Seeds every image's RNG and marks the output directory, so changing it changes every byte written.
GENERATOR_ID = "reslab.data.synth"
#: Bump when the drawing code changes in a way that changes the bytes written.
GENERATOR_VERSION = 1
#: The downstream rule this data set is designed around.
KEEP_MIN_IMAGES = 100


@dataclass(frozen=True)
class Character:
    """One class: the label-bearing look of a cartoon character.

    Args:
        name: class (folder) name.
        head: head shape, a key of ``pen.HEAD_SHAPES``.
        skin: skin or fur colour.
        hair: hair style, a key of ``character.HAIR_BEHIND`` / ``character.HAIR_IN_FRONT``, or ``"none"``.
        hair_color: hair colour.
        shirt: shirt colour.
        accessories: accessory names, each a key of one of the layer tables in ``character``.
        acc_color: colour of the coloured accessories (tie, bow, hats, ...).
        beard_color: colour of stubble, beards and moustaches.
    """

    name: str
    head: str
    skin: Color
    hair: str
    hair_color: Color
    shirt: Color
    accessories: tuple[str, ...] = ()
    acc_color: Color = (0, 0, 0)
    beard_color: Color = (0, 0, 0)


_YELLOW: Color = (250, 214, 48)
_PALE: Color = (242, 204, 172)
_NO_HAIR: Color = (0, 0, 0)

#: Ordered by size (largest first).  Some pairs are deliberately confusable, so that a model must look at small
#: details rather than at the dominant colour; four classes share the same yellow skin.
CLASSES: list[Character] = [
    # --- kept at scale=1 (>= KEEP_MIN_IMAGES) ---
    Character("bald_baker", "circle", _YELLOW, "strands", (60, 45, 35), (240, 240, 232), ("stubble",),
              beard_color=(196, 170, 120)),
    Character("tower_mom", "ellipse", _YELLOW, "tower", (45, 85, 205), (120, 190, 60), ("necklace",),
              acc_color=(215, 30, 40)),
    Character("spiky_boy", "circle", _YELLOW, "spiky", (238, 196, 40), (240, 125, 30)),
    # differs from spiky_boy by a bow and a redder shirt
    Character("spiky_girl", "circle", _YELLOW, "spiky", (238, 196, 40), (220, 50, 45), ("bow",),
              acc_color=(40, 110, 220)),
    Character("grey_boss", "pear", _PALE, "tufts", (165, 165, 165), (52, 56, 72), ("tie",),
              acc_color=(200, 30, 40)),
    # differs from grey_boss by glasses only
    Character("grey_clerk", "pear", _PALE, "tufts", (165, 165, 165), (52, 56, 72), ("tie", "glasses"),
              acc_color=(200, 30, 40)),
    Character("red_cat", "circle", (200, 68, 45), "none", _NO_HAIR, (200, 68, 45),
              ("cat_ears", "whiskers", "bell_collar"), acc_color=(40, 90, 200)),
    # differs from red_cat by a shade of fur only
    Character("orange_cat", "circle", (228, 128, 45), "none", _NO_HAIR, (228, 128, 45),
              ("cat_ears", "whiskers", "bell_collar"), acc_color=(40, 90, 200)),
    Character("blue_robot", "rsquare", (120, 150, 192), "none", _NO_HAIR, (88, 100, 124), ("antenna", "bolts"),
              acc_color=(220, 40, 40)),
    Character("green_grocer", "rsquare", (205, 150, 100), "bob", (35, 30, 28), (60, 150, 70),
              ("mustache", "apron"), beard_color=(35, 30, 28)),
    # --- dropped at scale=1 (< KEEP_MIN_IMAGES) ---
    Character("white_beard_sailor", "ellipse", (228, 182, 142), "none", _NO_HAIR, (40, 52, 112),
              ("full_beard", "sailor_hat"), acc_color=(30, 40, 100), beard_color=(245, 245, 245)),
    Character("purple_witch", "triangle", (140, 192, 92), "long", (30, 25, 35), (110, 50, 150), ("pointy_hat",),
              acc_color=(110, 50, 150)),
    Character("curly_clown", "circle", (246, 244, 240), "curly", (245, 120, 20), (230, 200, 40),
              ("red_nose", "bowtie"), acc_color=(220, 30, 40)),
    Character("teal_robot", "rsquare", (80, 172, 160), "none", _NO_HAIR, (60, 110, 105), ("antenna", "bolts"),
              acc_color=(250, 210, 40)),
    Character("bun_lady", "ellipse", (150, 100, 70), "bun", (25, 20, 20), (235, 120, 170), ("earrings",),
              acc_color=(240, 200, 40)),
    Character("pig_chef", "circle", (242, 162, 172), "none", _NO_HAIR, (245, 245, 245), ("snout", "chef_hat"),
              acc_color=(250, 250, 250)),
]
CLASS_NAMES: list[str] = [c.name for c in CLASSES]

#: Valid, unique images per class at scale=1 (extras come on top).  Long-tailed so that the rule "keep classes
#: with at least KEEP_MIN_IMAGES valid images" keeps the first 10 with a margin and drops the last 6.
BASE_COUNTS: dict[str, int] = dict(zip(CLASS_NAMES, [
    760, 600, 480, 400, 330, 270, 220, 180, 145, 115,
    85, 60, 40, 24, 12, 6,
]))

#: Realism extras (added on top of the counts): truncated JPEGs in two classes, one text file named .jpg, and
#: about DUPLICATE_RATE byte-identical copies inside each class.
TRUNCATED_IN: tuple[str, ...] = ("spiky_boy", "purple_witch")
TEXT_FILE_IN: str = "grey_boss"
DUPLICATE_RATE = 0.01
TRUNCATE_FRACTION = 0.4

#: Nuisance / difficulty knobs: random per image, never label-bearing.  Raise probabilities and ranges to make
#: the task harder; ``generate_dataset(nuisance=...)`` overrides them and records the result in the marker file.
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
    "occlusion_size": (0.2, 0.5),     # occluder size in head diameters
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


def _scaled(n: int, scale: float) -> int:
    """``n`` images scaled, at least 2 (scale 1 is exact)."""
    if scale == 1.0:
        return n
    return max(2, round(n * scale))


def class_counts(scale: float = 1.0) -> dict[str, int]:
    """Valid, unique images per class at ``scale`` (``round(count*scale)``, at least 2).

    Args:
        scale: multiplies every entry of :data:`BASE_COUNTS`; a positive finite number.
    """
    if not (scale > 0 and math.isfinite(scale)):
        raise ValueError(f"scale must be a positive finite number, got {scale!r}")
    return {name: _scaled(n, scale) for name, n in BASE_COUNTS.items()}


def duplicate_counts(scale: float = 1.0) -> dict[str, int]:
    """Extra byte-duplicate files per class (:data:`DUPLICATE_RATE` of its images; at least one in the largest).

    Args:
        scale: as for :func:`class_counts`.
    """
    counts = class_counts(scale)
    dups = {name: round(n * DUPLICATE_RATE) for name, n in counts.items()}
    first = CLASS_NAMES[0]
    dups[first] = max(1, dups[first])
    return dups
