"""Perceptual metrics: LPIPS / DISTS / FID / KID as DDP-reducible torchmetrics, weight loading, patches."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ctrlic.metrics.distribution import PatchFID, PatchKID, count_patches, extract_patches, inception
from ctrlic.metrics.perceptual import DISTS, LPIPS, DISTSMetric, LPIPSMetric
from ctrlic.metrics.weights import MissingWeightsError, WeightsMismatchError


class TinyFeatures(nn.Module):
    """A small stand-in for Inception (same uint8 input contract) so FID/KID mechanics test fast."""

    num_features = 8

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, self.num_features, 5, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x.float() / 255).flatten(2).std(-1)  # texture energy: noise raises it


def _pair(n: int = 4, size: int = 64, noise: float = 0.1):
    torch.manual_seed(1)
    x = torch.rand(n, 3, size, size)
    return (x + noise * torch.randn_like(x)).clamp(0, 1), x


def _ranks(make, x_hat, x, **update):
    """The metric on all images vs. two 'ranks' on halves, merged as DDP's sync would."""
    whole, first, second = make(), make(), make()
    whole.update(x_hat, x, **update)
    first.update(x_hat[:2], x[:2], **update)
    second.update(x_hat[2:], x[2:], **update)
    first.merge_state(second)
    return whole, first


@pytest.mark.parametrize("make", [lambda: LPIPSMetric("alex", pretrained=False),
                                  lambda: DISTSMetric(pretrained=False)])
def test_mean_distance_metrics_reduce_across_ranks(make):
    x_hat, x = _pair()

    def seeded():
        torch.manual_seed(0)  # the same random backbone on every 'rank'
        return make()

    whole, merged = _ranks(seeded, x_hat, x)
    assert whole._reductions["total"].__name__ == whole._reductions["count"].__name__ == "dim_zero_sum"
    torch.testing.assert_close(merged.compute(), whole.compute())
    torch.testing.assert_close(whole.compute(), whole.net.distances(x_hat, x).mean())
    assert int(whole.count) == 4


def test_distances_are_zero_for_identical_images_and_grow_with_noise():
    torch.manual_seed(0)
    lpips, dists = LPIPS("alex", pretrained=False), DISTS(pretrained=False)
    x = torch.rand(2, 3, 64, 64)
    for metric in (lpips, dists):
        assert metric(x, x).abs() < 1e-5
        small = metric((x + 0.02 * torch.randn_like(x)).clamp(0, 1), x)
        large = metric((x + 0.3 * torch.randn_like(x)).clamp(0, 1), x)
        assert large > small > 1e-5


def test_dists_is_differentiable_for_training_losses():
    torch.manual_seed(0)
    dists = DISTS(pretrained=False)
    x = torch.rand(1, 3, 64, 64)
    x_hat = (x + 0.1 * torch.randn_like(x)).clamp(0, 1).requires_grad_()
    dists(x_hat, x).backward()
    assert x_hat.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in dists.parameters())


def test_backbones_load_from_a_weights_file(tmp_path):
    from torchvision.models import alexnet, vgg

    torch.manual_seed(5)
    alex = alexnet(weights=None).state_dict()
    torch.save(alex, tmp_path / "alexnet-owt-7be5be79.pth")
    lpips = LPIPS("alex", weights=tmp_path / "alexnet-owt-7be5be79.pth")
    assert torch.equal(lpips.model.net.slice1[0].weight, alex["features.0.weight"])
    assert torch.equal(getattr(lpips.model.net.slice5, "10").weight, alex["features.10.weight"])
    features = {f"features.{k}": v for k, v in vgg.make_layers(vgg.cfgs["D"]).state_dict().items()}
    torch.save(features, tmp_path / "vgg16.pth")
    dists = DISTS(weights=tmp_path / "vgg16.pth")
    assert torch.equal(getattr(dists.model.stage5, "28").weight, features["features.28.weight"])


def test_missing_weights_name_the_file_and_where_to_put_it(tmp_path, monkeypatch):
    with pytest.raises(MissingWeightsError, match=r"nope\.pth does not exist.*vgg16-397923af\.pth"):
        DISTS(weights=tmp_path / "nope.pth")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url",
                        lambda *a, **k: (_ for _ in ()).throw(OSError("no network")))
    with pytest.raises(MissingWeightsError, match=r"put weights-inception-2015-12-05-6726825d\.pth in .*checkpoints"):
        inception(pretrained=True)
    with pytest.raises(ValueError, match="vgg16-397923af.pth"):  # a user error, one line
        LPIPS("vgg")


def test_weights_of_another_network_are_refused(tmp_path):
    from torchvision.models import alexnet

    torch.save(alexnet(weights=None).state_dict(), tmp_path / "alex.pth")
    with pytest.raises(WeightsMismatchError, match="DISTS-vgg16 weights"):
        DISTS(weights=tmp_path / "alex.pth")


def test_patches_follow_the_hific_protocol():
    assert count_patches(512, 768) == 6 + 2  # Kodak: 2×3 grid + 1×2 shifted grid
    assert count_patches(200, 200) == 0
    x = torch.arange(2 * 3 * 512 * 768, dtype=torch.float32).reshape(2, 3, 512, 768)
    patches = extract_patches(x)
    assert patches.shape == (16, 3, 256, 256)
    assert torch.equal(patches[0], x[0, :, :256, :256])
    assert torch.equal(patches[-1], x[1, :, 128:384, 384:640])  # last shifted patch of the last image


def test_fid_and_kid_on_patches_reduce_across_ranks():
    x_hat, x = _pair(size=64, noise=0.3)
    net = TinyFeatures()
    whole, merged = _ranks(lambda: PatchFID(feature=net, patch_size=32), x_hat, x)
    assert int(whole.real_features_num_samples) == 4 * count_patches(64, 64, 32) == 20
    torch.testing.assert_close(merged.compute(), whole.compute())
    assert whole.compute() > 1e-3
    same = PatchFID(feature=net, patch_size=32)
    same.update(x, x)
    assert same.compute().abs() < 1e-6
    # subsets of all 20 patches: the MMD estimate is then independent of the order ranks gather in
    kid_whole, kid_merged = _ranks(lambda: PatchKID(feature=net, patch_size=32, subsets=2, subset_size=20), x_hat, x)
    mean_whole = kid_whole.compute()[0]
    assert kid_merged.compute()[0] == pytest.approx(float(mean_whole), rel=1e-4)
    assert mean_whole > 0


def test_fid_keeps_the_originals_across_rd_points():
    x_hat, x = _pair(size=64, noise=0.3)
    fid = PatchFID(feature=TinyFeatures(), patch_size=32, reset_real_features=False)
    fid.update(x_hat, x)
    first = fid.compute()
    fid.reset()
    fid.update(x_hat, None)  # next RD point: decoded images only
    torch.testing.assert_close(fid.compute(), first)


def test_inception_loads_its_weights_file_and_gives_2048_features(tmp_path):
    torch.manual_seed(0)
    net = inception(pretrained=False)
    torch.save(net.state_dict(), tmp_path / "inception.pth")
    loaded = inception(weights=tmp_path / "inception.pth")
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), net.state_dict().values(), strict=True))
    with torch.no_grad():
        assert loaded(torch.randint(0, 256, (1, 3, 256, 256), dtype=torch.uint8)).shape == (1, 2048)
