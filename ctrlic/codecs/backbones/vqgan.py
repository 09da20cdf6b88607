"""Control-GIC's VQGAN (Li et al., ICLR 2025): three-grain encoder, one codebook, conditional MoVQ decoder.

Module names follow the official checkpoint (``encoder.*``, ``decoder.*``, ``quantize.*``,
``quant_conv.*``, ``post_quant_conv.*``); ``checkpoint_key_map`` turns an official state dict
(1024 one-element usage counters, optional ``ema_*`` copies) into ours. Images arrive in [0, 1]
and are mapped to [−1, 1] here, for training and coding alike.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ctrlic.codecs.backbones.base import Backbone, fp32
from ctrlic.codecs.backbones.grain_masks import (
    EntropySettings,
    check_router,
    grain_masks,
    masks_from_kernel,
    pixel_kernel,
)
from ctrlic.codecs.backbones.vqgan_blocks import (
    AttnBlock,
    Downsample,
    Level,
    MidBlock,
    ResnetBlock,
    SpatialNorm,
    Upsample,
    group_norm,
    swish_conv,
    upsample_mask,
)
from ctrlic.codecs.bitstream import BitstreamError
from ctrlic.codecs.entropy import bit_map
from ctrlic.codecs.huffman import HuffmanCode, check_mask_section, decode_mask, encode_mask
from ctrlic.errors import UserError

#: prefixes of the codec's weights in the official checkpoint (``loss.*`` is the discriminator)
CODEC_PREFIXES = ("encoder", "decoder", "quantize", "quant_conv", "post_quant_conv")
WEIGHT_VARIANTS = ("raw", "ema")
#: byte sections of one image, in bitstream order
SECTIONS = ("mask_coarse", "mask_medium", "indices_coarse", "indices_medium", "indices_fine")


class VQGANConfigError(UserError):
    """A VQGAN size that cannot work (too few levels, branch widths that do not meet)."""


def _check_levels(ch_mult: Sequence[int]) -> None:
    if len(ch_mult) < 3:
        raise VQGANConfigError(f"ch_mult={list(ch_mult)}: the three grains need at least 3 levels")
    if ch_mult[-1] != ch_mult[-2]:
        raise VQGANConfigError(f"ch_mult={list(ch_mult)}: the last two levels must have the same width "
                               "(the medium and fine decoder branches replace features there)")


class Encoder(nn.Module):
    """Down path; the fine (H/4), medium (H/8) and coarse (H/16) latents leave at the last three levels."""

    def __init__(self, ch: int, ch_mult: Sequence[int], num_res_blocks: int, attn_resolutions: Sequence[int],
                 resolution: int, z_channels: int, groups: int, mid_attn: bool, dropout: float,
                 in_channels: int = 3) -> None:
        super().__init__()
        _check_levels(ch_mult)
        n = len(ch_mult)
        self.conv_in = nn.Conv2d(in_channels, ch, 3, padding=1)
        self.down = nn.ModuleList()
        res, cin = resolution, ch
        for i, mult in enumerate(ch_mult):
            cout, blocks, attns = ch * mult, [], []
            for _ in range(num_res_blocks):
                blocks.append(ResnetBlock(cin, cout, groups, None, dropout))
                cin = cout
                if res in attn_resolutions:
                    attns.append(AttnBlock(cout, groups))
            self.down.append(Level(blocks, attns, Downsample(cout) if i != n - 1 else None, "downsample"))
            res = res // 2 if i != n - 1 else res
        for suffix, mult in (("_fine", ch_mult[-3]), ("", ch_mult[-2]), ("_coarse", ch_mult[-1])):
            width = ch * mult
            self.add_module(f"mid{suffix}", MidBlock(width, groups, None, mid_attn, dropout))
            self.add_module(f"norm_out{suffix}", group_norm(width, groups))
            self.add_module(f"conv_out{suffix}", nn.Conv2d(width, z_channels, 3, padding=1))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        h = self.conv_in(x)
        n = len(self.down)
        taps = {}
        for i, level in enumerate(self.down):
            h = level.run(h)
            taps[i] = h
            h = level.resample(h)
        fine = swish_conv(self.norm_out_fine, self.conv_out_fine, self.mid_fine(taps[n - 3]))
        medium = swish_conv(self.norm_out, self.conv_out, self.mid(taps[n - 2]))
        coarse = swish_conv(self.norm_out_coarse, self.conv_out_coarse, self.mid_coarse(taps[n - 1]))
        return fine, medium, coarse


class Decoder(nn.Module):
    """MoVQ decoder with three input branches; eq. 4 swaps in medium and fine features by the masks."""

    def __init__(self, ch: int, ch_mult: Sequence[int], num_res_blocks: int, attn_resolutions: Sequence[int],
                 resolution: int, z_channels: int, embed_dim: int, groups: int, mid_attn: bool, dropout: float,
                 out_channels: int = 3) -> None:
        super().__init__()
        _check_levels(ch_mult)
        n = len(ch_mult)
        block_in = ch * ch_mult[-1]
        for suffix in ("_coarse", "", "_fine"):
            self.add_module(f"conv_in{suffix}", nn.Conv2d(z_channels, block_in, 3, padding=1))
            self.add_module(f"mid{suffix}", MidBlock(block_in, groups, embed_dim, mid_attn, dropout))
        res = resolution // 2 ** (n - 1)
        levels: list[Level] = []
        for i in reversed(range(n)):
            cout, blocks, attns = ch * ch_mult[i], [], []
            for _ in range(num_res_blocks + 1):
                blocks.append(ResnetBlock(block_in, cout, groups, embed_dim, dropout))
                block_in = cout
                if res in attn_resolutions:
                    attns.append(AttnBlock(cout, groups, embed_dim))
            levels.insert(0, Level(blocks, attns, Upsample(cout) if i != 0 else None, "upsample"))
            res = res * 2 if i != 0 else res
        self.up = nn.ModuleList(levels)
        self.norm_out = SpatialNorm(block_in, embed_dim, groups)
        self.conv_out = nn.Conv2d(block_in, out_channels, 3, padding=1)

    def forward(self, quant: Tensor, zq: Tensor, masks: Sequence[Tensor]) -> Tensor:
        """``quant``: post-quant-conv code map (H/4); ``zq``: the raw code map; masks (c, m, f) as floats."""
        mask_c, mask_m, mask_f = masks
        coarse = F.avg_pool2d(self.mid_coarse(self.conv_in_coarse(quant), zq), 4)
        medium = F.avg_pool2d(self.mid(self.conv_in(quant), zq), 2)
        fine = self.mid_fine(self.conv_in_fine(quant), zq)
        n = len(self.up)
        h = coarse
        for i in reversed(range(n)):
            if i == n - 2:  # H/8: medium features where the medium grain was coded (fine stays zero)
                h = h * upsample_mask(mask_c, 2) + medium * mask_m
            elif i == n - 3:  # H/4: fine features where the fine grain was coded
                h = h * upsample_mask(mask_c, 4) + h * upsample_mask(mask_m, 2) + fine * mask_f
            h = self.up[i].resample(self.up[i].run(h, zq))
        return swish_conv(self.norm_out, self.conv_out, h, zq)


class VectorQuantizer(nn.Module):
    """Nearest-codeword quantizer with the taming "legacy" loss ‖sg(z_q)−z‖² + β‖z_q−sg(z)‖².

    ``counts`` holds how often each codeword was coded during training: the Huffman frequencies.
    """

    def __init__(self, n_embed: int, embed_dim: int, beta: float) -> None:
        super().__init__()
        self.beta = beta
        self.embedding = nn.Embedding(n_embed, embed_dim)
        nn.init.uniform_(self.embedding.weight, -1.0 / n_embed, 1.0 / n_embed)
        self.register_buffer("counts", torch.zeros(n_embed, dtype=torch.int64))

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Nearest codewords in fp32 also under bf16 autocast: the codeword distances differ by far less
        than bf16 resolves, and coding (fp32) must choose the codewords training chose."""
        with fp32(z.device.type):
            z = z.float()
            b, c, h, w = z.shape
            flat = z.permute(0, 2, 3, 1).reshape(-1, c)
            codebook = self.embedding.weight
            # ‖z‖² is the same for every codeword: argmin over ‖e‖² − 2⟨z, e⟩ in one fused op
            dist = torch.addmm(codebook.pow(2).sum(1), flat, codebook.t(), alpha=-2)
            indices = dist.argmin(1).view(b, h, w)
            z_q = self.lookup(indices)
            loss = torch.mean((z_q.detach() - z) ** 2) + self.beta * torch.mean((z_q - z.detach()) ** 2)
            return z + (z_q - z).detach(), loss, indices

    def lookup(self, indices: Tensor) -> Tensor:
        return self.embedding(indices).permute(0, 3, 1, 2)


