"""The evaluation the sharding tests compare: the tiny golden Cheng2020-attn with α-adapters on a 64×64 crop
of each bundled demo Kodak image at two knob settings. ``python -m tests.helpers_eval OUT`` runs it slowed
down (every record at least 0.3 s), to be killed half-way."""

from __future__ import annotations

import csv
import json
import sys
import time
from pathlib import Path

from ctrlic.datamodules.image_io import load_rgb8, to_tensor
from ctrlic.evaluation import lossy
from ctrlic.evaluation.evaluate import evaluate
from ctrlic.evaluation.settings import SweepSettings
from tests import golden

#: the four demo Kodak images, one 64×64 crop each (top, left)
CROPS = [("kodim01", 128, 192), ("kodim04", 256, 128), ("kodim15", 128, 192), ("kodim23", 192, 320)]


#: wall-clock figures differ from run to run; everything else must not
TIMINGS = ("encoding_time", "decoding_time")


def comparable(out: Path) -> tuple[dict, list[dict]]:
    """results.json and per_image.csv of an evaluation, timings left out."""
    results = json.loads((out / "results.json").read_text())
    for key in TIMINGS:
        results["results"].pop(key)
    rows = [{k: v for k, v in row.items() if k not in TIMINGS} for row in csv.DictReader((out / "per_image.csv").open())]
    return results, rows


def images() -> list[dict]:
    out = []
    for name, top, left in CROPS:
        img, _ = load_rgb8(golden.KODAK / f"{name}.png")
        out.append({"x": to_tensor(img[top:top + 64, left:left + 64].copy()), "name": f"{name}_{top}_{left}"})
    return out


def settings(**changes) -> SweepSettings:
    """Two knob settings of the α-adapters, one torch thread, no report (it is not what is compared)."""
    return SweepSettings(**{"points": [{"alpha": 0.0}, {"alpha": 1.0}], "threads": 1, "report": {"enabled": False},
                            "save_bitstreams": False, "bd_reference": None, **changes})


def codec():
    return golden.build(next(c for c in golden.CASES if c.name == "alpha_adapters_cheng"))


def main(out: str) -> None:
    measure = lossy._measure

    def slow(*args, **kwargs):
        time.sleep(0.3)
        return measure(*args, **kwargs)

    lossy._measure = slow
    evaluate(codec(), {"crops": images()}, out, settings())


if __name__ == "__main__":
    main(sys.argv[1])
