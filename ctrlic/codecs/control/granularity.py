"""Control-GIC granularity ratios: patch entropy, entropy-ordered grain masks, the query-table rate path."""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ctrlic.codecs.control.base import ControlScheme, Knob, KnobError, RatePath

#: knob names in the order of the paper's ratio triples (r₁, r₂, r₃) = (fine, medium, coarse)
GRAINS = ("fine", "medium", "coarse")
#: ITU-R BT.601 luma weights used for the entropy map (as in the official code)
LUMA = (0.2989, 0.5870, 0.1140)
#: the ratio sum may be off by this much (float32 knob values in the bitstream header)
SUM_TOLERANCE = 1e-4


@dataclass(frozen=True)
class EntropySettings:
    """Gaussian-kernel histogram of patch values (paper eq. 9–11): bins over [−1, 1] and σ."""

    bins: int = 32
    sigma: float = 0.01


def patch_entropy(x: Tensor, patch: int, settings: EntropySettings = EntropySettings()) -> Tensor:
    """Spatial entropy (nats) of every non-overlapping ``patch``×``patch`` block of ``x`` in [−1, 1].

    Each pixel spreads over 32 bins by a Gaussian kernel of width σ (eq. 9–10); the patch
    histogram is the mean over its pixels, normalised, and H = −Σ p ln p (eq. 11).
    Returns (B, H/patch, W/patch).
    """
    return entropy_of(pixel_kernel(x, settings), patch)


