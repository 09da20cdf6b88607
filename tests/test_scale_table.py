"""The Gaussian scale table: fast CDF indexes equal CompressAI's, and a finer table as a coding option that the
container records, that saves bits, and that leaves the weights, the default bits and the decoded image alone."""

import pytest
import torch
from compressai.entropy_models import GaussianConditional
from compressai.models.base import get_scale_table

from ctrlic.codecs import bitstream
from ctrlic.codecs.build import build_codec
from ctrlic.codecs.entropy import bit_map, scale_table
from tests import golden


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_scale_indexes_equal_build_indexes_on_every_boundary(dtype):
    gc = GaussianConditional(None)
    gc.update_scale_table(get_scale_table(), force=True)
    gc = gc.to(dtype)
    table = gc.scale_table
    scales = torch.cat([torch.rand(5000, dtype=dtype) * 30, table, table.nextafter(torch.zeros((), dtype=dtype)),
                        table.nextafter(torch.full((), 1e3, dtype=dtype)),
                        torch.tensor([0.0, -1.0, float("nan"), float("inf")], dtype=dtype)])
    assert torch.equal(scale_table.scale_indexes(gc, scales), gc.build_indexes(scales))


def test_the_default_table_is_compressais():
    assert torch.equal(scale_table.scale_table(scale_table.LEVELS), get_scale_table())


@pytest.fixture(scope="module")
def cheng():
    return golden.build(golden.CASES[0])


def table_gap(codec, x) -> tuple[bytes, float]:
    """The bitstream, and how far the y bits under the table's scales are from those under the exact scales."""
    with bit_map.recording(*x.shape[-2:]) as recorder:
        data = codec.compress(x)
    return data, abs(recorder.ideals["y"]["table"] - recorder.ideals["y"]["exact"])


def test_a_finer_table_is_recorded_codes_closer_to_the_exact_scales_and_decodes_the_same_image(cheng):
    x = golden.crop(golden.CASES[0])
    default, gap_64 = table_gap(cheng, x)
    cheng.set_options(scale_levels=256)
    try:
        finer, gap_256 = table_gap(cheng, x)
        header, sections = bitstream.unpack(finer)
        assert header.extras[scale_table.EXTRAS_KEY] == 256
        assert header.fingerprint == bitstream.unpack(default)[0].fingerprint
        assert sections[0] != bitstream.unpack(default)[1][0]
        assert torch.equal(cheng.decompress(finer), cheng.decompress(default))
        assert gap_256 < gap_64 / 2
    finally:
        cheng.set_options(scale_levels=scale_table.LEVELS)
    assert cheng.compress(x) == default  # the 64-level tables are back
    assert scale_table.EXTRAS_KEY not in bitstream.unpack(default)[0].extras


def test_a_bitstream_asking_for_a_huge_table_is_refused(cheng):
    header, sections = bitstream.unpack(cheng.compress(golden.crop(golden.CASES[0])))
    header.extras[scale_table.EXTRAS_KEY] = 10**9
    with pytest.raises(bitstream.BitstreamError, match="scale table"):
        cheng.decompress(bitstream.pack(header, sections))


def test_a_backbone_without_gaussian_latents_refuses_a_finer_table():
    backbone, _ = golden.compose(golden.CASES[5])  # mgcf
    codec = build_codec(backbone, None)
    with pytest.raises(scale_table.ScaleTableError, match="no Gaussian latents"):
        codec.set_options(scale_levels=256)
    with pytest.raises(scale_table.ScaleTableError, match="between"):
        build_codec(*golden.compose(golden.CASES[1])).set_options(scale_levels=32)
