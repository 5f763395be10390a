"""A small real-image ImageFolder for the parity harness: hand-drawn clip art from Debian's `openclipart-png`.

    .venv/bin/python benchmarks/clipart_data.py --out .reslab/clipart            # downloads the package (131 MB)
    .venv/bin/python benchmarks/parity.py --data .reslab/clipart --min-images 60 --test-per-class 10 \\
        --out benchmarks/results --date clipart-DATE

The built-in set is synthetic; the parity issue's real set (frames of 5 cartoon characters, about 430 images) is not
public. This is the nearest thing a package registry serves: drawings by many authors (the Open Clip Art Library,
public domain), one folder per category. Five categories, --per-class files of each drawn with --seed from every PNG
under it (subfolders included), so the set has the size where the issue saw reslab's defaults train worse.

Each drawing is composited over white (its transparency would otherwise decode differently: reslab composites over
white, Keras drops the alpha channel), shrunk to at most --max-side px and written as PNG, so that both
implementations read the same RGB pixels. Needs `apt-get` (to download) and `dpkg-deb` (to unpack), or --deb.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

PACKAGE = "openclipart-png"
CLASSES = ("animals", "food", "people", "tools", "transportation")


def download(dest: Path) -> Path:
    """The package's .deb in `dest` (apt-get download; reused when there)."""
    found = sorted(dest.glob(f"{PACKAGE}_*.deb"))
    if found:
        return found[-1]
    dest.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run(["apt-get", "download", PACKAGE], cwd=dest, check=True)
    except (FileNotFoundError, subprocess.CalledProcessError) as e:
        raise SystemExit(f"could not download {PACKAGE} with apt-get ({e}); pass the .deb with --deb") from e
    return sorted(dest.glob(f"{PACKAGE}_*.deb"))[-1]


def flatten(src: Path, dst: Path, max_side: int) -> None:
    Image.MAX_IMAGE_PIXELS = None  # a few drawings are rendered at 13,000 px; the package is trusted
    with Image.open(src) as im:
        im = im.convert("RGBA")
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))
        rgb = Image.alpha_composite(white, im).convert("RGB")
    rgb.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    rgb.save(dst)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="the ImageFolder to write (replaced)")
    ap.add_argument("--deb", type=Path, default=None, help=f"a downloaded {PACKAGE}_*.deb (default: apt-get download)")
    ap.add_argument("--per-class", type=int, default=90)
    ap.add_argument("--max-side", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    deb = args.deb or download(args.out.parent / "debs")
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["dpkg-deb", "-x", str(deb), tmp], check=True)
        root = Path(tmp) / "usr" / "share" / "openclipart" / "png"
        if args.out.exists():
            shutil.rmtree(args.out)
        rng = np.random.default_rng(args.seed)
        counts = {}
        for cls in CLASSES:
            files = sorted(root.joinpath(cls).rglob("*.png"))
            if len(files) < args.per_class:
                raise SystemExit(f"{root / cls}: {len(files)} PNGs, fewer than --per-class {args.per_class}")
            chosen = [files[i] for i in sorted(rng.choice(len(files), args.per_class, replace=False))]
            (args.out / cls).mkdir(parents=True)
            for f in chosen:
                flatten(f, args.out / cls / "__".join(f.relative_to(root / cls).parts), args.max_side)
            counts[cls] = {"available": len(files), "kept": len(chosen)}
    (args.out.parent / f"{args.out.name}.json").write_text(json.dumps(
        {"package": deb.name, "classes": counts, "per_class": args.per_class, "max_side": args.max_side,
         "seed": args.seed}, indent=1) + "\n")
    print(f"{args.out}: {sum(c['kept'] for c in counts.values())} images from {deb.name}: {counts}")


if __name__ == "__main__":
    main()
