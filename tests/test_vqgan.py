"""The Control-GIC VQGAN backbone: official key layout, checkpoint key map, coding round trips."""

from __future__ import annotations

import pytest
import torch

from ctrlic.codecs.backbones.vqgan import VQGAN, VQGANConfigError, native_tokens
from ctrlic.codecs.backbones.vqgan_blocks import count_parameters
from ctrlic.codecs.build import build_codec
from ctrlic.codecs.checkpoint import CheckpointError, describe_mismatch
from ctrlic.lightning_modules.discriminator import AdversarialLoss
from tests.helpers_control_gic import tiny_codec, tiny_configs
from tests.manifests import manifest_shapes

MANIFEST = "control_gic_CGIC.tsv"
RATIOS = [(0.5, 0.4, 0.1), (0.0, 0.0, 1.0), (1.0, 0.0, 0.0), (0.2, 0.3, 0.5)]


def official_meta_state() -> dict[str, torch.Tensor]:
    """The official checkpoint's keys and shapes as meta tensors (no memory)."""
    return {k: torch.empty(shape, device="meta") for k, shape in manifest_shapes(MANIFEST).items()}


@pytest.mark.parametrize("variant", ["raw", "ema"])
def test_paper_size_matches_the_official_checkpoint_through_the_key_map(variant):
    with torch.device("meta"):
        model = VQGAN()
    mapped = model.checkpoint_key_map(official_meta_state(), variant)
    assert describe_mismatch(mapped, model.state_dict()) == ""
    assert mapped["quantize.counts"].shape == (1024,)
    assert count_parameters(model) == 130_358_967  # manifest: codec without the 1024 counters


def test_discriminator_matches_the_official_loss_keys():
    official = {k: v for k, v in manifest_shapes(MANIFEST).items() if k.startswith("loss.")}
    ours = {f"loss.{k}": tuple(v.shape) for k, v in AdversarialLoss().state_dict().items()}
    assert ours == official


def official_checkpoint(model: VQGAN, ndf: int = 8) -> dict[str, torch.Tensor]:
    """``model``'s weights in the official layout: counters, discriminator and ema copies (+1)."""
    state = {k: v.clone() for k, v in model.state_dict().items() if k != "quantize.counts"}
    counts = model.quantize.counts
    state |= {f"quantize.embedding_counter.{i}": counts[i].float().reshape(1) for i in range(counts.numel())}
    state |= {f"loss.{k}": v for k, v in AdversarialLoss(ndf=ndf).state_dict().items()}
    for key, value in model.state_dict().items():
        if key != "quantize.counts":
            prefix, rest = key.split(".", 1)
            state[f"ema_{prefix}.{rest.replace('.', '')}"] = value + 1
    for prefix in ("encoder", "decoder", "quantize", "quant_conv", "post_quant_conv"):
        state[f"ema_{prefix}.decay"] = torch.tensor(0.9999)
        state[f"ema_{prefix}.num_updates"] = torch.tensor(7, dtype=torch.int32)
    return state


@pytest.mark.parametrize("variant", ["raw", "ema"])
def test_official_checkpoint_loads_strictly_with_raw_or_ema_weights(tmp_path, variant):
    source = tiny_codec(seed=1).backbone
    source.quantize.counts.copy_(torch.arange(1024))
    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": official_checkpoint(source), "global_step": 3}, path)
    backbone_cfg, control_cfg = tiny_configs()
    codec = build_codec({**backbone_cfg, "checkpoint": str(path), "weights": variant}, control_cfg)
    shift = 1.0 if variant == "ema" else 0.0
    loaded = codec.backbone.state_dict()
    for key, value in source.state_dict().items():
        expected = value if key == "quantize.counts" else value + shift
        assert torch.equal(loaded[key], expected), key


def test_ema_weights_from_a_checkpoint_without_copies_raise(tmp_path):
    path = tmp_path / "ours.pt"
    torch.save(tiny_codec().backbone.state_dict(), path)
    backbone_cfg, control_cfg = tiny_configs()
    with pytest.raises(CheckpointError, match="no ema_"):
        build_codec({**backbone_cfg, "checkpoint": str(path), "weights": "ema"}, control_cfg)


def test_tiny_size_is_under_a_million_parameters():
    assert count_parameters(tiny_codec().backbone) < 1_000_000


@pytest.mark.parametrize("ratios", RATIOS)
def test_round_trip_decodes_what_the_forward_pass_reconstructs(ratios):
    codec = tiny_codec()
    codec.prepare()
    x = torch.rand(1, 3, 70, 90, generator=torch.Generator().manual_seed(0))
    knobs = dict(zip(("fine", "medium", "coarse"), ratios, strict=True))
    data = codec.compress(x, knobs)
    x_hat = codec.decompress(data)
    assert x_hat.shape == x.shape
    codec.set_knobs(knobs)
    with torch.no_grad():
        padded = torch.nn.functional.pad(x, (0, 6, 0, 10), mode="replicate")
        expected = codec(padded)["x_hat"].clamp(0, 1)[..., :70, :90]
    assert torch.allclose(x_hat, expected, atol=1e-4)


