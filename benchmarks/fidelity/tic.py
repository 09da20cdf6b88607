"""Golden outputs of the authors' TIC (lumingzzz/TIC) at reduced width, fixed weights.

Run by hand, never by CI, with the authors' code checked out outside this repository (their
repository is a CompressAI 1.2.0 fork whose C++ coder must be built in place):

    git clone https://github.com/lumingzzz/TIC /tmp/authors/tic
    git -C /tmp/authors/tic checkout c2f8ff938654ffd427c156f924fbc4011166fc15
    (cd /tmp/authors/tic && python setup.py build_ext --inplace)           # needs pybind11
    pip install --no-deps --target /tmp/authors/site timm==0.4.12
    PYTHONPATH=/tmp/authors/tic:/tmp/authors/site:$PWD .venv/bin/python -m benchmarks.fidelity.tic --repo /tmp/authors/tic

``TIC(N, M)`` fixes everything else (depths [2,4,6,2,2], heads [4,8,16,16,16], window 8, RSTBs
built for 256×256 crops, the context model with 16 heads); the script builds it as it is at N 16,
M 48 and runs it on a 128×128 crop, so the shifted-window masks are recomputed at run time, as on
any real image. Their ``decompress`` reads ``self.M``, which ``__init__`` never sets; the script
sets it. Their coding is a serial raster loop, ours wavefronts of the same context (docs/fidelity.md):
the y strings differ in symbol order, not in what is coded. The persistent ``attn_mask`` buffers
(3.5M entries, a pure function of the geometry) are not stored: their md5s are, and the test takes
ours after checking them. Writes tests/expected/fidelity/tic/.
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
    summary,
    to_unit,
    write_case,
)

REPOSITORY = "lumingzzz/TIC"
SEED = 20240729
CROP = (128, 128)
N, M = 16, 48
#: ctrlic's TIC with the same architecture (everything else at its defaults = the official values)
OURS = {"N": N, "M": M}
TOLERANCES = {"forward_x_hat": {"atol": 1e-5, "rtol": 0}, "decoded_x_hat": {"atol": 1e-5, "rtol": 0},
              "likelihoods": {"atol": 2e-6, "rtol": 0}, "estimated_bits": {"rtol": 1e-6},
              "why": "float32 sums in another order (window attention, LayerNorm)"}
#: how the test compares the y and z strings: "md5" (bit-identical) or "bytes" (same length)
PAYLOAD = {"y": "bytes", "z": "md5",
           "why": "y: our wavefront order codes the same symbols in another order (docs/fidelity.md); "
                  "z: bit-identical with their tables (tables.safetensors, kept as a checkpoint's own); the tables "
                  "CompressAI 1.2.8 rebuilds code it with other bytes (issue #15 item 1)"}


def build() -> nn.Module:
    from compressai.models.tic import TIC

    torch.manual_seed(SEED)
    model = TIC(N=N, M=M)
    model.M = M  # read by their decompress, never set by their __init__
    return model.eval()


def main() -> None:
    args = parse_args(__doc__, REPOSITORY)
    model = build()
    fix_weights(model, SEED)
    state = model.state_dict()
    masks = {k: summary(v) for k, v in state.items() if k.endswith("attn_mask")}
    weights = {k: v.clone() for k, v in state.items() if not k.endswith("attn_mask")}
    crop = load_crop(*CROP)
    tensors, results = run_lic(model, to_unit(crop))
    meta = {"method": "tic", "repository": REPOSITORY, "commit": args.commit, "seed": SEED,
            "command": "PYTHONPATH=/tmp/authors/tic:/tmp/authors/site:$PWD .venv/bin/python -m "
                       "benchmarks.fidelity.tic --repo /tmp/authors/tic",
            "their_model": f"compressai.models.tic.TIC(N={N}, M={M}) unchanged (self.M set for decompress)",
            "environment": compressai_info()}
    write_case(args.out or EXPECTED / "tic", meta=meta, weights=weights, crop=crop, outputs=tensors,
               tables=coding_tables(model),
               expected={"ours": {"backbone": "tic", "kwargs": OURS}, "tolerances": TOLERANCES, "payload_check": PAYLOAD,
                         "attn_masks": masks, **results})


if __name__ == "__main__":
    main()
