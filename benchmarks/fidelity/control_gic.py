"""Golden outputs of the authors' Control-GIC (lianqi1008/Control-GIC) at reduced width, fixed weights.

Run by hand, never by CI, with the authors' code checked out outside this repository:

    git clone https://github.com/lianqi1008/Control-GIC /tmp/authors/cgic
    git -C /tmp/authors/cgic checkout e1c3afed9c52ad34f777727c386c81d9aa2344a5
    PYTHONPATH=$PWD .venv/bin/python -m benchmarks.fidelity.control_gic --repo /tmp/authors/cgic

Their code needs einops, omegaconf and pytorch_lightning (ctrlic's venv has them). It builds
their ``CGIC`` model (``CGIC/models/model.py``) at ch 8, one ResNet block per level, no attention
outside the mid blocks, codebook 256 × 4, with two changes needed to run it at this width on a
CPU: their ``Normalize`` helpers (GroupNorm with a literal 32 groups) use 4 groups, and the
``.cuda()`` call in ``VectorQuantize2.__init__`` is a no-op. Images enter in [−1, 1] (their
training range). For each ratio setting it runs their ``encode`` (entropy maps, router, merge,
quantizer) and their ``compress`` (Huffman and mask files written and decoded back, then the
decoder), and writes tests/expected/fidelity/control_gic/: the weights (their key layout, with the
256 ``embedding_counter`` entries), the input crop, the entropy maps, masks, indices, the
decoder output and their bpp.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from benchmarks.fidelity.common import (
    EXPECTED,
    fix_weights,
    load_crop,
    parse_args,
    summary,
    to_unit,
    write_case,
)

REPOSITORY = "lianqi1008/Control-GIC"
SEED = 20250710
CROP = (64, 96)
GROUPS = 4
N_EMBED = 256
#: (fine, medium, coarse) settings: every grain, no coarse, no fine, fine alone
RATIOS = [(0.5, 0.4, 0.1), (0.3, 0.6, 0.1), (0.9, 0.1, 0.0), (0.0, 0.5, 0.5), (1.0, 0.0, 0.0)]
#: ctrlic's VQGAN with the same architecture (conf/backbone/vqgan.yaml keys)
OURS = {"ch": 8, "ch_mult": [1, 2, 2, 4, 4], "num_res_blocks": 1, "attn_resolutions": [], "resolution": 64,
        "z_channels": 4, "embed_dim": 4, "n_embed": N_EMBED, "num_groups": GROUPS, "mid_attn": True}
TOLERANCES = {"entropy": {"atol": 2e-6, "rtol": 0},
              "decoder_output": {"atol": 1e-5, "rtol": 0,
                                 "why": "float32 sums in another order (their attention and GroupNorm code)"},
              "masks": "equal", "indices": "equal"}


def build(repo: Path):
    """Their CGIC at the reduced width, on the CPU."""
    from CGIC.modules.vqvae import decoder, vqvae_blocks

    def normalize(channels):  # their Normalize with 4 groups instead of a literal 32
        return torch.nn.GroupNorm(num_groups=GROUPS, num_channels=channels, eps=1e-6, affine=True)

    def spatial_normalize(channels, zq_ch, add_conv):
        return decoder.SpatialNorm(channels, zq_ch, norm_layer=torch.nn.GroupNorm, freeze_norm_layer=False,
                                   add_conv=add_conv, num_groups=GROUPS, eps=1e-6, affine=True)

    vqvae_blocks.Normalize = normalize
    decoder.Normalize = spatial_normalize
    from CGIC.models.model import CGIC

    ddconfig = {"double_z": False, "z_channels": 4, "resolution": 64, "in_channels": 3, "out_ch": 3, "ch": 8,
                "ch_mult": [1, 2, 2, 4, 4], "num_res_blocks": 1, "attn_resolutions": [], "dropout": 0.0,
                "update_router": False,
                "router_config": {"target": "CGIC.modules.vqvae.RouterTriple.TripleGrainFixedEntropyRouter",
                                  "params": {"coarse_grain_ratio": 0.1, "medium_grain_ratio": 0.4}}}
    cuda = torch.nn.Module.cuda
    torch.nn.Module.cuda = lambda self, *args, **kwargs: self  # VectorQuantize2 calls .cuda() in __init__
    try:
        torch.manual_seed(SEED)
        model = CGIC(ddconfig, n_embed=N_EMBED, embed_dim=4, entropy_patch_size=(8, 16))
    finally:
        torch.nn.Module.cuda = cuda
    return model.eval()


def main() -> None:
    args = parse_args(__doc__, REPOSITORY)
    from CGIC.tools.indices_coding import HuffmanCoding
    from CGIC.tools.mask_coding import BinaryCoding

    model = build(args.repo)
    fix_weights(model, SEED)
    gen = torch.Generator().manual_seed(SEED + 1)
    counts = torch.randint(0, 50, (N_EMBED,), generator=gen) * torch.randint(0, 2, (N_EMBED,), generator=gen)
    with torch.no_grad():
        for i, p in model.quantize.embedding_counter.items():
            p.fill_(float(counts[int(i)]))
    crop = load_crop(*CROP)
    x_signed = to_unit(crop) * 2 - 1
    outputs, cases = {}, []
    with torch.no_grad(), tempfile.TemporaryDirectory() as tmp:
        outputs["entropy_p16"] = model.entropy_calculation_p16(x_signed)
        outputs["entropy_p8"] = model.entropy_calculation_p8(x_signed)
        for k, (fine, medium, coarse) in enumerate(RATIOS):
            model.encoder.router_config["params"] = {"coarse_grain_ratio": coarse, "medium_grain_ratio": medium}
            _, _, _, mask, ind, _, mode = model.encode(x_signed)
            dec, bpp, _ = model.compress(x_signed, tmp, HuffmanCoding(model.quantize.embedding_counter),
                                         BinaryCoding(), False)
            for grain, m in zip(("coarse", "medium", "fine"), mask, strict=True):
                outputs[f"case{k}_mask_{grain}"] = m.reshape(m.shape[-2:]).bool()
            outputs[f"case{k}_indices"] = ind.reshape(x_signed.shape[-2] // 4, x_signed.shape[-1] // 4)
            outputs[f"case{k}_decoder_output"] = dec[0]
            cases.append({"ratios": {"fine": fine, "medium": medium, "coarse": coarse}, "mode": int(mode),
                          "bpp_theirs": float(bpp), "decoder_output": summary(dec[0])})
    meta = {"method": "control_gic", "repository": REPOSITORY, "commit": args.commit, "seed": SEED,
            "command": "PYTHONPATH=$PWD .venv/bin/python -m benchmarks.fidelity.control_gic --repo /tmp/authors/cgic",
            "their_model": "CGIC.models.model.CGIC, ch 8, ch_mult [1,2,2,4,4], 1 res block, no attn_resolutions, "
                           "n_embed 256, embed_dim 4; Normalize with 4 groups; .cuda() in VectorQuantize2 a no-op",
            "input_range": "[-1, 1] = 2 * crop / 255 - 1 (their training range; their inference.py feeds [0, 1])"}
    expected = {"ours": {"backbone": "vqgan", "kwargs": OURS, "router": "official"}, "tolerances": TOLERANCES,
                "cases": cases,
                "not_compared": {"bpp_theirs": "their Huffman table is built from the raw counts with heapq ties; "
                                               "ours adds 1 to every count and is canonical (docs/fidelity.md)"}}
    write_case(args.out or EXPECTED / "control_gic", meta=meta, weights=model.state_dict(), crop=crop,
               outputs=outputs, expected=expected)


if __name__ == "__main__":
    main()
