"""Build the QVRF/CALICE training set from local copies of ImageNet and CLIC 2020 (QRAF protocol).

The 8000 largest ImageNet training images (by width·height) and all 584 CLIC 2020 professional
training images; every image whose short side exceeds 512 is halved (bicubic) and saved as PNG.
Run: ``python -m ctrlic.datamodules.qraf --imagenet DIR --clic DIR --out DATA/qraf/train/data``.
"""

from __future__ import annotations

import argparse
import heapq
from pathlib import Path

from PIL import Image
from rich.progress import track

from ctrlic.datamodules.image_io import ImageReadError, list_images, load_rgb8

#: QRAF ``Trainningdataset_Preprocessing.py``: n largest ImageNet images; halve if min side > 512
IMAGENET_COUNT = 8000
HALVE_ABOVE = 512


def largest_images(folder: Path, count: int) -> list[Path]:
    """The ``count`` images with the most pixels, reading only the headers."""
    sizes = []
    for path in list_images(folder):
        try:
            with Image.open(path) as im:
                sizes.append((im.width * im.height, str(path)))
        except OSError:
            continue
    return [Path(p) for _, p in heapq.nlargest(count, sizes)]


def preprocess(path: Path, out_dir: Path, prefix: str) -> Path | None:
    """Convert to 8-bit RGB, halve when the short side exceeds 512, save as PNG; None if unreadable."""
    try:
        arr, _ = load_rgb8(path)
    except ImageReadError:
        return None
    image = Image.fromarray(arr)
    if min(image.size) > HALVE_ABOVE:
        image = image.resize((image.width // 2, image.height // 2), Image.Resampling.BICUBIC)
    target = out_dir / f"{prefix}_{path.stem}.png"
    image.save(target)
    return target


def build(imagenet: Path | None, clic: Path | None, out_dir: Path, count: int = IMAGENET_COUNT) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    sources = []
    if imagenet:
        sources += [("imagenet", p) for p in largest_images(imagenet, count)]
    if clic:
        sources += [("clic", p) for p in list_images(clic)]
    written = [preprocess(p, out_dir, prefix) for prefix, p in track(sources, description="QRAF set")]
    return [p for p in written if p is not None]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--imagenet", type=Path, help="ILSVRC2012 train folder (searched recursively)")
    parser.add_argument("--clic", type=Path, help="CLIC 2020 professional_train_2020 folder")
    parser.add_argument("--out", type=Path, required=True, help="output folder (data.train_dir)")
    parser.add_argument("--count", type=int, default=IMAGENET_COUNT, help="how many ImageNet images")
    args = parser.parse_args(argv)
    if not (args.imagenet or args.clic):
        parser.error("give --imagenet and/or --clic")
    for folder in (args.imagenet, args.clic):
        if folder and not folder.is_dir():
            parser.error(f"{folder} is not a folder")
    written = build(args.imagenet, args.clic, args.out, args.count)
    print(f"{len(written)} images written to {args.out}")


if __name__ == "__main__":
    main()
