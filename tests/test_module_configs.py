"""The training module's loss, optimizer and schedule come from config files (``_target_``), not strings."""

from __future__ import annotations

from types import SimpleNamespace

import hydra
import pytest
import torch

from ctrlic.codecs.build import build_codec
from ctrlic.codecs.codec import Codec
from ctrlic.lightning_modules import losses
from tests.test_configs import compose_cfg, options


def _codec_for(cfg) -> Codec:
    """The config's codec at tiny size (seeded)."""
    torch.manual_seed(0)
    return build_codec({**cfg.backbone, "size": "tiny"}, cfg.control)


def build_module(*overrides: str, max_steps: int = 100):
    """``cfg.module`` instantiated as ``task=train`` does, on a tiny codec, with a trainer of ``max_steps``."""
    cfg = compose_cfg("perceptual_pretrained=false", *overrides)
    module = hydra.utils.instantiate(cfg.module, codec=_codec_for(cfg), _convert_="all")
    module._trainer = SimpleNamespace(max_steps=max_steps)
    return cfg, module


@pytest.mark.parametrize("loss", options("module/loss"))
def test_every_loss_config_builds_its_class_and_computes_the_loss(loss):
    cfg, module = build_module(f"module/loss={loss}")
    assert type(module.criterion).__name__ == cfg.module.loss._target_.rsplit(".", 1)[1]
    x = torch.rand(2, 3, 64, 64)
    out = {"x_hat": (x + 0.1 * torch.randn_like(x)).clamp(0, 1), "likelihoods": {"y": torch.full((2, 4, 4, 4), 0.5)}}
    terms = module.criterion(out, x, 0.5)
    expected = {
        "mse": 0.5 * 255**2 * terms["mse"] + terms["bpp"],
        "ms_ssim": 0.5 * (1 - terms.get("ms_ssim", torch.tensor(0.0))) + terms["bpp"],
        "lpips": 0.5 * terms["bpp"] + 150.0 * terms["mse"] + 0.1 * terms.get("lpips", torch.tensor(0.0)),
    }[loss]
    torch.testing.assert_close(terms["loss"], expected)


def test_a_new_loss_is_a_config_file(tmp_path):
    """A loss file in any config folder on Hydra's search path trains; no code picks losses by name."""
    (tmp_path / "module" / "loss").mkdir(parents=True)
    (tmp_path / "module" / "loss" / "scaled_mse.yaml").write_text(
        "_target_: tests.test_module_configs.ScaledMSELoss\nlmbda_scale: 2.0\n")
    _, module = build_module(f"hydra.searchpath=[file://{tmp_path}]", "module/loss=scaled_mse")
    assert isinstance(module.criterion, ScaledMSELoss) and module.criterion.lmbda_scale == 2.0
    x = torch.rand(1, 3, 64, 64)
    terms = module.criterion({"x_hat": x.flip(-1), "likelihoods": {"y": torch.full((1, 4, 4, 4), 0.5)}}, x, 0.01)
    torch.testing.assert_close(terms["loss"], 0.02 * 255**2 * terms["mse"] + terms["bpp"])


class ScaledMSELoss(losses.MSERateLoss):
    """A stand-in for a researcher's new loss: MSE with λ scaled."""

    def __init__(self, lmbda_scale: float) -> None:
        super().__init__()
        self.lmbda_scale = lmbda_scale

    def combine(self, terms, x_hat, x, lmbda):
        return super().combine(terms, x_hat, x, lmbda * self.lmbda_scale)


@pytest.mark.parametrize(("module", "schedule"), [("rd", torch.optim.lr_scheduler.MultiStepLR),
                                                  ("variable_rate", torch.optim.lr_scheduler.CosineAnnealingLR),
                                                  ("prompt", None), ("lossless", None), ("vq", None)])
def test_each_module_config_keeps_its_optimizer_and_schedule(module, schedule):
    overrides = [f"module={module}"]
    if module == "prompt":
        overrides += ["control=layer_prompts_tic", "backbone=tic", "backbone.size=tiny"]
    cfg = compose_cfg("perceptual_pretrained=false", *overrides)
    built = hydra.utils.instantiate(cfg.module, codec=_codec_for(cfg), _convert_="all")
    built._trainer = SimpleNamespace(max_steps=100)
    configured = built.configure_optimizers()
    if module == "vq":  # generator and discriminator, Adam with the official betas
        assert all(type(o) is torch.optim.Adam and o.defaults["betas"] == (0.5, 0.9) for o in configured)
        return
    optimizer = configured["optimizer"] if isinstance(configured, dict) else configured
    assert type(optimizer) is torch.optim.Adam
    assert [g["lr"] for g in optimizer.param_groups][0] == cfg.module.lr
    if schedule is None:
        assert not isinstance(configured, dict)
        return
    lightning = configured["lr_scheduler"]
    assert type(lightning["scheduler"]) is schedule and lightning["interval"] == "step"
    if schedule is torch.optim.lr_scheduler.MultiStepLR:
        assert dict(lightning["scheduler"].milestones) == {90: 1}  # 0.9 of max_steps
    else:
        assert lightning["scheduler"].T_max == 100


def test_no_module_config_holds_unused_keys():
    for name in options("module"):
        cfg = compose_cfg("perceptual_pretrained=false", f"module={name}")
        # only the modules that train the entropy models have a quantiles group; the others freeze them
        assert "aux_lr" not in cfg.module or name in ("rd", "multi_lambda"), name
        assert "lpips" not in cfg.module or name == "vq", name
        assert "distortion" not in cfg.module, name
