"""One image is decoded the same way by the filter, prepare and predict: upright, 8-bit, transparency on white."""
import numpy as np
import pytest
from PIL import Image

from odd_files import (BLUE, RED, WHITE, animated_gif, cmyk_jpeg, corrupt_exif_jpeg, exif_rotated_jpeg, img,
                       palette_transparent_png, sixteen_bit_png)
from reslab.data import images
from reslab.data.filtering import check_image
from reslab.data.prepared import load_resized


def decode(path):
    with Image.open(path) as im:
        rgb, notes = images.to_rgb(im)
        return np.asarray(rgb).copy(), notes


def close(pixel, colour, tol=8):
    return bool(np.all(np.abs(pixel.astype(int) - colour) <= tol))


def test_sixteen_bit_is_scaled_not_clipped(tmp_path):
    arr, notes = decode(sixteen_bit_png(tmp_path / "g.png"))
    assert notes == (images.SIXTEEN_BIT,)
    ramp = arr[0, :, 0]
    assert ramp[0] == 0 and ramp[-1] == 255 and abs(int(ramp[16]) - 132) <= 1  # 65535 * 16/31 / 257
    assert np.all(np.diff(ramp.astype(int)) > 0)  # clipping would make all but the first column 255


def test_palette_transparency_is_composited_over_white_without_a_warning(tmp_path, recwarn):
    arr, notes = decode(palette_transparent_png(tmp_path / "p.png"))
    assert notes == (images.PALETTE_TRANSPARENCY,)
    assert close(arr[0, 0], WHITE) and close(arr[0, -1], BLUE)
    assert len(recwarn) == 0


def test_alpha_is_composited_over_white(tmp_path):
    rgba = np.zeros((16, 20, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:, 10:, 3] = 255  # left half fully transparent red
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    arr, notes = decode(tmp_path / "a.png")
    assert notes == (images.TRANSPARENCY,)
    assert close(arr[0, 0], WHITE) and close(arr[0, -1], RED)
    rgba[..., 3] = 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "opaque.png")
    opaque, notes = decode(tmp_path / "opaque.png")
    assert notes == () and close(opaque[0, 0], RED)  # an alpha channel that hides nothing is not counted


def test_cmyk_animated_and_exif_rotated(tmp_path):
    arr, notes = decode(cmyk_jpeg(tmp_path / "c.jpg"))
    assert notes == (images.CMYK,) and close(arr[8, 10], RED)
    arr, notes = decode(animated_gif(tmp_path / "a.gif"))
    assert notes == (images.ANIMATED,) and close(arr[8, 10], RED)  # the first frame, not the last
    arr, notes = decode(exif_rotated_jpeg(tmp_path / "r.jpg"))
    assert notes == (images.EXIF_ROTATED,) and arr.shape == (40, 20, 3)  # stored 40x20, shown 20x40
    assert close(arr[2, 10], RED) and close(arr[-3, 10], BLUE)


@pytest.mark.parametrize("make, name, top, bottom", [
    (exif_rotated_jpeg, "r.jpg", RED, BLUE),  # orientation applied before the resize
    (palette_transparent_png, "p.png", WHITE, WHITE),
    (cmyk_jpeg, "c.jpg", RED, RED),
])
def test_prepare_decodes_as_the_filter_does(tmp_path, make, name, top, bottom):
    path = make(tmp_path / name)
    small = load_resized(str(path), 8)
    assert small.shape == (8, 8, 3) and small.dtype == np.uint8
    assert close(small[0, 0], top, tol=30) and close(small[-1, 0], bottom, tol=30)
    full, _ = decode(path)
    assert check_image(str(path)).width == full.shape[1]


def test_warnings_are_caught_and_attributed(tmp_path, recwarn):
    check = check_image(str(corrupt_exif_jpeg(tmp_path / "x.jpg")))
    assert check.ok and len(check.warnings) == 1 and check.warnings[0].startswith("UserWarning: Corrupt EXIF data")
    assert len(recwarn) == 0  # nothing reaches the console


def test_too_small_images_are_named(tmp_path):
    check = check_image(str(img(tmp_path / "t.png", size=(30, 5))), min_image_size=8)
    assert (check.ok, check.reason, check.detail) == (False, "too small", "30x5 px; filter.min_image_size is 8")
    assert check_image(str(img(tmp_path / "ok.png", size=(8, 8))), min_image_size=8).ok
