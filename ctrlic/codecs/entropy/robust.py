"""Device-robust entropy parameters: the modules that turn ẑ into means and scales, run on the CPU in float64.

Learned codecs fail to decode when encoder and decoder compute slightly different scales (GPU vs CPU
kernels, TF32, other SIMD paths): one scale on the other side of a table threshold gives another CDF
index and the rANS stream desynchronises. Computing that path on the CPU in float64 on both sides
removes the device from the equation and puts threshold ties far below float32 noise (cf. the CPU
entropy-parameter path of NeuralCompression); the container records which path was used.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator, Sequence

import torch
from torch import nn

from ctrlic.errors import UserError

#: entropy-parameter paths a container may name: the backbone's own device and dtype, or CPU float64
ENTROPY_PATHS = ("native", "cpu64")
#: the container extras key recording the path (absent: native)
EXTRAS_KEY = "ep"


class EntropyPathError(UserError):
    """An entropy-parameter path this backbone cannot take."""


def check_path(path: str, supported: bool) -> str:
    """Validate an entropy-parameter path name for a backbone (``supported``: it has a cpu64 path)."""
    if path not in ENTROPY_PATHS:
        raise EntropyPathError(f"unknown entropy path {path!r}; choose one of {', '.join(ENTROPY_PATHS)}")
    if path == "cpu64" and not supported:
        raise EntropyPathError("this backbone has no device-robust (cpu64) entropy path; use 'native'")
    return path


@contextlib.contextmanager
def on_cpu_float64(owner: nn.Module, names: Sequence[str]) -> Iterator[None]:
    """Swap ``owner``'s submodules ``names`` for float64 CPU copies for the duration of the block."""
    originals = {name: getattr(owner, name) for name in names}
    try:
        for name, module in originals.items():
            setattr(owner, name, copy.deepcopy(module).to("cpu", torch.float64))
        yield
    finally:
        for name, module in originals.items():
            setattr(owner, name, module)


@contextlib.contextmanager
def entropy_path(backbone: nn.Module, path: str) -> Iterator[None]:
    """The backbone codes with entropy-parameter path ``path`` inside the block (``backbone.entropy_path``)."""
    check_path(path, backbone.robust_entropy)
    old = backbone.entropy_path
    backbone.entropy_path = path
    try:
        yield
    finally:
        backbone.entropy_path = old


def parameter_space(backbone: nn.Module) -> contextlib.AbstractContextManager:
    """The backbone's entropy-parameter modules as coding uses them: as they are, or CPU float64 copies."""
    if backbone.entropy_path == "cpu64":
        return on_cpu_float64(backbone, backbone.parameter_modules)
    return contextlib.nullcontext()


def coding_tensor(backbone: nn.Module, tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` where the entropy parameters are computed (CPU float64 on the robust path)."""
    if backbone.entropy_path == "cpu64":
        return tensor.to("cpu", torch.float64)
    return tensor
