"""The QRAF/CALICE training-set builder: largest images kept, large ones halved, all PNG."""

from __future__ import annotations

from PIL import Image

from ctrlic.datamodules.qraf import build


def test_build_keeps_the_largest_and_halves_big_images(tmp_path):
    imagenet, clic, out = tmp_path / "imagenet", tmp_path / "clic", tmp_path / "out"
    (imagenet / "n01").mkdir(parents=True)
    clic.mkdir()
    for i, size in enumerate([(600, 700), (300, 200), (1200, 900)]):
        Image.new("RGB", size, (i, i, i)).save(imagenet / "n01" / f"img{i}.JPEG")
    Image.new("RGB", (2048, 1365)).save(clic / "photo.png")
    (clic / "notes.txt").write_text("not an image")
    written = build(imagenet, clic, out, count=2)
    sizes = {p.name: Image.open(p).size for p in written}
    assert sizes == {"imagenet_img2.png": (600, 450), "imagenet_img0.png": (300, 350),
                     "clic_photo.png": (1024, 682)}
