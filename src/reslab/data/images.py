"""One image opened the same way everywhere: the filter, prepare and `reslab predict` see the same RGB pixels.

`to_rgb` turns whatever Pillow opened into an upright 8-bit RGB image and names what it had to convert, so the data
report can say how many of each it found:

- EXIF orientation is applied (a phone photo stored sideways is turned upright) before anything resizes it;
- an animated image (GIF, APNG, WebP, MPO, multi-page TIFF) contributes its first frame;
- 16-bit grayscale is scaled to 8 bits (65535 -> 255); Pillow's own `convert` clips it, turning most of it white;
- transparency (an alpha channel, or a palette or single colour marked transparent) is composited over white, the
  colour a viewer usually shows behind it; the colours stored under transparent pixels are arbitrary;
- CMYK is converted by Pillow (its JPEG decoder already undoes Adobe's inverted CMYK).
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageOps

# The names `to_rgb` reports, in the order the data report lists them.
EXIF_ROTATED = "EXIF-rotated"
ANIMATED = "animated (first frame used)"
SIXTEEN_BIT = "16-bit (scaled to 8-bit)"
PALETTE_TRANSPARENCY = "palette with transparency"
TRANSPARENCY = "transparency (composited over white)"
CMYK = "CMYK"
CONVERSIONS = (EXIF_ROTATED, ANIMATED, SIXTEEN_BIT, PALETTE_TRANSPARENCY, TRANSPARENCY, CMYK)

_EXIF_ORIENTATION = 0x0112  # 1 = upright; 2-8 = mirrored and/or rotated
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")  # Pillow opens 16-bit PNG/TIFF grayscale as these
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")
_WHITE = (255, 255, 255)


def to_rgb(img: Image.Image, draft_size: tuple[int, int] | None = None) -> tuple[Image.Image, tuple[str, ...]]:
    """Decode an opened image into upright 8-bit RGB; return it with the CONVERSIONS that were needed.

    Args:
        img: as returned by `Image.open`, not yet loaded. Use the result before closing `img`: when no conversion
            was needed the result is `img` itself.
        draft_size: lets the JPEG decoder decode at a reduced scale that still covers this size (prepare's resize).

    Raises whatever Pillow raises for a file it cannot decode.
    """
    notes: list[str] = []
    if getattr(img, "is_animated", False):
        notes.append(ANIMATED)
        img.seek(0)
    if draft_size is not None:
        img.draft("RGB", draft_size)  # before load(); a no-op for formats other than JPEG
    orientation = img.getexif().get(_EXIF_ORIENTATION, 1)
    img.load()  # a truncated file fails here, not at open()
    if orientation in range(2, 9):
        img = ImageOps.exif_transpose(img)
        notes.append(EXIF_ROTATED)
    if img.mode in _SIXTEEN_BIT_MODES:
        img = Image.fromarray(_sixteen_to_eight_bit(np.asarray(img)), "L")
        notes.append(SIXTEEN_BIT)
    if "transparency" in img.info and img.mode in ("P", "L", "RGB"):
        if img.mode == "P":
            notes.append(PALETTE_TRANSPARENCY)
        img = img.convert("RGBA")  # P -> RGB directly would ignore the transparency (and warn)
    if img.mode in _ALPHA_MODES:
        rgba = img.convert("RGBA")
        alpha = rgba.getchannel("A")
        if alpha.getextrema()[0] < 255 and PALETTE_TRANSPARENCY not in notes:
            notes.append(TRANSPARENCY)
        img = Image.new("RGB", rgba.size, _WHITE)
        img.paste(rgba, mask=alpha)
    if img.mode == "CMYK":
        notes.append(CMYK)
    if img.mode != "RGB":
        img = img.convert("RGB")
    return img, tuple(notes)


def _sixteen_to_eight_bit(values: np.ndarray) -> np.ndarray:
    """0..65535 -> 0..255, rounded (mode "I" holds 32-bit ints; read as 16-bit, the depth it is opened from)."""
    wide = np.clip(values.astype(np.int64), 0, 65535)
    return ((wide + 128) // 257).astype(np.uint8)
