"""Hydra entry point: ``python run.py experiment=X [task=train|eval|info|export] [overrides]``."""

import hydra
from omegaconf import DictConfig

import ctrlic  # noqa: F401 - registers the config resolvers
from ctrlic.tasks import run


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig):
    result = run(cfg)
    objective = cfg.get("objective")
    if objective and isinstance(result, dict):
        return result.get(objective)
    return None


if __name__ == "__main__":
    main()
