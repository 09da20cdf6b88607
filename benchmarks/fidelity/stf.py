"""Golden outputs of the authors' STF (Googolxx/STF, SymmetricalTransFormer) at reduced width, fixed weights.

Run by hand, never by CI, with the authors' code checked out outside this repository (their
repository vendors CompressAI 1.1.6dev0, whose C++ coder must be built in place):

    git clone https://github.com/Googolxx/STF /tmp/authors/stf
    git -C /tmp/authors/stf checkout bbcfe3a48f195eda1e3af4a103ae4d00b5b84331
    (cd /tmp/authors/stf && ../../work/main/.venv/bin/python setup.py build_ext --inplace)   # needs pybind11
    pip install --no-deps --target /tmp/authors/site timm==0.4.12                            # their pin
    PYTHONPATH=/tmp/authors/stf:/tmp/authors/site:$PWD .venv/bin/python -m benchmarks.fidelity.stf --repo /tmp/authors/stf

Their ``SymmetricalTransFormer.__init__`` sizes the hyperprior and the ChARM transforms for
embed_dim 48 with literal widths (384, 336, …, 32-channel slices); the script builds their class
at embed_dim 4 and replaces exactly those modules by the same layer sequence at this width (their
``conv3x3``/``subpel_conv3x3``/``conv`` helpers, widths stepping by embed_dim as 384 → 192 does at
48, one hidden ChARM width of 16, 4 slices of 8 channels). Everything that runs — Swin stages,
patch merging/splitting, the slice loop, rounding, their CompressAI entropy models and rANS — is
theirs. Writes tests/expected/fidelity/stf/.
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

REPOSITORY = "Googolxx/STF"
SEED = 20231111
CROP = (128, 128)
E, SLICES, HIDDEN = 4, 4, 16
#: ctrlic's SymmetricalTransFormer with the same architecture
OURS = {"embed_dim": E, "depths": [2, 2, 2, 2], "num_heads": [1, 2, 2, 4], "window_size": 4, "num_slices": SLICES,
        "charm_widths": [HIDDEN]}
TOLERANCES = {"forward_x_hat": {"atol": 1e-5, "rtol": 0}, "decoded_x_hat": {"atol": 1e-5, "rtol": 0},
              "likelihoods": {"atol": 2e-6, "rtol": 0}, "estimated_bits": {"rtol": 1e-6},
              "why": "float32 sums in another order (window attention, LayerNorm)"}
#: how the test compares the y and z strings: "md5" (bit-identical) or "bytes" (same length)
PAYLOAD = {"y": "md5", "z": "md5"}


def build() -> nn.Module:
    from compressai.models.stf import SymmetricalTransFormer

    torch.manual_seed(SEED)
    model = SymmetricalTransFormer(embed_dim=E, depths=OURS["depths"], num_heads=OURS["num_heads"],
                                   window_size=4, num_slices=SLICES)
    return shrink_entropy_model(model).eval()


def shrink_entropy_model(model: nn.Module) -> nn.Module:
    """Replace the literal-width hyperprior and ChARM modules (sized for embed_dim 48) by the same
    layers at ``E``, built with the CompressAI helpers on ``sys.path`` (STF's and CALICE's code)."""
    from compressai.entropy_models import EntropyBottleneck
    from compressai.layers import conv3x3, subpel_conv3x3
    from compressai.models.utils import conv

    M, Z, s = 8 * E, 4 * E, 8 * E // SLICES
    gelu = nn.GELU
    model.h_a = nn.Sequential(conv3x3(M, M), gelu(), conv3x3(M, M - E), gelu(), conv3x3(M - E, M - 2 * E, stride=2),
                              gelu(), conv3x3(M - 2 * E, M - 3 * E), gelu(), conv3x3(M - 3 * E, Z, stride=2))

    def hyper_synthesis() -> nn.Sequential:
        return nn.Sequential(conv3x3(Z, Z + E), gelu(), subpel_conv3x3(Z + E, Z + 2 * E, 2), gelu(),
                             conv3x3(Z + 2 * E, Z + 3 * E), gelu(), subpel_conv3x3(Z + 3 * E, M, 2), gelu(),
                             conv3x3(M, M))

    def charm(extra: int) -> nn.ModuleList:
        support = model.max_support_slices
        return nn.ModuleList(
            nn.Sequential(conv(M + s * min(i + extra, support + extra), HIDDEN, stride=1, kernel_size=3), gelu(),
                          conv(HIDDEN, s, stride=1, kernel_size=3))
            for i in range(SLICES))

    model.h_mean_s, model.h_scale_s = hyper_synthesis(), hyper_synthesis()
    model.cc_mean_transforms, model.cc_scale_transforms, model.lrp_transforms = charm(0), charm(0), charm(1)
    model.entropy_bottleneck = EntropyBottleneck(Z)
    return model


def main() -> None:
    args = parse_args(__doc__, REPOSITORY)
    model = build()
    fix_weights(model, SEED)
    weights = {k: v.clone() for k, v in model.state_dict().items()}  # before update(): empty CDF tables
    crop = load_crop(*CROP)
    tensors, results = run_lic(model, to_unit(crop))
    meta = {"method": "stf", "repository": REPOSITORY, "commit": args.commit, "seed": SEED,
            "command": "PYTHONPATH=/tmp/authors/stf:/tmp/authors/site:$PWD .venv/bin/python -m "
                       "benchmarks.fidelity.stf --repo /tmp/authors/stf",
            "their_model": f"compressai.models.stf.SymmetricalTransFormer(embed_dim={E}, depths=[2,2,2,2], "
                           f"num_heads=[1,2,2,4], window_size=4, num_slices={SLICES}); h_a, h_mean_s, h_scale_s, "
                           "cc_*_transforms, lrp_transforms, entropy_bottleneck rebuilt at this width",
            "environment": compressai_info()}
    write_case(args.out or EXPECTED / "stf", meta=meta, weights=weights, crop=crop, outputs=tensors,
               tables=coding_tables(model),
               expected={"ours": {"backbone": "stf", "kwargs": OURS}, "tolerances": TOLERANCES,
                         "payload_check": PAYLOAD, **results})


if __name__ == "__main__":
    main()
