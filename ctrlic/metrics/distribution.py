"""FID and KID between decoded and original images on 256×256 patches (HiFiC's FID/256 protocol).

Each image is cut into non-overlapping patches, then again with the grid shifted by half a patch in
both directions (Mentzer et al. 2020, HiFiC §A.7), and every patch goes through torch-fidelity's FID
Inception. The metrics are torchmetrics' (sum / gathered feature states), so they reduce right under
DDP. With few patches the statistics are meaningless: callers check :func:`count_patches` first.
"""

from __future__ import annotations

from pathlib import Path
from unittest import mock

import torch
from torch import Tensor
from torchmetrics.image.fid import FrechetInceptionDistance, NoTrainInceptionV3
from torchmetrics.image.kid import KernelInceptionDistance

from ctrlic.metrics.weights import load_backbone_state, load_into

#: HiFiC's FID/256 patch side
PATCH = 256
#: Inception pool features used by FID and KID
FEATURES = 2048


def _grid(h: int, w: int, size: int, offset: int) -> list[tuple[int, int]]:
    return [(top, left) for top in range(offset, h - size + 1, size) for left in range(offset, w - size + 1, size)]


def patch_corners(h: int, w: int, size: int = PATCH) -> list[tuple[int, int]]:
    """Top-left corners of the patches: the grid from (0, 0) and the grid from (size/2, size/2)."""
    return _grid(h, w, size, 0) + _grid(h, w, size, size // 2)


def count_patches(h: int, w: int, size: int = PATCH) -> int:
    """How many patches an H×W image gives (Kodak 768×512: 6 + 2 = 8)."""
    return len(patch_corners(h, w, size))


def extract_patches(x: Tensor, size: int = PATCH) -> Tensor:
    """All patches of a batch (N, C, H, W) → (N·P, C, size, size)."""
    corners = patch_corners(*x.shape[-2:], size)
    if not corners:
        return x.new_zeros(0, x.shape[1], size, size)
    return torch.cat([x[..., t:t + size, s:s + size] for t, s in corners])


def inception(pretrained: bool = True, weights: str | Path | None = None) -> NoTrainInceptionV3:
    """torch-fidelity's FID InceptionV3 (2048 pool features), weights from ``weights`` or the cache.

    ``pretrained=False`` keeps PyTorch's random init (tests only): the constructor's own download
    and load are bypassed, and pretrained weights are loaded here with a clear error when missing.
    """
    import torch_fidelity.feature_extractor_inceptionv3 as tf_inception

    with mock.patch.object(tf_inception, "load_state_dict_from_url", lambda *a, **k: {}), \
         mock.patch.object(tf_inception.FeatureExtractorInceptionV3, "load_state_dict", lambda *a, **k: None):
        net = NoTrainInceptionV3(name="inception-v3-compat", features_list=[str(FEATURES)])
    if pretrained:
        load_into(net, load_backbone_state("inception", weights), "FID Inception")
    net.num_features = FEATURES  # torchmetrics reads it instead of probing with a dummy image
    return net


def _to_uint8(x: Tensor) -> Tensor:
    """[0, 1] floats → the 0..255 uint8 images torch-fidelity's Inception takes."""
    return (x.detach().float().clamp(0, 1) * 255).round().to(torch.uint8)


class _Patches:
    """``update(x_hat, x)`` on whole images: patches of ``x`` are the real set, of ``x_hat`` the fake.

    Either may be None; with ``reset_real_features=False`` the originals are fed once and kept
    across ``reset()`` while the decoded images change (an RD sweep).
    """

    patch_size: int

    def update(self, x_hat: Tensor | None, x: Tensor | None = None) -> None:
        if x is not None:
            super().update(_to_uint8(extract_patches(x, self.patch_size)).to(self.device), real=True)
        if x_hat is not None:
            super().update(_to_uint8(extract_patches(x_hat, self.patch_size)).to(self.device), real=False)


class PatchFID(_Patches, FrechetInceptionDistance):
    """FID/256: Fréchet distance of Inception features of original vs decoded patches."""

    def __init__(self, pretrained: bool = True, weights: str | Path | None = None, patch_size: int = PATCH,
                 feature: torch.nn.Module | None = None, **kwargs) -> None:
        super().__init__(feature=feature or inception(pretrained, weights), **kwargs)
        self.patch_size = patch_size


class PatchKID(_Patches, KernelInceptionDistance):
    """KID/256: polynomial-kernel MMD of Inception features of original vs decoded patches.

    ``compute()`` returns (mean, std) over ``subsets`` random subsets of ``subset_size`` patches.
    """

    def __init__(self, pretrained: bool = True, weights: str | Path | None = None, patch_size: int = PATCH,
                 feature: torch.nn.Module | None = None, **kwargs) -> None:
        super().__init__(feature=feature or inception(pretrained, weights), **kwargs)
        self.patch_size = patch_size


@torch.no_grad()
def patch_features(net: torch.nn.Module, x: Tensor, patch_size: int = PATCH) -> Tensor:
    """Inception features (P, 2048) of the patches of one image (1, 3, H, W), float32 on the CPU.

    The same uint8 patches the metrics' ``update`` feeds the network, so features saved per image and
    combined later (:func:`fid_kid`) give the metrics' values.
    """
    patches = extract_patches(x, patch_size)
    if not len(patches):
        return torch.zeros(0, getattr(net, "num_features", FEATURES))
    device = next(net.parameters()).device
    return net(_to_uint8(patches).to(device)).float().cpu()


class _Given(torch.nn.Module):
    """A stand-in feature extractor: the features are given, not computed."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, features: Tensor) -> Tensor:
        return features


def fid_kid(real: list[Tensor], fake: list[Tensor], kid_subsets: int, kid_subset_size: int,
            seed: int = 0) -> dict[str, float]:
    """FID and KID (mean, std) from per-image patch features, fed in list order; KID's random subsets drawn
    from a generator seeded with ``seed`` (the same figures on every run)."""
    width = next((f.shape[1] for f in [*real, *fake] if len(f)), FEATURES)
    fid = FrechetInceptionDistance(feature=_Given(width))
    kid = KernelInceptionDistance(feature=_Given(width), subsets=kid_subsets, subset_size=kid_subset_size)
    for metric in (fid, kid):
        for features in real:
            if len(features):
                metric.update(features, real=True)
        for features in fake:
            if len(features):
                metric.update(features, real=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        kid_mean, kid_std = kid.compute()
    return {"fid": float(fid.compute()), "kid": float(kid_mean), "kid_std": float(kid_std)}
