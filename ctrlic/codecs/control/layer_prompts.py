"""Layer-adaptive prompts (LPM; Qin et al., "Progressive Learning with Visual Prompt Tuning for
Variable-Rate Image Compression"): one small prompt module per target λ on a frozen λ₀ Swin codec.

Encoder side, a generator turns the image into an H/2×W/2 map (``channels`` wide, 1 in the paper); a
conv per Swin stage brings it to that stage's resolution and width, and every Swin layer max-pools it
by ``down`` (16 prompt tokens per 8×8 window). Decoder side, one conv makes the map from ŷ and a
transposed conv per stage upsamples it. In every prompted (S)W-MSA the queries come from the image
tokens and the keys/values from [prompt tokens; image tokens] (``swin.prompted_window_attention``).
The knob ``prompt`` indexes all λs (the prompt sets' and λ₀) in increasing order, so the rate rises
with it; at λ₀'s index no prompt is used and the codec is the anchor itself.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ctrlic.codecs.backbones.stf import SwinBlock
from ctrlic.codecs.backbones.swin import (
    attention_bias,
    prompt_shift_mask,
    prompt_windows,
    prompted_window_attention,
    window_attention,
)
from ctrlic.codecs.control.base import ControlScheme, Knob
from ctrlic.errors import UserError

#: where the scheme keeps its modules inside the backbone (state-dict prefix)
PROMPT_SETS = "prompt_sets"


class LayerPromptsError(UserError):
    """A layer_prompts config that does not fit the backbone (unknown module, no Swin blocks, λs)."""


def double_conv(cin: int, cout: int) -> nn.Sequential:
    """The generator's basic block: two 3×3 conv + ReLU."""
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3, padding=1), nn.ReLU(inplace=True))


