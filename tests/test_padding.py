"""Padding is a coding option recorded in the header: every mode round-trips odd sizes, the authors'
protocols pad as their scripts do, and each paper experiment evaluates with its authors' protocol."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F

from ctrlic.codecs import bitstream
from ctrlic.codecs.bitstream import BitstreamError
from ctrlic.codecs.build import build_codec
from ctrlic.codecs.padding import EXTRAS_KEY, Padding, PaddingError
from ctrlic.evaluation.evaluate import evaluate
from ctrlic.evaluation.settings import SweepSettings
from tests.conftest import ROOT
from tests.test_codec import BACKBONE

SPECS = ["replicate", "zero", "centre-replicate", "centre-zero", "centre-zero:128", "replicate:128"]
#: (height, width) of the odd-sized test image
SIZE = (499, 753)


def authors_pad(x: torch.Tensor, p: int) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """The ``pad`` of the authors' evaluation scripts (STF's and TIC's eval_model, LIC_TCM eval.py,
    CALICE utils/engine.py), written from reading them: centred, zeros, left/top get the smaller half."""
    h, w = x.size(2), x.size(3)
    new_h, new_w = (h + p - 1) // p * p, (w + p - 1) // p * p
    left, top = (new_w - w) // 2, (new_h - h) // 2
    padding = (left, new_w - w - left, top, new_h - h - top)
    return F.pad(x, padding, mode="constant", value=0), padding


@pytest.fixture(scope="module")
def codec():
    torch.manual_seed(0)
    codec = build_codec(BACKBONE)
    codec.prepare()
    return codec


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    return torch.rand(1, 3, *SIZE, generator=torch.Generator().manual_seed(5))


@pytest.mark.parametrize("size", [SIZE, (64, 64), (1, 1), (130, 129)])
@pytest.mark.parametrize("multiple", [64, 128])
def test_centre_zero_pads_and_crops_as_the_authors_scripts(size, multiple):
    x = torch.rand(1, 3, *size)
    padding = Padding.parse(f"centre-zero:{multiple}").resolved(64)
    theirs, amounts = authors_pad(x, multiple)
    assert torch.equal(padding.pad(x), theirs)
    assert padding.amounts(*size) == amounts
    assert torch.equal(padding.crop(theirs, *size), x)


def test_ours_pads_right_and_bottom_by_replication():
    x = torch.rand(1, 3, *SIZE)
    padded = Padding().resolved(64).pad(x)
    assert padded.shape[-2:] == (512, 768)
    assert torch.equal(padded[..., :SIZE[0], :SIZE[1]], x)
    assert torch.equal(padded[..., -1, :SIZE[1]], x[..., -1, :]) and torch.equal(padded[..., :SIZE[0], -1], x[..., -1])


@pytest.mark.parametrize("spec", SPECS)
def test_every_padding_round_trips_an_odd_sized_image(codec, image, spec):
    codec.set_options(padding=spec)
    try:
        data = codec.compress(image)
        padded = codec.pad(image)
    finally:
        codec.set_options(padding=None)
    header = bitstream.read_header(data)
    recorded = header.extras.get(EXTRAS_KEY)
    assert recorded == (None if spec == "replicate" else Padding.parse(spec).resolved(64).spec)  # multiple written out
    x_hat = codec.decompress(data)  # the decoder's own option is ours: it follows the header
    assert x_hat.shape == image.shape
    with torch.no_grad():
        forward = codec(padded)["x_hat"].clamp(0, 1)
    assert (x_hat - Padding.parse(spec).resolved(64).crop(forward, *SIZE)).abs().mean() < 0.05


def test_paddings_change_the_bits_and_tiles_are_padded_alike(codec):
    image = torch.rand(1, 3, 150, 270, generator=torch.Generator().manual_seed(6))
    payloads = set()
    for spec in ("replicate", "centre-zero"):
        codec.set_options(padding=spec)
        payloads.add(b"".join(bitstream.parse(codec.compress(image))[1]))
    codec.set_options(padding="centre-zero:128", tile=128)
    try:
        data = codec.compress(image)
    finally:
        codec.set_options(padding=None, tile=None)
    assert len(payloads) == 2
    assert bitstream.read_header(data).extras["tile"] == [128, 2]  # 6 tiles, each padded to 128 × 128
    assert codec.decompress(data).shape == image.shape


@pytest.mark.parametrize("spec", ["centre", "zeros", "centre-zero:abc", "mirror:64", "left-zero"])
def test_a_malformed_padding_says_how_to_write_one(spec):
    with pytest.raises(PaddingError, match=r"\[centre-\]\{replicate\|zero\}"):
        Padding.parse(spec)


@pytest.mark.parametrize("spec", ["zero:96", "zero:32", "zero:2048"])
def test_a_multiple_the_backbone_cannot_use_is_refused(codec, spec):
    with pytest.raises(PaddingError, match="multiple of this backbone's 64"):
        codec.set_options(padding=spec)
    assert codec.options.padding == Padding().resolved(64)


@pytest.mark.parametrize("spec", ["zero:1048576", "sideways", 7])
def test_a_bitstream_asking_for_impossible_padding_is_refused(codec, spec):
    header, sections = bitstream.parse(codec.compress(torch.rand(1, 3, 70, 70)))
    forged = bitstream.pack(bitstream.Header(**{**header.__dict__, "extras": {EXTRAS_KEY: spec}}), sections)
    with pytest.raises(BitstreamError, match="asks for padding"):
        codec.decompress(forged)


def test_evaluation_codes_with_the_configured_padding_and_says_so(codec, tmp_path):
    image = torch.rand(1, 3, 99, 131, generator=torch.Generator().manual_seed(7))
    settings = SweepSettings(padding="centre-zero:128", save_bitstreams=True, bd_reference=None)
    results = evaluate(codec, {"odd": [{"x": image, "name": "odd.png"}]}, tmp_path, settings)["odd"]
    assert results["meta"]["padding"] == "centre-zero:128"
    stream = next((tmp_path / "bitstreams" / "odd").rglob("*.ctl")).read_bytes()
    assert bitstream.read_header(stream).extras[EXTRAS_KEY] == "centre-zero:128"
    assert codec.options.padding == Padding().resolved(64)  # the codec's own option is left as it was


#: each paper experiment's evaluation padding and where its authors' script sets it
AUTHORS = {
    "anchor_cheng": ("centre-zero:64", "compressai/utils/eval_model/__main__.py:111-113"),
    "anchor_stf": ("centre-zero:64", "STF@bbcfe3a) compressai/utils/eval_model/__main__.py:89-101"),
    "anchor_tcm": ("centre-zero:128", "LIC_TCM@6c6d7a3) eval.py:76"),
    "anchor_tic": ("centre-zero:64", "TIC@c2f8ff9) compressai/utils/eval_model/__main__.py:97-109"),
    "calice_stf": ("centre-zero:128", "CALICE@1229810) src/evaluate/eval_continuous.py:154"),
    "calice_tcm": ("centre-zero:128", "CALICE@1229810) src/evaluate/eval_continuous.py:154"),
    "calice_cheng": ("centre-zero:128", "CALICE@1229810) src/evaluate/eval_continuous.py:154"),
    "calice_stf_msssim": ("centre-zero:128", "CALICE@1229810) src/evaluate/eval_continuous.py:154"),
    "calice_stf_lpips": ("centre-zero:128", "CALICE@1229810) src/evaluate/eval_continuous.py:154"),
    "calice_stf_msssim_adapt": ("centre-zero:128", "CALICE@1229810) src/utils/engine.py:224"),
    "calice_stf_lpips_adapt": ("centre-zero:128", "CALICE@1229810) src/utils/engine.py:224"),
    "beta_calice_stf": ("centre-zero:128", "CALICE@1229810) src/evaluate/eval_continuous_rdp.py:121"),
    "control_gic": ("centre-zero:16", "Control-GIC@e1c3afe) inference_high_resolution.py:227-228"),
}


@pytest.mark.parametrize("experiment", sorted(AUTHORS))
def test_paper_experiments_evaluate_with_their_authors_padding(experiment):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base=None):
        cfg = compose(config_name="config", overrides=[f"experiment={experiment}", "task=eval"])
    spec, source = AUTHORS[experiment]
    assert cfg.eval.padding == spec
    text = (ROOT / "conf" / "experiment" / f"{experiment}.yaml").read_text()
    assert re.search(rf"padding: {re.escape(spec)} +# .*{re.escape(source)}", text), "cite the script and line"
    assert SweepSettings(**cfg.eval).coding_options()["padding"] == spec


def test_experiments_without_an_authors_protocol_keep_ours():
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base=None):
        for experiment in ("demo", "demo_calice", "mgcf"):
            cfg = compose(config_name="config", overrides=[f"experiment={experiment}"])
            assert cfg.eval.padding is None, experiment