def test_more_fine_area_codes_more_indices():
    codec = tiny_codec()
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    sizes = [len(codec.compress(x, {"fine": f, "medium": 0.9 - f, "coarse": 0.1})) for f in (0.0, 0.45, 0.9)]
    assert sizes[0] < sizes[1] < sizes[2]


def test_encoder_sees_images_in_signed_range():
    backbone = tiny_codec().backbone.eval()
    seen = []
    backbone.encoder.conv_in.register_forward_hook(lambda m, inp, out: seen.append(inp[0]))
    backbone(torch.zeros(1, 3, 32, 32))
    backbone(torch.ones(1, 3, 32, 32))
    assert seen[0].max().item() == -1.0 and seen[1].min().item() == 1.0


def test_training_forward_counts_the_coded_tokens():
    backbone = tiny_codec().backbone.train()
    x = torch.rand(2, 3, 64, 64)
    out = backbone(x)
    tokens = native_tokens(out["indices"], out["masks"])
    assert backbone.quantize.counts.sum().item() == tokens.numel()
    assert torch.equal(backbone.quantize.counts, torch.bincount(tokens, minlength=1024))
    backbone.eval()
    backbone(x)
    assert backbone.quantize.counts.sum().item() == tokens.numel()  # evaluation does not count


def test_bf16_autocast_chooses_the_codewords_fp32_chooses():
    codec = tiny_codec()
    quantizer = codec.backbone.quantize
    torch.manual_seed(1)
    z = torch.randn(2, quantizer.embedding.weight.shape[1], 8, 8) * 1e-3  # the codebook's own scale
    _, _, exact = quantizer(z)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z_q, loss, indices = quantizer(z.bfloat16())
    assert torch.equal(indices, quantizer(z.bfloat16().float())[2])
    assert z_q.dtype == loss.dtype == torch.float32
    assert (indices == exact).float().mean() > 0.5  # bf16 input rounding moves only some choices


def test_mismatched_branch_widths_are_rejected():
    with pytest.raises(VQGANConfigError, match="same width"):
        VQGAN(ch=8, ch_mult=(1, 2, 4), num_groups=4)


def test_official_discriminator_weights_load_into_the_training_module(tmp_path):
    from ctrlic.lightning_modules.vq import VQModule

    official = {f"loss.{k}": v + 1 for k, v in AdversarialLoss().state_dict().items()}
    official["encoder.conv_in.weight"] = torch.zeros(1)  # the rest of the checkpoint is ignored here
    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": official}, path)
    module = VQModule(tiny_codec(), lpips={"pretrained": False}, discriminator_checkpoint=str(path))
    loaded = module.loss.state_dict()
    assert all(torch.equal(loaded[k[len("loss."):]], v) for k, v in official.items() if k.startswith("loss."))
    with pytest.raises(CheckpointError, match="do not fit"):
        VQModule(tiny_codec(), lpips={"pretrained": False}, discriminator={"ndf": 8},
                 discriminator_checkpoint=str(path))


def test_reencoding_an_image_at_other_ratios_matches_a_fresh_encode():
    codec = tiny_codec()
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    first = {r: codec.compress(x, {"fine": r, "medium": 1 - r, "coarse": 0.0}) for r in (0.2, 0.8)}
    for r, data in first.items():
        codec.backbone.update()  # drops the cached analysis of x
        assert codec.compress(x, {"fine": r, "medium": 1 - r, "coarse": 0.0}) == data
    with torch.no_grad():
        codec.backbone.encoder.conv_out_fine.bias.add_(1.0)
    codec.prepare()  # new weights: new fingerprint, and the cache goes
    changed = codec.compress(x, {"fine": 0.8, "medium": 0.2, "coarse": 0.0})
    assert changed[-200:] != first[0.8][-200:]


def test_truncated_index_section_raises_a_bitstream_error():
    from ctrlic.codecs.bitstream import BitstreamError

    backbone = tiny_codec().backbone.eval()
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    backbone.ratios = (1.0, 0.0, 0.0)
    with torch.no_grad():
        sections = backbone.encode(x)
        with pytest.raises(BitstreamError, match="truncated"):
            backbone.decode([*sections[:4], sections[4][:3]], 32, 32)
        with pytest.raises(BitstreamError, match="5 sections"):
            backbone.decode(sections[:3], 32, 32)
