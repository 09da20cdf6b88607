"""RDModule's optimisation equals CompressAI's two-optimizer recipe, with clipping on the net only."""

from __future__ import annotations

import copy

import pytest
import torch

from ctrlic.codecs.backbones.cheng import Cheng2020Attn
from ctrlic.codecs.codec import Codec
from ctrlic.lightning_modules.losses import MSERateLoss
from ctrlic.lightning_modules.rd import RDModule


def make_module(clip: float | None) -> RDModule:
    torch.manual_seed(0)
    return RDModule(Codec(Cheng2020Attn(N=32), name="cheng2020_attn"), lmbda=0.0483, lr=1e-4, aux_lr=1e-3,
                    clip_max_norm=clip, scheduler=None)


def compressai_step(codec: Codec, x: torch.Tensor, clip: float | None) -> None:
    """CompressAI's examples/train.py: net optimizer on the RD loss, aux optimizer on aux_loss."""
    net = [p for n, p in codec.backbone.named_parameters() if not n.endswith(".quantiles")]
    aux = [p for n, p in codec.backbone.named_parameters() if n.endswith(".quantiles")]
    opt, aux_opt = torch.optim.Adam(net, lr=1e-4), torch.optim.Adam(aux, lr=1e-3)
    opt.zero_grad()
    aux_opt.zero_grad()
    MSERateLoss()(codec(x), x, 0.0483)["loss"].backward()
    if clip:
        torch.nn.utils.clip_grad_norm_(net, clip)
    opt.step()
    codec.backbone.aux_loss().backward()
    aux_opt.step()


def ours_step(module: RDModule, x: torch.Tensor) -> None:
    optimizer = module.configure_optimizers()
    optimizer.zero_grad()
    terms = module.criterion(module.codec(x), x, module.lmbda)
    (terms["loss"] + module.codec.backbone.aux_loss()).backward()
    module.configure_gradient_clipping(optimizer)
    optimizer.step()


@pytest.mark.parametrize("clip", [None, 1.0])
def test_one_optimizer_with_two_groups_equals_two_optimizers(clip):
    module = make_module(clip)
    reference = copy.deepcopy(module.codec)
    x = torch.rand(2, 3, 64, 64)
    torch.manual_seed(1)
    ours_step(module, x)
    torch.manual_seed(1)
    compressai_step(reference, x, clip)
    for (name, a), b in zip(module.codec.backbone.named_parameters(), reference.backbone.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7, msg=name)


def test_clipping_leaves_the_quantile_gradients_alone():
    module = make_module(clip=1e-6)
    x = torch.rand(2, 3, 64, 64)
    terms = module.criterion(module.codec(x), x, module.lmbda)
    (terms["loss"] + module.codec.backbone.aux_loss()).backward()
    before = [p.grad.clone() for p in module.aux_params]
    module.configure_gradient_clipping(None)
    net_norm = torch.norm(torch.stack([p.grad.norm() for p in module.net_params if p.grad is not None]))
    assert net_norm <= 1.001e-6
    for a, b in zip(before, module.aux_params, strict=True):
        assert torch.equal(a, b.grad)
    assert any(g.abs().sum() > 0 for g in before)
