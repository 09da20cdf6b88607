"""Golden outputs of the authors' CALICE-STF (EIDOSLAB/CALICE, LoRA α-adapters on STF) at reduced width.

Run by hand, never by CI, with the authors' code checked out outside this repository. CALICE's
Dockerfile pins CompressAI 1.2.4 (no wheel for Python 3.11: built from the PyPI sdist in place):

    git clone https://github.com/EIDOSLAB/CALICE /tmp/authors/calice
    git -C /tmp/authors/calice checkout 12298104bc5d37325dc3d4fe6c2e72f3cbab6589
    pip download --no-deps compressai==1.2.4 && tar -xzf compressai-1.2.4.tar.gz   # -> /tmp/authors/compressai124
    (cd /tmp/authors/compressai124 && python setup.py build_ext --inplace)          # needs pybind11
    pip install --no-deps --target /tmp/authors/site timm==0.4.12
    PYTHONPATH=/tmp/authors/calice/src:/tmp/authors/compressai124:/tmp/authors/site:$PWD \\
        .venv/bin/python -m benchmarks.fidelity.calice_stf --repo /tmp/authors/calice

It builds CALICE's ``custom_comp.models.SymmetricalTransFormer`` at the reduced width of
``benchmarks/fidelity/stf.py`` (its ``STFHyp`` has the same literal widths, replaced the same way),
wraps it with their ``lora.get_lora_model`` and their ``configs/stf_8_8_all.yaml`` (rank 8, scale
8α, fc1/fc2 of every Swin MLP), gives the LoRA factors seeded values (``W_b`` starts at zero) and
runs forward and their own compress/decompress at α = 0, 0.35 and 1, set with their
``change_model_alpha(net, α·8, config)`` as ``evaluate/eval_continuous.py`` does. Images are stored
as their central 64×64 pixels and an 8×8-pooled copy. Writes tests/expected/fidelity/calice_stf/.
"""

from __future__ import annotations

import torch
from torch import nn

from benchmarks.fidelity import stf
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
SEED = 20260617
CROP = (128, 128)
ALPHAS = [0.0, 0.35, 1.0]
WINDOW = 64  # images kept as their central 64 × 64 pixels and an 8 × 8-pooled copy
#: ctrlic's control=alpha_adapters_stf (conf/control/alpha_adapters_stf.yaml)
CONTROL = {"rank": 8, "multiplier": 8.0, "lora": [r"(layers|syn_layers)\.\d+\.blocks\.\d+\.mlp\.fc[12]"]}
TOLERANCES = {**stf.TOLERANCES, "forward_x_hat": {"atol": 2e-5, "rtol": 0},
              "decoded_x_hat": {"atol": 2e-5, "rtol": 0},
              "why": "float32 sums in another order (window attention, LayerNorm, LoRA scaled by 8α)"}
PAYLOAD = {"y": "md5", "z": "md5"}


def build(repo) -> tuple[nn.Module, dict, object]:
    from custom_comp.models import SymmetricalTransFormer
    from lora import change_model_alpha, get_lora_model

    torch.manual_seed(SEED)
    model = SymmetricalTransFormer(embed_dim=stf.E, depths=stf.OURS["depths"], num_heads=stf.OURS["num_heads"],
                                   window_size=4, num_slices=stf.SLICES)
    stf.shrink_entropy_model(model)
    model, config = get_lora_model(model, str(repo / "configs" / "stf_8_8_all.yaml"))
    return model.eval(), config, change_model_alpha


def main() -> None:
    args = parse_args(__doc__, REPOSITORY)
    model, config, change_model_alpha = build(args.repo)
    fix_weights(model, SEED)
    weights = {k: v.clone() for k, v in model.state_dict().items()}  # before update(): empty CDF tables
    crop = load_crop(*CROP)
    outputs, cases = {}, []
    for k, alpha in enumerate(ALPHAS):
        change_model_alpha(model, alpha * config["alpha"], config)
        tensors, results = run_lic(model, to_unit(crop), WINDOW)
        outputs.update({f"case{k}_{name}": t for name, t in tensors.items()})
        cases.append({"alpha": alpha, **results})
    meta = {"method": "calice_stf", "repository": REPOSITORY, "commit": args.commit, "seed": SEED,
            "command": "PYTHONPATH=/tmp/authors/calice/src:/tmp/authors/compressai124:/tmp/authors/site:$PWD "
                       ".venv/bin/python -m benchmarks.fidelity.calice_stf --repo /tmp/authors/calice",
            "their_model": "custom_comp.models.SymmetricalTransFormer at the width of benchmarks/fidelity/stf.py, "
                           "lora.get_lora_model(net, configs/stf_8_8_all.yaml), change_model_alpha(net, 8 alpha)",
            "environment": compressai_info()}
    write_case(args.out or EXPECTED / "calice_stf", meta=meta, weights=weights, crop=crop, outputs=outputs,
               tables=coding_tables(model),
               expected={"ours": {"backbone": "stf", "kwargs": stf.OURS, "control": CONTROL},
                         "tolerances": TOLERANCES, "payload_check": PAYLOAD, "window": WINDOW,
                         "cases": cases})


if __name__ == "__main__":
    main()