class VQGAN(Backbone):
    """Three-grain VQGAN codec. ``ratios`` = (fine, medium, coarse) areas and ``router`` (the mask rule),
    both set by the granularity scheme. The masks are coded, so decoding does not depend on the router."""

    capabilities = frozenset({"grain_masks"})

    def __init__(self, ch: int = 128, ch_mult: Sequence[int] = (1, 2, 2, 4, 4), num_res_blocks: int = 2,
                 attn_resolutions: Sequence[int] = (32,), resolution: int = 256, z_channels: int = 4,
                 embed_dim: int = 4, n_embed: int = 1024, num_groups: int = 32, mid_attn: bool = True,
                 dropout: float = 0.0, beta: float = 0.25, ratios: Sequence[float] = (0.5, 0.4, 0.1),
                 entropy_bins: int = 32, entropy_sigma: float = 0.01, mask_coding: str = "best",
                 router: str = "official") -> None:
        super().__init__()
        args = (ch, ch_mult, num_res_blocks, attn_resolutions, resolution, z_channels)
        self.encoder = Encoder(*args, num_groups, mid_attn, dropout)
        self.decoder = Decoder(*args, embed_dim, num_groups, mid_attn, dropout)
        self.quantize = VectorQuantizer(n_embed, embed_dim, beta)
        self.quant_conv = nn.Conv2d(z_channels, embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(embed_dim, z_channels, 1)
        self.pad_multiple = 2 ** (len(ch_mult) - 1)
        self.ratios = tuple(ratios)
        #: the mask rule, "official" (the authors' router) or "exact"; the granularity scheme sets it
        self.router = check_router(router)
        self.entropy = EntropySettings(entropy_bins, entropy_sigma)
        self.mask_coding = mask_coding
        self._code: HuffmanCode | None = None
        #: (digest of the image, its latents, its entropy kernel) of the last encode: re-encoding the
        #: same image at other ratios (target-rate search) skips the encoder; cleared by update()
        self._analysis: tuple[bytes, tuple[Tensor, Tensor, Tensor], Tensor] | None = None

    # -- the network ----------------------------------------------------------------------------

    def grain_masks(self, x_signed: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Masks (coarse H/16, medium H/8, fine H/4) from patch entropy at the current ratios."""
        return grain_masks(x_signed, self.ratios, self.pad_multiple, self.entropy, self.router)

    def quantize_image(self, x_signed: Tensor, masks: Sequence[Tensor],
                       latents: tuple[Tensor, Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Eq. 2: merge the three latents on the H/4 grid by the masks, then quantize."""
        fine, medium, coarse = self.encoder(x_signed) if latents is None else latents
        mask_c, mask_m, mask_f = (m.to(fine.dtype) for m in masks)
        merged = (upsample_mask(mask_c, 4) * upsample_mask(coarse, 4)
                  + upsample_mask(mask_m, 2) * upsample_mask(medium, 2) + mask_f * fine)
        return self.quantize(self.quant_conv(merged))

    def decode_codes(self, z_q: Tensor, masks: Sequence[Tensor]) -> Tensor:
        """Decoder output in [−1, 1] (unclamped)."""
        floats = [m.to(z_q.dtype) for m in masks]
        return self.decoder(self.post_quant_conv(z_q), z_q, floats)

    def forward(self, x: Tensor) -> dict:
        """Training/evaluation pass on images in [0, 1]; counts codeword use while training."""
        x_signed = x * 2 - 1
        with torch.no_grad():
            masks = self.grain_masks(x_signed)
        z_q, codebook_loss, indices = self.quantize_image(x_signed, masks)
        tokens = native_tokens(indices, masks)
        if self.training:
            self.quantize.counts += torch.bincount(tokens, minlength=self.quantize.counts.numel())
            self._code, self._analysis = None, None
        x_hat = (self.decode_codes(z_q, masks) + 1) / 2
        counts = self.quantize.counts.to(torch.float32) + 1
        return {"x_hat": x_hat, "likelihoods": {"indices": (counts / counts.sum())[tokens]},
                "codebook_loss": codebook_loss, "indices": indices, "masks": masks}

    # -- statistical coding ---------------------------------------------------------------------

    def update(self, scale_table=None, force: bool = False, update_quantiles: bool = False) -> bool:
        """Rebuild the Huffman table from the usage counts."""
        self._code = HuffmanCode.from_counts(self.quantize.counts.cpu().numpy())
        self._analysis = None
        return True

    @property
    def huffman(self) -> HuffmanCode:
        if self._code is None:
            self.update()
        return self._code

    def mean_code_length(self) -> float:
        """L of eq. 12–13: expected Huffman code length under the training statistics."""
        return self.huffman.mean_length(self.quantize.counts.cpu().numpy())

    def analyse(self, x_signed: Tensor) -> tuple[tuple[Tensor, Tensor, Tensor], Tensor]:
        """The encoder's three latents and the entropy kernel of an image (cached for the last image)."""
        digest = hashlib.sha1(x_signed.detach().cpu().contiguous().numpy().tobytes()).digest()
        digest += str(tuple(x_signed.shape)).encode()
        if self._analysis is None or self._analysis[0] != digest:
            self._analysis = (digest, self.encoder(x_signed), pixel_kernel(x_signed, self.entropy))
        return self._analysis[1], self._analysis[2]

    def encode(self, x: Tensor) -> list[bytes]:
        x_signed = x * 2 - 1
        latents, kernel = self.analyse(x_signed)
        masks = masks_from_kernel(kernel, self.ratios, self.pad_multiple, self.router)
        _, _, indices = self.quantize_image(x_signed, masks, latents)
        mask_c, mask_m, _ = (m[0, 0].cpu().numpy() for m in masks)
        covered = np.kron(mask_c, np.ones((2, 2), dtype=bool))
        streams = [encode_mask(mask_c, np.ones_like(mask_c), self.mask_coding),
                   encode_mask(mask_m, ~covered, self.mask_coding)]
        # bit-allocation map (no-op unless recording): mask sections spread over their cells, code lengths
        bit_map.record_spread("mask_coarse", 8 * len(streams[0]), np.ones_like(mask_c))
        bit_map.record_spread("mask_medium", 8 * len(streams[1]), ~covered)
        bit_map.record_overlay("granularity", [m[0, 0].cpu().numpy() for m in masks])
        indices = indices.cpu()
        for grain, factor in zip(masks, (4, 2, 1), strict=True):
            tokens = indices[:, ::factor, ::factor][grain[:, 0].cpu()]
            streams.append(self.huffman.encode(tokens.numpy()))
            bit_map.record_cells(f"indices_{factor}", self.huffman.lengths[tokens.numpy()], grain[0, 0].cpu().numpy())
        return streams

    def check_sections(self, sections: list[bytes], height: int, width: int) -> None:
        """Five sections; the masks' lengths against the grid, the indices' against 1 to 16 tokens per
        coarse cell (all coarse … all fine) at the code's shortest and longest word."""
        if len(sections) != len(SECTIONS):
            raise BitstreamError(f"a vqgan bitstream has {len(SECTIONS)} sections ({', '.join(SECTIONS)}), "
                                 f"got {len(sections)}; the file is corrupted or from another codec")
        cells = (height // self.pad_multiple) * (width // self.pad_multiple)
        check_mask_section(sections[0], cells, "coarse")
        check_mask_section(sections[1], 4 * cells, "medium")
        lengths = self.huffman.lengths
        least, most = -(-cells * int(lengths.min()) // 8), -(-16 * cells * int(lengths.max()) // 8) + 3
        size = sum(len(s) for s in sections[2:])
        if size < least:
            raise BitstreamError(f"the index sections hold {size} bytes, fewer than the {least} a {width}x{height} "
                                 "image takes: the file is truncated or its declared size is wrong")
        if size > most:
            raise BitstreamError(f"the index sections hold {size} bytes, more than the {most} a {width}x{height} "
                                 "image can take: the file is corrupted or its declared size is wrong")

    def decode(self, sections: list[bytes], height: int, width: int) -> Tensor:
        self.check_sections(sections, height, width)
        g = self.pad_multiple
        mask_c = decode_mask(sections[0], np.ones((height // g, width // g), dtype=bool))
        covered = np.kron(mask_c, np.ones((2, 2), dtype=bool))
        mask_m = decode_mask(sections[1], ~covered)
        mask_f = ~(np.kron(covered | mask_m, np.ones((2, 2), dtype=bool)))
        device = self.quantize.embedding.weight.device
        grid = torch.zeros(height * 4 // g, width * 4 // g, dtype=torch.int64)
        for mask, section, factor in zip((mask_c, mask_m, mask_f), sections[2:], (4, 2, 1), strict=True):
            symbols = self.huffman.decode(section, int(mask.sum()))
            if len(section) != -(-self.huffman.bits(symbols) // 8):
                raise BitstreamError(f"an index section of {len(section)} bytes holds {len(symbols)} tokens in "
                                     f"{self.huffman.bits(symbols)} bits: the file is corrupted")
            tokens = torch.from_numpy(symbols)
            level = torch.zeros(mask.shape, dtype=torch.int64)
            level[torch.from_numpy(mask)] = tokens
            full = level.repeat_interleave(factor, 0).repeat_interleave(factor, 1)
            where = torch.from_numpy(mask).repeat_interleave(factor, 0).repeat_interleave(factor, 1)
            grid = torch.where(where, full, grid)
        masks = tuple(torch.from_numpy(m)[None, None].to(device) for m in (mask_c, mask_m, mask_f))
        z_q = self.quantize.lookup(grid[None].to(device))
        return ((self.decode_codes(z_q, masks) + 1) / 2).clamp(0, 1)

    # -- official checkpoints -------------------------------------------------------------------

    def checkpoint_key_map(self, state: Mapping[str, Tensor], variant: str | None = None) -> dict[str, Tensor]:
        """Official Control-GIC state dict → ours: the codec's raw (or ``ema``) weights, the usage
        counters stacked into ``quantize.counts``; the discriminator and the other copy are dropped."""
        variant = variant or "raw"
        if variant not in WEIGHT_VARIANTS:
            raise ValueError(f"backbone.weights={variant!r}; choose raw (the official inference) or ema")
        counters = sorted((k for k in state if k.startswith("quantize.embedding_counter.")),
                          key=lambda k: int(k.rsplit(".", 1)[1]))
        if not counters and not any(k.startswith("ema_") for k in state):
            if variant == "ema":
                raise ValueError("backbone.weights=ema but the checkpoint holds no ema_* copies")
            return dict(state)  # already ours
        out = {k: v for k, v in state.items() if k.split(".", 1)[0] in CODEC_PREFIXES and k not in counters}
        if counters:
            out["quantize.counts"] = torch.stack([state[k].reshape(()) for k in counters]).round().to(torch.int64)
        if variant == "ema":
            for key in list(out):
                if key == "quantize.counts":
                    continue
                prefix, rest = key.split(".", 1)
                ema_key = f"ema_{prefix}.{rest.replace('.', '')}"
                if ema_key not in state:
                    raise ValueError(f"backbone.weights=ema: the checkpoint has no {ema_key} for {key}")
                out[key] = state[ema_key]
        return out


def native_tokens(indices: Tensor, masks: Sequence[Tensor]) -> Tensor:
    """The indices actually coded: one per coarse, medium and fine cell (native grain), flattened."""
    parts = [indices[:, ::f, ::f][m[:, 0]] for m, f in zip(masks, (4, 2, 1), strict=True)]
    return torch.cat(parts)
