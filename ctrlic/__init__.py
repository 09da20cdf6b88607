"""ctrlic: an experiment platform for controllable learned image compression."""

from pathlib import Path

from omegaconf import OmegaConf

__version__ = "0.1.0"

#: the repository root (configs and bundled data are found from here)
ROOT = Path(__file__).resolve().parents[1]

if not OmegaConf.has_resolver("ctrlic_root"):
    OmegaConf.register_new_resolver("ctrlic_root", lambda: str(ROOT))
