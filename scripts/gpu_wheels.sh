#!/usr/bin/env bash
# Fetch, once, the wheels the GPU machine's image lacks, for its Python (CPython 3.12, x86-64 Linux), into
# an ignored folder that a `device` run carries (docs/operations.md, "The GPU check"). Versions are the
# pins of pyproject.toml. Needs pip and PyPI here; the GPU machine itself has no network.
#   scripts/gpu_wheels.sh [DEST]        (default .gpu_wheels; PYTHON=... picks the interpreter running pip)
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=${1:-.gpu_wheels}
PY=${PYTHON:-python3}
# what ctrlic imports on the GPU suite's, run.py's and the GPU benchmarks' paths and the image does not
# have (torch, torchvision, lightning, torchmetrics, numpy 2, scipy, matplotlib, pandas, pillow, rich,
# einops, torch-geometric, pyyaml, pytest and pytest-timeout are there: /work/.library/device/KINDS.md).
# imagecodecs (45 MB of the ~47) is imported by run.py through the lossless evaluation's classical codecs.
# Not carried, imported only when asked for: wandb, DISTS-pytorch, torch-fidelity, piq, the Hydra
# submitit/Optuna plugins (logger=wandb, DISTS/FID metrics, hydra/launcher=..., hparams_search=...).
PACKAGES=(compressai hydra-core omegaconf constriction lpips pytorch-msssim bjontegaard imagecodecs)
# omegaconf 2.3 needs antlr4-python3-runtime 4.9.*, which PyPI has only as a source archive
ANTLR=antlr4-python3-runtime==4.9.3

mapfile -t PINS < <("$PY" - "${PACKAGES[@]}" <<'PYEOF'
import re, sys, tomllib
deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
pins = {re.split(r"[=<>!~ ;\[]", d, 1)[0].lower(): d for d in deps}
for name in sys.argv[1:]:
    pin = pins.get(name.lower())
    if pin is None or "==" not in pin:
        sys.exit(f"gpu_wheels: {name} has no == pin in pyproject.toml")
    print(pin)
PYEOF
)
rm -rf "$DEST" && mkdir -p "$DEST"
"$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_34_x86_64 --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$DEST" "${PINS[@]}"
"$PY" -m pip wheel --quiet --no-deps --no-binary=:all: -w "$DEST" "$ANTLR"
ls -l "$DEST"
du -ch "$DEST"/*.whl | tail -1
