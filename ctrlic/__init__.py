"""ctrlic: an experiment platform for controllable learned image compression."""

from pathlib import Path

from omegaconf import OmegaConf

__version__ = "0.1.0"

#: the repository root (configs and bundled data are found from here)
ROOT = Path(__file__).resolve().parents[1]

if not OmegaConf.has_resolver("ctrlic_root"):
    OmegaConf.register_new_resolver("ctrlic_root", lambda: str(ROOT))


def _slurm_gpus_per_node(accelerator: str, devices):
    """GPUs per node a Slurm job asks for: the trainer's devices, none when it trains on the CPU."""
    return None if str(accelerator) == "cpu" else devices


if not OmegaConf.has_resolver("ctrlic_slurm_gpus"):
    OmegaConf.register_new_resolver("ctrlic_slurm_gpus", _slurm_gpus_per_node)
