"""GPU suite, coding: what a GPU encodes, a CPU decodes.

Every lossy codec of the experiments, at paper size with seeded random weights (adapters and prompts
woken from their zero start), codes the bundled Kodak images on the GPU (the anchors and Control-GIC all
four, the adapter and prompt variants the first: see ``ONE_IMAGE``); a CPU-only copy loaded from the
exported codec file decodes them. On the device-robust ``cpu64`` entropy path every CPU decode must give
the GPU decoder's latents bit for bit and its pixels within a rounding. The ``native`` path is measured,
not asserted (latents only): how many images the CPU decodes wrongly is the reason ``cpu64`` exists
(``CTRLIC_GPU_REPORT`` records it). MGCF and CALLIC
(its per-image fit on the GPU) must decode bit-exactly on the CPU. ``CTRLIC_TEST_DEVICE=cpu`` rehearses
all of it at tiny size on 128² crops.
"""

from __future__ import annotations

import pytest
import torch
from compressai.models import CompressionModel

from ctrlic.codecs.build import load_codec
from ctrlic.codecs.entropy.robust import ENTROPY_PATHS
from tests.helpers_gpu import (
    LOSSLESS,
    LOSSY,
    ONE_IMAGE,
    cross_decode,
    export_random_codec,
    lossless_cross_decode,
    middle_knobs,
    report,
    target,
)

pytestmark = pytest.mark.gpu
#: decoded pixels of the two decoders (8 bits) may differ this much: the synthesis transforms run in fp32
#: on different devices (TF32 off), so a value near a rounding edge may land on either side; a wrongly
#: decoded symbol differs far more
PIXEL_TOLERANCE = 2


@pytest.mark.parametrize("experiment", LOSSY)
def test_gpu_encoded_images_decode_on_the_cpu(experiment, tmp_path):
    tgt = target()
    path, _ = export_random_codec(experiment, tmp_path, tgt)
    device_codec, cpu_codec = load_codec(path).to(tgt.device), load_codec(path)
    device_codec.prepare()
    assert device_codec.fingerprint == cpu_codec.fingerprint
    knobs = middle_knobs(cpu_codec)
    robust = "cpu64" if cpu_codec.backbone.robust_entropy else "native"
    rows = {p: [] for p in ENTROPY_PATHS if p == robust or p == "native"}
    for name, x in tgt.images(1 if experiment in ONE_IMAGE else None):
        for entropy_path in rows:
            row = cross_decode(device_codec, cpu_codec, tgt, x, knobs, entropy_path, pixels=entropy_path == robust)
            rows[entropy_path].append({"image": name, **row})
    native = rows["native"]
    report({"test": "cross_decode", "codec": experiment, "knobs": knobs, "robust_path": robust,
            "images": len(rows[robust]), "robust_ok": sum(r["latents_equal"] for r in rows[robust]),
            "native_mismatches": sum(r["error"] is not None or r["max_latent_diff"] > 0.25 for r in native),
            "rows": rows})
    for row in rows[robust]:  # Control-GIC has only the native path: its latents are codebook look-ups
        assert row["error"] is None and row["latents_equal"], row
        assert row["max_pixel_diff"] <= PIXEL_TOLERANCE, row


@pytest.mark.parametrize("experiment", LOSSLESS)
def test_lossless_gpu_encodes_decode_bit_exactly_on_the_cpu(experiment, tmp_path):
    tgt = target()
    path, _ = export_random_codec(experiment, tmp_path, tgt)
    device_codec, cpu_codec = load_codec(path).to(tgt.device), load_codec(path)
    device_codec.prepare()
    knobs = middle_knobs(cpu_codec)
    if experiment == "callic":
        assert knobs["steps"] > 0  # the per-image fit runs (on the device)
    _, x = tgt.images()[0]
    x = x[..., 192:320, 320:448] if tgt.paper else x[..., :32, :32]  # coding scans per pixel: a 128² crop
    row = lossless_cross_decode(device_codec, cpu_codec, x, knobs)
    report({"test": "lossless_cross_decode", "codec": experiment, "knobs": knobs, "shape": list(x.shape[-2:]), **row})
    assert row["cpu_exact"] and row["device_exact"], row


def test_cdf_tables_do_not_depend_on_the_device(tmp_path):
    tgt = target()
    path, _ = export_random_codec("anchor_stf", tmp_path, tgt)
    device_codec, cpu_codec = load_codec(path).to(tgt.device), load_codec(path)
    cpu_tables = cpu_codec.backbone.state_dict()

    def count_differing(backbone) -> dict[str, int]:
        tables = {k: v for k, v in backbone.state_dict().items() if k.endswith("_quantized_cdf")}
        assert tables and all(t.device.type == torch.device(tgt.device).type for t in tables.values())
        return {k: int((t.cpu() != cpu_tables[k]).sum()) if t.shape == cpu_tables[k].shape else -1
                for k, t in tables.items()}

    on_device = load_codec(path).to(tgt.device)  # for the record: CompressAI's own update() builds them there
    with tgt.arithmetic():
        CompressionModel.update(on_device.backbone, force=True)
    built_on_device = count_differing(on_device.backbone)
    with tgt.arithmetic():  # ours (what prepare() calls) builds them on the CPU wherever the model lives
        device_codec.backbone.update(force=True)
        device_codec.prepare()
    differing = count_differing(device_codec.backbone)
    report({"test": "cdf_tables", "codec": "anchor_stf", "differing_entries": differing,
            "differing_entries_if_built_on_the_device": built_on_device})
    assert not any(differing.values()), differing
