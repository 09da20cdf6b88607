"""Golden outputs of the authors' TCM (jmliu206/LIC_TCM) at reduced width, fixed weights.

Run by hand, never by CI, with the authors' code checked out outside this repository. LIC_TCM
imports the installed ``compressai`` and pins no version; its ``CompressionModel.__init__(
entropy_bottleneck_channels=N)`` call fails on CompressAI 1.2.4 (CALICE's copy comments it out) and
runs on ctrlic's 1.2.8, which made these files:

    git clone https://github.com/jmliu206/LIC_TCM /tmp/authors/tcm
    git -C /tmp/authors/tcm checkout 6c6d7a364817a4c372bd210dbbcb175f9172caa0
    pip install --no-deps --target /tmp/authors/site timm==0.4.12
    PYTHONPATH=/tmp/authors/tcm:/tmp/authors/site:$PWD .venv/bin/python -m benchmarks.fidelity.tcm --repo /tmp/authors/tcm

Their ``TCM.__init__`` takes ``config``, ``head_dim``, ``N``, ``M``, ``num_slices`` and
``max_support_slices`` but sizes the hyperprior and the entropy model with literals (320 and 192
channels, hyper head width 32, SWAtten head width 16 and inner width 128, ChARM widths 224/128,
``min(i, 5)`` supports). The script builds their class with N 8, M 32, 4 slices (support 2),
config [2, 1, 1, 1, 1, 2], head width 4, and replaces exactly those modules by the same layers at
this width with their own blocks (``ResidualBlockWithStride``, ``ConvTransBlock`` with window 4,
``SWAtten`` with window 8, ``conv``): z 16 channels, hyper head width 4, SWAtten head width 8 and
inner width 16, one ChARM width 16. Their windows (8 in g_a/g_s and SWAtten, 4 in the hyperprior)
are kept; their SWAtten only runs when y is larger than its window, so the crop is 256×256 and
the images are stored as their central 64×64 pixels and an 8×8-pooled copy. Writes
tests/expected/fidelity/tcm/.
"""

from __future__ import annotations

import torch
from torch import nn

from benchmarks.fidelity.common import (
    EXPECTED,
    coding_tables,
    compressai_info,
    fix_weights,
    load_crop,
    parse_args,
    run_lic,
    to_unit,
    write_case,
)

REPOSITORY = "jmliu206/LIC_TCM"
SEED = 20240419
CROP = (256, 256)  # their SWAtten pads y ≤ its window 8 to 9 × 9 and fails: y needs 16 × 16
WINDOW = 64
N, M, SLICES, SUPPORT, Z = 8, 32, 4, 2, 16
CONFIG, HEAD = [2, 1, 1, 1, 1, 2], 4
ATTEN_DIM, ATTEN_HEAD, HIDDEN = 16, 8, 16
#: ctrlic's TCM with the same architecture
OURS = {"config": CONFIG, "head_dim": [HEAD] * 6, "N": N, "M": M, "num_slices": SLICES, "max_support_slices": SUPPORT,
        "window_size": 8, "hyper_window_size": 4, "hyper_head_dim": HEAD, "z_channels": Z, "atten_dim": ATTEN_DIM,
        "atten_head_dim": ATTEN_HEAD, "charm_widths": [HIDDEN]}
TOLERANCES = {"forward_x_hat": {"atol": 1e-5, "rtol": 0}, "decoded_x_hat": {"atol": 1e-5, "rtol": 0},
              "likelihoods": {"atol": 2e-6, "rtol": 0}, "estimated_bits": {"rtol": 1e-6},
              "why": "float32 sums in another order (window attention, LayerNorm)"}
#: how the test compares the y and z strings: "md5" (bit-identical) or "bytes" (same length)
PAYLOAD = {"y": "md5", "z": "md5"}


