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


def _without(values, value):
    """``values`` with every entry equal to ``value`` left out (LPM's prompt λs: every λ but the anchor's);
    a ListConfig, so that ``OmegaConf.resolve`` (``--cfg job --resolve``) can store it."""
    return OmegaConf.create([v for v in values if v != value])


# list arithmetic for configs that derive one list from another (experiment=compare: the anchor is the
# highest λ, CALICE's λ range spans the list, LPM prompts every other λ)
for _name, _function in (("ctrlic_max", lambda values: max(values)), ("ctrlic_min", lambda values: min(values)),
                         ("ctrlic_without", _without)):
    if not OmegaConf.has_resolver(_name):
        OmegaConf.register_new_resolver(_name, _function)