def pixel_kernel(x: Tensor, settings: EntropySettings = EntropySettings()) -> Tensor:
    """Per-pixel soft bin assignment exp(−½((v − b)/σ)²) of the luma, (B, bins, H, W)."""
    weights = x.new_tensor(LUMA).view(1, 3, 1, 1)
    gray = (x * weights).sum(1, keepdim=True)
    centres = torch.linspace(-1, 1, settings.bins, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
    return torch.exp(-0.5 * ((gray - centres) / settings.sigma) ** 2)


def entropy_of(kernel: Tensor, patch: int) -> Tensor:
    """Entropy of the patch histograms: the per-pixel kernel averaged over each patch."""
    pdf = F.avg_pool2d(kernel, patch)
    p = pdf / (pdf.sum(1, keepdim=True) + 1e-10)
    return -(p * torch.log(p + 1e-40)).sum(1)


def check_ratios(ratios: Sequence[float]) -> tuple[float, float, float]:
    """(fine, medium, coarse) area fractions, each in [0, 1] and summing to 1."""
    if len(ratios) != 3:
        raise KnobError(f"granularity ratios are three numbers (fine, medium, coarse), got {list(ratios)}")
    fine, medium, coarse = (float(r) for r in ratios)
    if min(fine, medium, coarse) < 0 or abs(fine + medium + coarse - 1) > SUM_TOLERANCE:
        raise KnobError(f"granularity ratios fine={fine:g}, medium={medium:g}, coarse={coarse:g} must be "
                        "non-negative and sum to 1 (e.g. --ratios 0.5,0.4,0.1)")
    return fine, medium, coarse


def grain_masks(x: Tensor, ratios: Sequence[float], coarse_patch: int = 16,
                settings: EntropySettings = EntropySettings()) -> tuple[Tensor, Tensor, Tensor]:
    """Boolean masks (B, 1, ·, ·) of the coarse (H/16), medium (H/8) and fine (H/4) grains.

    Area fractions follow ``ratios`` (rounded to whole patches): the lowest-entropy 16×16 patches
    become coarse, then the lowest-entropy 8×8 patches outside them medium, the rest fine.
    """
    return masks_from_kernel(pixel_kernel(x, settings), ratios, coarse_patch)


def masks_from_kernel(kernel: Tensor, ratios: Sequence[float], coarse_patch: int = 16) -> tuple[Tensor, Tensor, Tensor]:
    """``grain_masks`` from a precomputed ``pixel_kernel`` (reused when only the ratios change)."""
    _, medium, coarse = check_ratios(ratios)
    e16, e8 = entropy_of(kernel, coarse_patch), entropy_of(kernel, coarse_patch // 2)
    b = kernel.shape[0]
    n16, n8 = e16[0].numel(), e8[0].numel()
    k_c, k_m = round(n16 * coarse), round(n8 * medium)
    mask_c = _lowest(e16.reshape(b, -1), k_c).view_as(e16)
    covered = mask_c.repeat_interleave(2, 1).repeat_interleave(2, 2)
    free = e8.masked_fill(covered, float("inf")).reshape(b, -1)
    k_m = min(k_m, n8 - 4 * k_c)
    mask_m = _lowest(free, k_m).view_as(e8) & ~covered
    taken = mask_m | covered
    mask_f = ~taken.repeat_interleave(2, 1).repeat_interleave(2, 2)
    return mask_c[:, None], mask_m[:, None], mask_f[:, None]


def _lowest(values: Tensor, k: int) -> Tensor:
    """Boolean mask of the ``k`` smallest entries per row (stable order breaks ties by position)."""
    mask = torch.zeros_like(values, dtype=torch.bool)
    if k > 0:
        order = torch.sort(values, dim=1, stable=True).indices[:, :k]
        mask.scatter_(1, order, True)
    return mask


def tokens_per_pixel(ratios: Sequence[float]) -> float:
    """Indices coded per pixel at these ratios: r₁/16 + r₂/64 + r₃/256 (eq. 12 without L)."""
    fine, medium, coarse = check_ratios(ratios)
    return fine / 16 + medium / 64 + coarse / 256


def theoretical_bpp(ratios: Sequence[float], mean_code_length: float) -> float:
    """Paper eq. 12–13: L·(r₁/16 + r₂/64 + r₃/256) bits per pixel plus the raw mask bits.

    ``mean_code_length`` is L, the mean Huffman code length of the indices (log₂ of the codebook
    size for uniform codes). Masks: 1/256 bpp for the coarse one when there is a coarse grain, and
    1/64 per non-coarse area for the medium one when both medium and fine occur.
    """
    fine, medium, coarse = check_ratios(ratios)
    masks = (1 / 256 if coarse > 0 else 0.0) + ((1 - coarse) / 64 if medium > 0 and fine > 0 else 0.0)
    return mean_code_length * tokens_per_pixel(ratios) + masks


class Granularity(ControlScheme):
    """Knobs ``fine``, ``medium``, ``coarse`` (area ratios summing to 1) set the grain masks of a VQGAN.

    Target-rate search moves along the paper's query table (rows of rising rate), interpolating
    linearly between consecutive rows, parametrised by their index rate (eq. 12).
    """

    def __init__(self, query_table: Sequence[Sequence[float]], default: Sequence[float] = (0.5, 0.4, 0.1),
                 mean_code_length: float | None = None) -> None:
        self.table = [check_ratios(row) for row in query_table]
        if len(self.table) < 2:
            raise KnobError("granularity.query_table needs at least two (fine, medium, coarse) rows")
        default = check_ratios(default)
        self.mean_code_length = mean_code_length
        self.knobs = tuple(
            Knob(name, 0.0, 1.0, default[i], tuple(row[i] for row in self.table)) for i, name in enumerate(GRAINS)
        )

    def attach(self, backbone: nn.Module) -> None:
        if not hasattr(backbone, "ratios"):
            raise KnobError(f"the granularity control scheme needs a backbone with grain masks (vqgan); "
                            f"got {type(backbone).__name__}")
        super().attach(backbone)

    def apply(self, values: Mapping[str, float]) -> None:
        self.backbone.ratios = tuple(values[name] for name in GRAINS)

    def resolve(self, values: Mapping[str, float] | None = None) -> dict[str, float]:
        resolved = super().resolve(values)
        check_ratios([resolved[name] for name in GRAINS])
        return resolved

    def sweep_points(self) -> list[dict[str, float]]:
        """The query-table rows, in order of rising rate."""
        return [dict(zip(GRAINS, row, strict=True)) for row in self.table]

    def code_length(self) -> float:
        """L of eq. 12–13: configured, else the attached backbone's mean Huffman code length."""
        if self.mean_code_length is not None:
            return self.mean_code_length
        if self.backbone is not None and hasattr(self.backbone, "mean_code_length"):
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
        return {**super().describe(), "query_table": [
            {"fine": row[0], "medium": row[1], "coarse": row[2], "theoretical_bpp": rate}
            for row, rate in self.query_table()]}
