"""Deterministic synthetic "cartoon characters" data set (stand-in for Kaggle's Simpsons set).

Why this exists
---------------
The experiments compare a plain CNN with a small ResNet on an ImageFolder data set of cartoon characters.  The real
Kaggle data cannot be downloaded in CI or on an offline machine, so this package *draws* an equivalent data set.
Everything about it is chosen so that the rest of the pipeline (validity filtering, de-duplication, the ">= 100
images per class" rule, a 64x64 classifier) meets the same situations as with the real data.

What defines a class
--------------------
A class is a character (:data:`CLASSES`): a fixed combination of head shape, skin/fur colour, hair style and
colour, shirt colour and accessories (glasses, hats, bow, beard, earrings, collar, tie, ...).  Those are the *only*
things that carry the label.  Several classes are made deliberately confusable so that a model must look at small
details rather than at the dominant colour: ``spiky_boy``/``spiky_girl`` differ by a bow and a shade of shirt,
``grey_boss``/``grey_clerk`` differ by glasses only, ``red_cat``/``orange_cat`` differ by a shade of fur, and four
classes share the same yellow skin.

What is nuisance
----------------
Everything else is random per image and carries no label information: canvas size and aspect ratio, character
position/scale/rotation/mirroring, facial expression and gaze, small shape jitter, colour jitter of the class
colours, cluttered backgrounds (whose colours are often borrowed from *other* characters' palettes, so that "lots
of yellow" is not a shortcut), occluders over part of the character, an occasional small distractor character of
any class, lighting (brightness, contrast, colour cast, shading gradient), blur, sensor noise and JPEG quality.
All knobs live in :data:`NUISANCE` so difficulty can be tuned in one place; a ``nuisance=`` override is also
accepted by :func:`generate_dataset` and is recorded in the marker file.

Class sizes are long-tailed (:data:`BASE_COUNTS`) so that the rule "keep classes with at least
:data:`KEEP_MIN_IMAGES` valid images" keeps exactly 10 classes and drops 6.  Like the Kaggle data, a few files are
broken (truncated JPEGs, a text file named ``.jpg``) and a small share are exact byte duplicates under another
name; those files come *on top of* the counts so that the keep/drop rule is not affected.

Why it is deterministic
-----------------------
The generated directory is tracked with DVC (``data.dvc``), so a fresh machine must produce exactly the same bytes.
Each image is a pure function of ``(seed, class index, image index)``: its RNG is ``random.Random`` seeded with a
string of those plus a ``numpy.random.default_rng`` derived from it; no global RNG state is used, so the number of
worker processes and the order of generation do not matter.  The order in which the drawing code takes numbers
from that RNG is part of the output.  Byte identity does assume the same Pillow / libjpeg build (the JPEG encoder
and resamplers are part of the output), so pin Pillow in the lock file.

Modules
-------
``catalogue``  the classes (:class:`Character`), their image counts, the extras and the nuisance knobs
``pen``        drawing primitives in character units and the head outlines
``character``  one character, layer by layer, from tables of hair and accessory drawers
``scene``      one image: background, character, distractor, occluders, lighting, JPEG (:func:`render_image`)
``writer``     the data set tree, its extras and marker file (:func:`generate_dataset`, :func:`main`)
"""

from .catalogue import (
    BASE_COUNTS,
    CLASS_NAMES,
    CLASSES,
    KEEP_MIN_IMAGES,
    NUISANCE,
    Character,
    class_counts,
    duplicate_counts,
)
from .scene import render_image
from .writer import MARKER_NAME, generate_dataset, main

__all__ = [
    "BASE_COUNTS",
    "CLASSES",
    "CLASS_NAMES",
    "KEEP_MIN_IMAGES",
    "MARKER_NAME",
    "NUISANCE",
    "Character",
    "class_counts",
    "duplicate_counts",
    "generate_dataset",
    "main",
    "render_image",
]