class PromptGenerator(nn.Module):
    """Image (B, 3, H, W) → prompt map (B, channels, H/2, W/2): basic blocks, max-pooling, a learned
    2× deconvolution with a skip connection (a two-level U-Net)."""

    def __init__(self, width: int, channels: int) -> None:
        super().__init__()
        self.inc = double_conv(3, width)
        self.down1 = double_conv(width, 2 * width)
        self.down2 = double_conv(2 * width, 2 * width)
        self.up = nn.ConvTranspose2d(2 * width, 2 * width, 2, 2)
        self.fuse = double_conv(4 * width, 2 * width)
        self.out = nn.Conv2d(2 * width, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        half = self.down1(F.max_pool2d(self.inc(x), 2))
        quarter = self.down2(F.max_pool2d(half, 2))
        return self.out(self.fuse(torch.cat((self.up(quarter), half), dim=1)))


def stage_conv(channels: int, dim: int, factor: int, up: bool) -> nn.Module:
    """The per-stage conv: prompt map → ``dim`` channels at the stage's resolution (``factor``× away)."""
    if up:
        return nn.ConvTranspose2d(channels, dim, factor, factor)
    if factor == 1:
        return nn.Conv2d(channels, dim, 3, padding=1)
    return nn.Conv2d(channels, dim, factor, factor)


class PromptSet(nn.Module):
    """The prompt module of one λ: encoder generator + stage convs, decoder conv + stage deconvs."""

    def __init__(self, width: int, channels: int, latent: int, encoder_stages: Mapping[str, tuple[int, int]],
                 decoder_stages: Mapping[str, tuple[int, int]]) -> None:
        super().__init__()
        self.encoder = PromptGenerator(width, channels)
        self.encoder_stages = nn.ModuleDict(
            {key: stage_conv(channels, dim, f, up=False) for key, (dim, f) in encoder_stages.items()})
        self.decoder = nn.Conv2d(latent, channels, 3, padding=1)
        self.decoder_stages = nn.ModuleDict(
            {key: stage_conv(channels, dim, f, up=True) for key, (dim, f) in decoder_stages.items()})


class PromptedAttention(nn.Module):
    """A Swin window attention that takes prompt tokens when ``prompt`` is set.

    Holds the wrapped attention's parameters under the same names, so state-dict keys do not change;
    with ``prompt`` None it computes exactly what the wrapped (STF-style) attention computes.
    """

    def __init__(self, attn: nn.Module) -> None:
        super().__init__()
        self.heads = attn.heads
        self.relative_position_bias_table = attn.relative_position_bias_table
        self.register_buffer("relative_position_index", attn.relative_position_index)
        self.qkv, self.proj = attn.qkv, attn.proj
        self.prompt: tuple[Tensor, Tensor | None] | None = None

    def forward(self, windows: Tensor, mask: Tensor | None) -> Tensor:
        n = self.relative_position_index.shape[0]
        relative = self.relative_position_bias_table[self.relative_position_index.flatten()]
        bias = attention_bias(relative.view(n, n, self.heads).permute(2, 0, 1), mask)
        if self.prompt is None:
            return window_attention(windows, self.qkv, self.proj, self.heads, bias)
        tokens, prompt_mask = self.prompt
        return prompted_window_attention(windows, tokens, self.qkv, self.proj, self.heads, bias, prompt_mask)


def _is_swin_block(module: nn.Module) -> bool:
    """A (shifted) window-attention block whose attention takes prompts (STF's, also used by TIC)."""
    return isinstance(module, SwinBlock)


def _input_channels(module: nn.Module) -> int:
    """Channels of what ``module`` takes in: a conv's ``in_channels`` or its first LayerNorm's width."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
            return m.in_channels
        if isinstance(m, nn.LayerNorm):
            return m.normalized_shape[0]
    raise LayerPromptsError(f"layer_prompts: cannot tell how many channels {type(module).__name__} takes in")


def _key(name: str) -> str:
    return name.replace(".", "_")


class LayerPrompts(ControlScheme):
    """Knob ``prompt`` ∈ {0, …, K}: index into sorted(``lambdas`` + [``anchor_lambda``]).

    ``encoder_stages`` / ``decoder_stages`` map Swin-stage module names to the factor between the
    prompt map and the stage's resolution (encoder: map at H/2 downsampled by it; decoder: map at ŷ's
    resolution upsampled by it). ``encoder_input`` / ``decoder_input`` name the modules whose input
    is the image / ŷ; ``decoder_channels_last`` says ŷ arrives as (B, H, W, C) there (STF).
    ``width`` is the generator's base width, ``channels`` the prompt map's, ``down`` the per-layer
    max-pooling factor.
    """

    #: one prompt set per λ on a λ₀ codec, prompting STF-style Swin blocks
    requires = frozenset({"rate_distortion", "swin_prompts"})

    def __init__(self, lambdas: Sequence[float], anchor_lambda: float,
                 encoder_stages: Mapping[str, int], decoder_stages: Mapping[str, int],
                 encoder_input: str = "g_a0", decoder_input: str = "g_s0", decoder_channels_last: bool = False,
                 width: int = 64, channels: int = 1, down: int = 2) -> None:
        lambdas = [float(v) for v in lambdas]
        if not lambdas or len(set(lambdas)) != len(lambdas) or float(anchor_lambda) in lambdas:
            raise LayerPromptsError(f"layer_prompts: lambdas={lambdas} must be distinct, non-empty, and must "
                                    f"not contain anchor_lambda={anchor_lambda} (λ₀ needs no prompt set)")
        self.anchor_lambda = float(anchor_lambda)
        self.all_lambdas = tuple(sorted([*lambdas, self.anchor_lambda]))
        self.anchor_index = self.all_lambdas.index(self.anchor_lambda)
        self.set_indices = tuple(i for i in range(len(self.all_lambdas)) if i != self.anchor_index)
        self.encoder_stages, self.decoder_stages = dict(encoder_stages), dict(decoder_stages)
        self.encoder_input, self.decoder_input = encoder_input, decoder_input
        self.decoder_channels_last = decoder_channels_last
        self.width, self.channels, self.down = int(width), int(channels), int(down)
        points = tuple(float(i) for i in range(len(self.all_lambdas)))
        self.knobs = (Knob("prompt", 0.0, float(len(points) - 1), default=float(self.anchor_index), sweep=points,
                           rate_increases=True, discrete=True),)
        self.active: int | None = None
        self._sets: nn.ModuleDict | None = None
        self._stage_maps: dict[str, Tensor] = {}

    def lmbda(self, index: float) -> float:
        """The λ the prompt set at knob value ``index`` is trained for."""
        return self.all_lambdas[int(index)]

    # -- attaching -------------------------------------------------------------------------------

    def _stage_blocks(self, modules: dict[str, nn.Module], names: Mapping[str, int]) -> dict[str, list]:
        found = {}
        for name in names:
            if name not in modules:
                close = [n for n in modules if n.startswith(name.split(".")[0])][:6]
                raise LayerPromptsError(f"layer_prompts: backbone has no module {name!r} (similar: {close})")
            blocks = [m for m in modules[name].modules() if _is_swin_block(m)]
            if not blocks:
                raise LayerPromptsError(f"layer_prompts: {name!r} holds no Swin blocks to prompt")
            found[name] = blocks
        return found

    def attach(self, backbone: nn.Module) -> None:
        super().attach(backbone)
        modules = dict(backbone.named_modules())
        for name in (self.encoder_input, self.decoder_input):
            if name not in modules:
                raise LayerPromptsError(f"layer_prompts: backbone has no module {name!r} to take prompts from")
        stages = {**self._stage_blocks(modules, self.encoder_stages), **self._stage_blocks(modules, self.decoder_stages)}
        for name, blocks in stages.items():
            if any(block.window % self.down for block in blocks):
                raise LayerPromptsError(f"layer_prompts: the windows of {name!r} are not divisible by "
                                        f"down={self.down}")
        dims = {name: blocks[0].norm1.normalized_shape[0] for name, blocks in stages.items()}
        latent = _input_channels(modules[self.decoder_input])
        encoder = {_key(n): (dims[n], int(f)) for n, f in self.encoder_stages.items()}
        decoder = {_key(n): (dims[n], int(f)) for n, f in self.decoder_stages.items()}
        self._sets = nn.ModuleDict({str(i): PromptSet(self.width, self.channels, latent, encoder, decoder)
                                    for i in self.set_indices})
        backbone.add_module(PROMPT_SETS, self._sets)
        modules[self.encoder_input].register_forward_pre_hook(self._encoder_hook)
        modules[self.decoder_input].register_forward_pre_hook(self._decoder_hook)
        for name, blocks in stages.items():
            for block in blocks:
                block.attn = PromptedAttention(block.attn)
                block.register_forward_pre_hook(self._block_hook(_key(name)))
                block.register_forward_hook(self._clear_hook)

    # -- hooks: prompt maps from the image / ŷ, prompt tokens for each block ----------------------

    def _encoder_hook(self, module: nn.Module, args: tuple) -> None:
        if self.active is not None:
            prompt_set = self._sets[str(self.active)]
            base = prompt_set.encoder(args[0])
            self._stage_maps.update({k: conv(base) for k, conv in prompt_set.encoder_stages.items()})

    def _decoder_hook(self, module: nn.Module, args: tuple) -> None:
        if self.active is not None:
            prompt_set = self._sets[str(self.active)]
            y_hat = args[0].permute(0, 3, 1, 2) if self.decoder_channels_last else args[0]
            base = prompt_set.decoder(y_hat)
            self._stage_maps.update({k: conv(base) for k, conv in prompt_set.decoder_stages.items()})

    def _block_hook(self, stage: str):
        def hook(block: nn.Module, args: tuple) -> None:
            if self.active is None:
                return
            _, h, w, _ = args[0].shape
            pooled = F.adaptive_max_pool2d(self._stage_maps[stage], (math.ceil(h / self.down), math.ceil(w / self.down)))
            tokens = prompt_windows(pooled.permute(0, 2, 3, 1), block.window, block.shift, self.down)
            mask = None
            if block.shift:
                hp, wp = h + (-h % block.window), w + (-w % block.window)
                mask = prompt_shift_mask(hp, wp, block.window, block.shift, self.down, tokens.device)
            block.attn.prompt = (tokens.to(args[0].dtype), mask)
        return hook

    @staticmethod
    def _clear_hook(block: nn.Module, args: tuple, output: Tensor) -> None:
        block.attn.prompt = None

    # -- knobs and parameters ----------------------------------------------------------------------

    def apply(self, values: Mapping[str, float]) -> None:
        index = int(values["prompt"])
        self.active = None if index == self.anchor_index else index

    def prompt_set(self, index: int) -> nn.Module:
        return self._sets[str(int(index))]

    def attached_parameters(self) -> list[nn.Parameter]:
        return list(self._sets.parameters())

    def trainable_parameters(self) -> list[nn.Parameter]:
        return list(self._sets.parameters())

    def parameter_groups(self) -> dict[str, int]:
        """Parameters stored per prompt set (for ``task=info``), keyed by knob value and λ."""
        return {f"prompt={i} (λ={self.all_lambdas[i]:g})": sum(p.numel() for p in self._sets[str(i)].parameters())
                for i in self.set_indices}

    def describe(self) -> dict:
        return {**super().describe(), "lambdas": list(self.all_lambdas), "anchor_index": self.anchor_index}
