"""Small-scale replication of CALICE's claim: one anchor + α-adapters ≈ separately trained anchors.

The anchors and the α-adapters of ``experiment=compare`` in the CPU regime (``scale=cpu``: five tiny
anchors at λ 5e-5 … 0.0483, the adapters on the λ = 0.0483 anchor over the same range, 500 steps each,
about 35 minutes on 2 CPU cores for Cheng2020-attn): the BD-rate of the α-curve against the anchors'
curve, the rate span of α and the adapters' parameters. ``--sweep`` of a finished comparison reuses it.
"""

from __future__ import annotations

from pathlib import Path

from benchmarks import compare_regime


def main(argv: list[str] | None = None) -> Path:
    args = compare_regime.parser(__doc__.splitlines()[0], "calice", ("cheng2020_attn", "stf", "tcm")).parse_args(argv)
    payload = compare_regime.run("calice", "alpha_adapters", args)
    return compare_regime.report("calice", "alpha_adapters", payload)


if __name__ == "__main__":
    main()
