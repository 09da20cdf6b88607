"""Pretrained backbone weights of the perceptual metrics: an explicit file, or torch hub's cache.

Our machines cannot download them; when a file is missing the error names it and where to put it.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from ctrlic.errors import UserError

#: network -> (file name in torch hub's cache, download URL): torchvision's ImageNet backbones and
#: torch-fidelity's FID Inception (TensorFlow's 2015-12-05 graph converted to PyTorch)
BACKBONES = {
    "alex": ("alexnet-owt-7be5be79.pth", "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"),
    "vgg": ("vgg16-397923af.pth", "https://download.pytorch.org/models/vgg16-397923af.pth"),
    "squeeze": ("squeezenet1_1-b8a52dc0.pth", "https://download.pytorch.org/models/squeezenet1_1-b8a52dc0.pth"),
    "inception": ("weights-inception-2015-12-05-6726825d.pth",
                  "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
                  "weights-inception-2015-12-05-6726825d.pth"),
}


class MissingWeightsError(UserError, FileNotFoundError):
    """Pretrained weights that cannot be downloaded here are not where they were looked for."""


class WeightsMismatchError(UserError):
    """A weights file that does not fit the network it was given to."""


def torch_hub_checkpoints() -> Path:
    """torch hub's weight cache (``$TORCH_HOME/hub/checkpoints``, by default ``~/.cache/torch/...``)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def load_backbone_state(net: str, weights: str | Path | None = None) -> dict[str, Tensor]:
    """The state dict of backbone ``net``: from ``weights`` when given, else torch hub's cache.

    A file missing from the cache is downloaded when the machine is online (torch hub's own code);
    otherwise MissingWeightsError says which file to put where.
    """
    if net not in BACKBONES:
        raise ValueError(f"no pretrained backbone {net!r}; known: {', '.join(BACKBONES)}")
    file_name, url = BACKBONES[net]
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise MissingWeightsError(f"{net} weights file {path} does not exist (expected {file_name}); "
                                      f"fix the weights path or put {file_name} in {torch_hub_checkpoints()}")
        return torch.load(path, map_location="cpu", weights_only=True)
    cache = torch_hub_checkpoints()
    try:
        return torch.hub.load_state_dict_from_url(url, model_dir=str(cache), file_name=file_name,
                                                  map_location="cpu", weights_only=True)
    except (OSError, RuntimeError) as err:  # URLError is an OSError: no network, no cached file
        raise MissingWeightsError(
            f"the pretrained {net} backbone could not be loaded or downloaded ({err}): put "
            f"{file_name} in {cache} (or set TORCH_HOME, or give weights=PATH), or use pretrained=false "
            "(random backbone, for tests only)") from None


def load_into(module: torch.nn.Module, state: dict[str, Tensor], net: str) -> None:
    """Load ``state`` into ``module``: every tensor of the module must be there (extra ones, e.g. a
    classifier head, are ignored); a one-line error names what did not fit."""
    missing, unexpected = module.state_dict().keys() - state.keys(), state.keys() - module.state_dict().keys()
    if missing:
        raise WeightsMismatchError(f"{net} weights lack {len(missing)} tensors of the network, e.g. "
                                   f"{sorted(missing)[0]!r} (unexpected: {sorted(unexpected)[:2]})")
    try:
        module.load_state_dict(state, strict=False)
    except RuntimeError as err:
        raise WeightsMismatchError(f"{net} weights do not fit the network: {str(err).splitlines()[-1]}") from None