def build() -> nn.Module:
    from models import tcm

    torch.manual_seed(SEED)
    model = tcm.TCM(config=CONFIG, head_dim=[HEAD] * 6, drop_path_rate=0.0, N=N, M=M, num_slices=SLICES,
                    max_support_slices=SUPPORT)
    return shrink_entropy_model(model, tcm).eval()


def shrink_entropy_model(model: nn.Module, blocks) -> nn.Module:
    """Replace the literal-width hyperprior, SWAtten and ChARM modules by the same layers at this
    width, with ``ConvTransBlock``/``SWAtten`` from ``blocks`` (LIC_TCM's or CALICE's copy)."""
    from compressai.entropy_models import EntropyBottleneck
    from compressai.layers import ResidualBlockUpsample, ResidualBlockWithStride, conv3x3, subpel_conv3x3
    from compressai.models.utils import conv

    s = M // SLICES

    def hyper_blocks(count: int) -> list[nn.Module]:
        return [blocks.ConvTransBlock(N, N, HEAD, 4, 0, "W" if not i % 2 else "SW") for i in range(count)]

    model.h_a = nn.Sequential(ResidualBlockWithStride(M, 2 * N, 2), *hyper_blocks(CONFIG[0]),
                              conv3x3(2 * N, Z, stride=2))
    model.h_mean_s = nn.Sequential(ResidualBlockUpsample(Z, 2 * N, 2), *hyper_blocks(CONFIG[3]),
                                   subpel_conv3x3(2 * N, M, 2))
    model.h_scale_s = nn.Sequential(ResidualBlockUpsample(Z, 2 * N, 2), *hyper_blocks(CONFIG[3]),
                                    subpel_conv3x3(2 * N, M, 2))

    def width(i: int, extra: int = 0) -> int:
        return M + s * min(i + extra, SUPPORT + extra)

    def atten() -> nn.ModuleList:
        return nn.ModuleList(
            nn.Sequential(blocks.SWAtten(width(i), width(i), ATTEN_HEAD, 8, 0, inter_dim=ATTEN_DIM))
            for i in range(SLICES))

    def charm(extra: int) -> nn.ModuleList:
        return nn.ModuleList(nn.Sequential(conv(width(i, extra), HIDDEN, stride=1, kernel_size=3), nn.GELU(),
                                           conv(HIDDEN, s, stride=1, kernel_size=3)) for i in range(SLICES))

    model.atten_mean, model.atten_scale = atten(), atten()
    model.cc_mean_transforms, model.cc_scale_transforms, model.lrp_transforms = charm(0), charm(0), charm(1)
    model.entropy_bottleneck = EntropyBottleneck(Z)
    return model


def main() -> None:
    args = parse_args(__doc__, REPOSITORY)
    model = build()
    fix_weights(model, SEED)
    weights = {k: v.clone() for k, v in model.state_dict().items()}  # before update(): empty CDF tables
    crop = load_crop(*CROP)
    tensors, results = run_lic(model, to_unit(crop), WINDOW)
    meta = {"method": "tcm", "repository": REPOSITORY, "commit": args.commit, "seed": SEED,
            "command": "PYTHONPATH=/tmp/authors/tcm:/tmp/authors/site:$PWD .venv/bin/python -m "
                       "benchmarks.fidelity.tcm --repo /tmp/authors/tcm",
            "their_model": f"models.tcm.TCM(config={CONFIG}, head_dim={[HEAD] * 6}, N={N}, M={M}, "
                           f"num_slices={SLICES}, max_support_slices={SUPPORT}); h_a, h_mean_s, h_scale_s, "
                           "atten_*, cc_*_transforms, lrp_transforms, entropy_bottleneck rebuilt at this width",
            "environment": compressai_info()}
    write_case(args.out or EXPECTED / "tcm", meta=meta, weights=weights, crop=crop, outputs=tensors,
               tables=coding_tables(model),
               expected={"ours": {"backbone": "tcm", "kwargs": OURS}, "tolerances": TOLERANCES,
                         "payload_check": PAYLOAD, **results})


if __name__ == "__main__":
    main()
