"""Small-scale replication of LPM's claim: one λ₀ TIC + a prompt set per λ ≈ separately trained TICs.

The anchors and the layer-adaptive prompts of ``experiment=compare`` in the CPU regime (``scale=cpu``:
five tiny TICs at λ 5e-5 … 0.0483, one prompt set for each λ below λ₀ = 0.0483 on the frozen λ₀ TIC,
500 steps per job): the BD-rate of the prompt curve against the TICs' curve, the rate span and the
parameters each approach stores. ``--sweep`` of a finished comparison reuses it.
"""

from __future__ import annotations

from pathlib import Path

from benchmarks import compare_regime


def main(argv: list[str] | None = None) -> Path:
    args = compare_regime.parser(__doc__.splitlines()[0], "lpm", ("tic", "tic_hyperprior", "stf")).parse_args(argv)
    payload = compare_regime.run("lpm", "layer_prompts", args)
    return compare_regime.report("lpm", "layer_prompts", payload)


if __name__ == "__main__":
    main()
