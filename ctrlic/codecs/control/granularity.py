"""Control-GIC granularity ratios as knobs: the query-table rate path and the rate model of eq. 12–13.

The masks themselves (patch entropy, the routers) live with the backbone, in ``backbones.grain_masks``.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence

from torch import nn

from ctrlic.codecs.backbones.grain_masks import GRAINS, GrainRatioError, check_ratios, check_router
from ctrlic.codecs.control.base import ControlScheme, Knob, KnobError, RatePath


def knob_ratios(ratios: Sequence[float]) -> tuple[float, float, float]:
    """``check_ratios`` for knob values: a bad triple is a ``KnobError`` (the rate search handles those)."""
    try:
        return check_ratios(ratios)
    except GrainRatioError as err:
        raise KnobError(str(err)) from None


def tokens_per_pixel(ratios: Sequence[float]) -> float:
    """Indices coded per pixel at these ratios: r₁/16 + r₂/64 + r₃/256 (eq. 12 without L)."""
    fine, medium, coarse = knob_ratios(ratios)
    return fine / 16 + medium / 64 + coarse / 256


def theoretical_bpp(ratios: Sequence[float], mean_code_length: float) -> float:
    """Paper eq. 12–13: L·(r₁/16 + r₂/64 + r₃/256) bits per pixel plus the raw mask bits.

    ``mean_code_length`` is L, the mean Huffman code length of the indices (log₂ of the codebook
    size for uniform codes). Masks: 1/256 bpp for the coarse one when there is a coarse grain, and
    1/64 per non-coarse area for the medium one when both medium and fine occur.
    """
    fine, medium, coarse = knob_ratios(ratios)
    masks = (1 / 256 if coarse > 0 else 0.0) + ((1 - coarse) / 64 if medium > 0 and fine > 0 else 0.0)
    return mean_code_length * tokens_per_pixel(ratios) + masks


class Granularity(ControlScheme):
    """Knobs ``fine``, ``medium``, ``coarse`` (area ratios summing to 1) set the grain masks of a VQGAN.

    Target-rate search moves along the paper's query table (rows of rising rate), interpolating
    linearly between consecutive rows, parametrised by their index rate (eq. 12). ``router`` picks
    the mask rule the backbone uses: "official" (the authors') or "exact" (exact area fractions).
    """

    requires = frozenset({"grain_masks"})

    def __init__(self, query_table: Sequence[Sequence[float]], default: Sequence[float] = (0.5, 0.4, 0.1),
                 mean_code_length: float | None = None, router: str = "official") -> None:
        self.table = [knob_ratios(row) for row in query_table]
        if len(self.table) < 2:
            raise KnobError("granularity.query_table needs at least two (fine, medium, coarse) rows")
        default = knob_ratios(default)
        self.mean_code_length = mean_code_length
        self.router = check_router(router)
        self.knobs = tuple(
            Knob(name, 0.0, 1.0, default[i], tuple(row[i] for row in self.table)) for i, name in enumerate(GRAINS)
        )

    def attach(self, backbone: nn.Module) -> None:
        super().attach(backbone)
        backbone.router = self.router

    def apply(self, values: Mapping[str, float]) -> None:
        self.backbone.ratios = tuple(values[name] for name in GRAINS)

    def resolve(self, values: Mapping[str, float] | None = None) -> dict[str, float]:
        resolved = super().resolve(values)
        knob_ratios([resolved[name] for name in GRAINS])
        return resolved

    def sweep_points(self) -> list[dict[str, float]]:
        """The query-table rows, in order of rising rate."""
        return [dict(zip(GRAINS, row, strict=True)) for row in self.table]

    def code_length(self) -> float:
        """L of eq. 12–13: configured, else the attached backbone's mean Huffman code length."""
        if self.mean_code_length is not None:
            return self.mean_code_length
        if self.backbone is not None:
            return float(self.backbone.mean_code_length())
        return 10.0

    def query_table(self) -> list[tuple[tuple[float, float, float], float]]:
        """The rows with their theoretical bpp (eq. 12–13)."""
        length = self.code_length()
        return [(row, theoretical_bpp(row, length)) for row in self.table]

    def rate_path(self, fixed: Mapping[str, float] | None = None) -> RatePath:
        """Continuous path along the query table; ``t`` is linear in the index rate of eq. 12.

        The index rate r₁/16 + r₂/64 + r₃/256 (tokens per pixel) orders the rows whatever the code
        length L; the mask bits of eq. 13 only add small steps, which the search measures anyway.
        """
        if fixed:
            raise KnobError("granularity ratios move together along the query table; a target-rate search "
                            f"cannot hold {', '.join(fixed)} fixed")
        rows = self.table
        rates = [tokens_per_pixel(row) for row in rows]
        if any(b <= a for a, b in zip(rates, rates[1:], strict=False)):
            raise KnobError("granularity.query_table rows must be in order of rising rate (eq. 12); "
                            f"tokens per pixel here: {', '.join(f'{r:.4f}' for r in rates)}")

        def at(t: float) -> dict[str, float]:
            rate = rates[0] + (rates[-1] - rates[0]) * min(max(float(t), 0.0), 1.0)
            i = min(max(bisect.bisect_right(rates, rate) - 1, 0), len(rows) - 2)
            w = (rate - rates[i]) / (rates[i + 1] - rates[i])
            a, b = rows[i], rows[i + 1]
            fine, medium = (1 - w) * a[0] + w * b[0], (1 - w) * a[1] + w * b[1]  # convex: still valid
            return {"fine": fine, "medium": medium, "coarse": max(0.0, 1.0 - fine - medium)}

        return RatePath(at=at)

    def describe(self) -> dict:
        return {**super().describe(), "router": self.router, "query_table": [
            {"fine": row[0], "medium": row[1], "coarse": row[2], "theoretical_bpp": rate}
            for row, rate in self.query_table()]}
