"""Golden outputs of the authors' CALICE-TCM (EIDOSLAB/CALICE, "mixed" LoRA + conv α-adapters on TCM).

Run by hand, never by CI, with the authors' code checked out outside this repository, as
``benchmarks/fidelity/calice_stf.py`` (CompressAI 1.2.4, their Dockerfile pin):

    PYTHONPATH=/tmp/authors/calice/src:/tmp/authors/compressai124:/tmp/authors/site:$PWD \\
        .venv/bin/python -m benchmarks.fidelity.calice_tcm --repo /tmp/authors/calice

It builds CALICE's ``custom_comp.models.TCM`` (LIC_TCM's code with the ``CompressionModel``
call fixed for 1.2.4) at the reduced width of ``benchmarks/fidelity/tcm.py`` (literal-width modules
replaced the same way), wraps it with their ``mixed_adapter.get_mixed_adapt_model`` and their
``configs/tcm_8_1_all.yaml`` (rank 8, scale α: LoRA on the TCM-block MLPs, conv adapters on the 1×1
and residual convs and the strided blocks, sub-pixel adapters in the upsampling blocks, g_a/g_s
only), gives the adapters seeded values (their second convs and ``W_b`` start at zero) and runs
forward and their compress/decompress at α = 0.5 and 1 (``change_model_alpha(net, α, config)``).
Images are stored as their central 64×64 pixels and an 8×8-pooled copy. Writes
tests/expected/fidelity/calice_tcm/.
"""

from __future__ import annotations

import torch
from torch import nn

from benchmarks.fidelity import tcm
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

REPOSITORY = "EIDOSLAB/CALICE"
SEED = 20260618
ALPHAS = [0.5, 1.0]  # α = 0 switches every adapter off: the calice_stf case checks that
WINDOW = 64
#: ctrlic's control=alpha_adapters_tcm (conf/control/alpha_adapters_tcm.yaml)
CONTROL = {"rank": 8, "multiplier": 1.0, "lora": [r"g_[as]\.\d+\.trans_block\.mlp\.[02]"],
           "conv": [r"g_[as]\.\d+\.conv1_[12]", r"g_[as]\.\d+\.conv_block\.conv[12]", r"g_a\.\d+\.conv[12]",
                    r"g_s\.\d+\.conv"],
           "subpel": [r"g_s\.\d+\.subpel_conv"]}
TOLERANCES = {**tcm.TOLERANCES, "forward_x_hat": {"atol": 2e-5, "rtol": 0},
              "decoded_x_hat": {"atol": 2e-5, "rtol": 0},
              "why": "float32 sums in another order (window attention, LayerNorm, adapter branches)"}
PAYLOAD = {"y": "md5", "z": "md5"}


def build(repo) -> tuple[nn.Module, dict, object]:
    from custom_comp.models import tcm as blocks
    from mixed_adapter import change_model_alpha, get_mixed_adapt_model

    torch.manual_seed(SEED)
    model = blocks.TCM(config=tcm.CONFIG, head_dim=[tcm.HEAD] * 6, drop_path_rate=0.0, N=tcm.N, M=tcm.M,
                       num_slices=tcm.SLICES, max_support_slices=tcm.SUPPORT)
    tcm.shrink_entropy_model(model, blocks)
    model, config = get_mixed_adapt_model(model, str(repo / "configs" / "tcm_8_1_all.yaml"))
    return model.eval(), config, change_model_alpha


def main() -> None:
    args = parse_args(__doc__, REPOSITORY)
    model, config, change_model_alpha = build(args.repo)
    fix_weights(model, SEED)
    weights = {k: v.clone() for k, v in model.state_dict().items()}  # before update(): empty CDF tables
    crop = load_crop(*tcm.CROP)
    outputs, cases = {}, []
    for k, alpha in enumerate(ALPHAS):
        change_model_alpha(model, alpha * config["alpha"], config)
        tensors, results = run_lic(model, to_unit(crop), WINDOW)
        outputs.update({f"case{k}_{name}": t for name, t in tensors.items()})
        cases.append({"alpha": alpha, **results})
    meta = {"method": "calice_tcm", "repository": REPOSITORY, "commit": args.commit, "seed": SEED,
            "command": "PYTHONPATH=/tmp/authors/calice/src:/tmp/authors/compressai124:/tmp/authors/site:$PWD "
                       ".venv/bin/python -m benchmarks.fidelity.calice_tcm --repo /tmp/authors/calice",
            "their_model": "custom_comp.models.TCM at the width of benchmarks/fidelity/tcm.py, "
                           "mixed_adapter.get_mixed_adapt_model(net, configs/tcm_8_1_all.yaml), "
                           "change_model_alpha(net, alpha)",
            "environment": compressai_info()}
    write_case(args.out or EXPECTED / "calice_tcm", meta=meta, weights=weights, crop=crop, outputs=outputs,
               tables=coding_tables(model),
               expected={"ours": {"backbone": "tcm", "kwargs": tcm.OURS, "control": CONTROL},
                         "tolerances": TOLERANCES, "payload_check": PAYLOAD, "window": WINDOW,
                         "cases": cases})


if __name__ == "__main__":
    main()
