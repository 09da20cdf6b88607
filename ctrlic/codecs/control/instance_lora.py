r"""CALLIC per-image adaptation (Li, Bai et al., AAAI 2025): LoRA and Tucker increments fitted to the
image at encode time, quantized and sent before it in the bitstream (a two-part MDL code).

* ``lora``: ``[{pattern, rank}]``; layers whose full name matches (``re.fullmatch``) get
  ``W' = W + B·A`` (Eq. 6; convolutions are flattened to (out, in·k·k)).
* ``tucker``: ``[{pattern, ranks: [r1, r3, r4]}]``; depthwise convolutions (m, 1, k, k) get
  ``W' = M ⊙ (W + I ×₁ A ×₃ C ×₄ D)`` (Eq. 7; the backbone's mask applies to the sum).

Fitting is rate-guided progressive fine-tuning (Eq. 8): patches sorted by the unadapted model's
bits, highest first; step t trains on the top ``F(t) = b + (1−b)·s(t / (T(1−d)))^e`` of them (s =
smoothstep). The loss is Eq. 9, ``−log p_s(φ̃) + Σ −log q(x)``: factors enter the forward quantized
to step ``w`` (straight-through) and the rate term with uniform noise under a Logistic(0, s) prior.
The quantized factors (not the merged increments) are range-coded under the discretized prior; the
decoder reads them, merges them into the weights, and decodes with exactly the encoder's weights.
On a lossy backbone the loss adds ``λ·255²·MSE`` per pixel and the side bits count in its bpp.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from ctrlic.codecs.bitstream import BitstreamError
from ctrlic.codecs.control.base import ControlScheme, Knob
from ctrlic.codecs.lossless import mixture, scan
from ctrlic.codecs.lossless.coder import Decoder, Encoder
from ctrlic.errors import UserError


class InstanceLoRAError(UserError):
    """A per-image adaptation setting that cannot work (pattern matching nothing, wrong layer type)."""


def smoothstep(x: float) -> float:
    x = min(max(x, 0.0), 1.0)
    return x * x * (3 - 2 * x)


def rpft_fraction(t: int, steps: int, b: float, d: float, e: float) -> float:
    """Eq. 8: the share of patches (highest rate first) used at step t of T."""
    return b + (1 - b) * smoothstep(t / (steps * (1 - d))) ** e


def _log2_bin(upper: Tensor, lower: Tensor) -> Tensor:
    """log₂(σ(upper) − σ(lower)) for upper > lower, stable."""
    ln = F.logsigmoid(upper) + F.logsigmoid(-lower) + torch.log(-torch.expm1(lower - upper).clamp_max(-1e-12))
    return ln / math.log(2)


class InstanceLoRA(ControlScheme):
    """Knob ``steps`` (T): adaptation steps at encode time; 0 codes with the pretrained weights."""

    #: fitting lowers the rate the training forward estimates
    requires = frozenset({"likelihood_rate"})

    def __init__(self, lora: Sequence[Mapping] = (), tucker: Sequence[Mapping] = (), steps: int = 50,
                 max_steps: int = 500, sweep: Sequence[int] = (0, 10, 50), lr: float = 1e-2,
                 rpft: bool = True, b: float = 0.2, d: float = 0.1, e: float = 1.0, w: float = 0.05,
                 s: float = 0.05, max_level: int = 255, init_std: float = 0.1, patch_size: int | None = None,
                 lmbda: float = 0.0483, precision: int = 16, seed: int = 0) -> None:
        self.lora = [(str(x["pattern"]), int(x["rank"])) for x in lora]
        self.tucker = [(str(x["pattern"]), tuple(int(r) for r in x["ranks"])) for x in tucker]
        if not self.lora and not self.tucker:
            raise InstanceLoRAError("control.lora and control.tucker are both empty: name the layers to adapt")
        if not 0 <= steps <= max_steps or any(not 0 <= t <= max_steps for t in sweep):
            raise InstanceLoRAError(f"control.steps={steps} and control.sweep={list(sweep)} must lie in "
                                    f"[0, control.max_steps={max_steps}]")
        self.knobs = (Knob("steps", 0, max_steps, steps, tuple(float(v) for v in sweep),
                           rate_increases=False, discrete=True),)
        self.lr, self.rpft, self.b, self.d, self.e = lr, rpft, b, d, e
        self.w, self.s, self.max_level, self.init_std = w, s, max_level, init_std
        self.patch_size, self.lmbda, self.precision, self.seed = patch_size, lmbda, precision, seed
        self.targets: list[tuple[str, str, tuple]] = []  # (module name, "lora" | "tucker", ranks)
        self._saved: dict[str, Tensor] = {}

    # -- which layers ----------------------------------------------------------------------------

    def attach(self, backbone: nn.Module) -> None:
        """Resolve the patterns to layers; nothing is added to the backbone (increments are per image)."""
        super().attach(backbone)
        self.targets = []
        modules = dict(backbone.named_modules())
        for kind, entries in (("lora", self.lora), ("tucker", self.tucker)):
            for pattern, ranks in entries:
                names = [n for n in modules if re.fullmatch(pattern, n)]
                if not names:
                    raise InstanceLoRAError(f"control.{kind} pattern {pattern!r} matches no layer of "
                                            f"{type(backbone).__name__}; names look like {', '.join(list(modules)[1:6])}")
                for name in names:
                    self._check(name, modules[name], kind)
                    self.targets.append((name, kind, ranks if kind == "tucker" else (ranks,)))

    @staticmethod
    def _check(name: str, module: nn.Module, kind: str) -> None:
        weight = getattr(module, "weight", None)
        if not isinstance(module, nn.Conv2d | nn.Linear) or weight is None:
            raise InstanceLoRAError(f"{name} is a {type(module).__name__}; increments go on Conv2d or Linear layers")
        if kind == "tucker" and not (isinstance(module, nn.Conv2d) and module.groups == module.in_channels
                                     == module.out_channels):
            raise InstanceLoRAError(f"{name} is not a depthwise convolution; Tucker increments need one "
                                    "(use control.lora for it)")

    def _shapes(self) -> list[list[tuple[int, ...]]]:
        """Factor shapes per target: LoRA [B (out, r), A (r, fan-in)], Tucker [core, A (m, r1), C, D]."""
        modules = dict(self.backbone.named_modules())
        shapes = []
        for name, kind, ranks in self.targets:
            weight = modules[name].weight
            if kind == "lora":
                shapes.append([(weight.shape[0], ranks[0]), (ranks[0], weight[0].numel())])
            else:
                r1, r3, r4 = ranks
                m, _, kh, kw = weight.shape
                shapes.append([(r1, r3, r4), (m, r1), (kh, r3), (kw, r4)])
        return shapes

    @staticmethod
    def _delta(kind: str, factors: Sequence[Tensor], shape: torch.Size) -> Tensor:
        if kind == "lora":
            return (factors[0] @ factors[1]).reshape(shape)
        core, a, c, d = factors
        return torch.einsum("ijk,mi,uj,vk->muv", core, a, c, d).reshape(shape)

    # -- encoder ---------------------------------------------------------------------------------

    def encode_side(self, x: Tensor, knobs: Mapping[str, float]) -> list[bytes]:
        steps = int(knobs["steps"])
        if steps == 0:
            return []
        factors = self._fit(x, steps)
        levels = [[torch.round(f / self.w).clamp(-self.max_level, self.max_level).long() for f in fs]
                  for fs in factors]
        flat = torch.cat([q.flatten() for qs in levels for q in qs]).numpy()
        coder = Encoder(self.precision)
        coder.encode(flat + self.max_level, np.broadcast_to(self._prior_table(), (len(flat), 2 * self.max_level + 1)))
        self._merge(levels)
        return [coder.finish()]

    def _prior_table(self) -> np.ndarray:
        values = np.arange(-self.max_level, self.max_level + 1, dtype=np.float64)
        return mixture.integer_pmf(mixture.discretized_logistic_pmf(values, self.w, self.s)[None], self.precision)[0]

    def _tiles(self, x: Tensor) -> Tensor:
        patch = self.patch_size or self.backbone.adaptation_tile
        return scan.patchify(x, patch, value=0.5)[0]

    @staticmethod
    def _tile_bits(out: Mapping) -> Tensor:
        """Estimated bits of each tile of the batch (log-likelihoods where the backbone gives them)."""
        if "log_likelihoods" in out:
            return -out["log_likelihoods"].flatten(1).sum(1) / math.log(2)
        return sum(-torch.log2(lk.clamp_min(1e-30)).flatten(1).sum(1) for lk in out["likelihoods"].values())

    def _objective(self, out: Mapping, batch: Tensor, scale: float) -> Tensor:
        """Image part of Eq. 9 in bits for the whole image (the batch's bits × ``scale``)."""
        bits = self._tile_bits(out).sum() * scale
        if self.backbone.lossless:
            return bits
        mse = F.mse_loss(out["x_hat"], batch)
        return bits + self.lmbda * 255 ** 2 * mse * batch.shape[-2] * batch.shape[-1] * len(batch) * scale

    def _fit(self, x: Tensor, steps: int) -> list[list[Tensor]]:
        """RPFT: Adam on the factors for ``steps`` steps; returns the float factors."""
        gen = torch.Generator().manual_seed(self.seed)
        device = x.device
        factors = []
        for shapes in self._shapes():
            fs = [torch.randn(s, generator=gen) * self.init_std for s in shapes]
            fs[0].zero_()  # LoRA B = 0, Tucker core = 0: the increment starts at zero
            factors.append([f.to(device).requires_grad_(True) for f in fs])
        tiles = self._tiles(x)
        modules = dict(self.backbone.named_modules())
        frozen = [(p, p.requires_grad) for p in self.backbone.parameters()]
        for p, _ in frozen:
            p.requires_grad_(False)
        try:
            with torch.enable_grad():
                with torch.no_grad():
                    order = torch.argsort(self._tile_bits(self.backbone(tiles)), descending=True, stable=True)
                params = [f for fs in factors for f in fs]
                optimizer = torch.optim.Adam(params, lr=self.lr)
                pixels = x.shape[-2] * x.shape[-1] * (3 if self.backbone.lossless else 1)
                for t in range(steps):
                    share = rpft_fraction(t, steps, self.b, self.d, self.e) if self.rpft else 1.0
                    used = order[: max(1, math.ceil(share * len(tiles)))]
                    weights = {}
                    for (name, kind, _), fs in zip(self.targets, factors, strict=True):
                        ste = [f + (torch.round(f / self.w) * self.w - f).detach() for f in fs]
                        base = modules[name].weight
                        weights[f"{name}.weight"] = base + self._delta(kind, ste, base.shape)
                    batch = tiles[used]
                    out = functional_call(self.backbone, weights, (batch,))
                    image_bits = self._objective(out, batch, len(tiles) / len(used))
                    noise = [torch.rand(p.shape, generator=gen).to(device) - 0.5 for p in params]
                    side_bits = sum(-_log2_bin((p + self.w * (n + 0.5)) / self.s, (p + self.w * (n - 0.5)) / self.s).sum()
                                    for p, n in zip(params, noise, strict=True))
                    loss = (image_bits + side_bits) / pixels
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
        finally:
            for p, flag in frozen:
                p.requires_grad_(flag)
        return [[f.detach().cpu() for f in fs] for fs in factors]

    # -- both sides ------------------------------------------------------------------------------

    @torch.no_grad()
    def _merge(self, levels: list[list[Tensor]]) -> None:
        """W ← W + Δ(levels·w), identically in encoder and decoder; ``release`` restores W."""
        modules = dict(self.backbone.named_modules())
        for (name, kind, _), qs in zip(self.targets, levels, strict=True):
            weight = modules[name].weight
            self._saved.setdefault(name, weight.detach().clone())
            fs = [q.to(torch.float32) * self.w for q in qs]
            weight.copy_(self._saved[name] + self._delta(kind, fs, weight.shape).to(weight.device))

    def decode_side(self, sections: list[bytes], knobs: Mapping[str, float]) -> None:
        if int(knobs["steps"]) == 0:
            if sections:
                raise BitstreamError("bitstream carries weight increments but its steps knob is 0")
            return
        if len(sections) != 1:
            raise BitstreamError(f"expected one section of weight increments, found {len(sections)}")
        shapes = self._shapes()
        total = sum(math.prod(s) for ss in shapes for s in ss)
        coder = Decoder(sections[0], self.precision)
        flat = torch.from_numpy(coder.decode(np.broadcast_to(self._prior_table(), (total, 2 * self.max_level + 1)))
                                - self.max_level)
        coder.check_end()
        levels, start = [], 0
        for ss in shapes:
            qs = []
            for s in ss:
                qs.append(flat[start:start + math.prod(s)].reshape(s))
                start += math.prod(s)
            levels.append(qs)
        self._merge(levels)

    @torch.no_grad()
    def release(self) -> None:
        modules = dict(self.backbone.named_modules())
        for name, weight in self._saved.items():
            modules[name].weight.copy_(weight)
        self._saved = {}

    def increment_parameters(self) -> int:
        """Number of transmitted factor entries (about 25K for MGCF at paper size, CALLIC §4)."""
        return sum(math.prod(s) for ss in self._shapes() for s in ss)
