"""Training-step overhead: our Lightning ``RDModule`` against a plain PyTorch loop, same model, loss and batch.

The plain loop is CompressAI's example recipe as ``RDModule`` runs it: one Adam with a net and a
quantiles group, ``λ·255²·MSE + bpp`` plus the aux loss in one backward, gradient clipping on the net.
Both start from the same weights and read the same in-memory batches through a ``DataLoader``; a step
is timed from one batch start to the next (forward, backward, optimizer, hooks, logging, next batch), so
``warmup + steps + 1`` batches are run. The plain loop runs before and after Lightning so drift shows. Target: Lightning/plain ≤ 1.05.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import lightning as L
import torch
from torch.utils.data import DataLoader

from benchmarks.codecs import TRAIN_DIR, build_bench_codec, random_crops
from benchmarks.common import write_json
from ctrlic.codecs.codec import Codec
from ctrlic.lightning_modules.losses import MSERateLoss
from ctrlic.lightning_modules.rd import RDModule

TARGET = 1.05
LMBDA, LR, AUX_LR, CLIP = 0.013, 1e-4, 1e-3, 1.0
#: both loops draw the same quantisation noise, so they make the same updates
SEED = 0


def loader(batch: int, crop: int, steps: int) -> DataLoader:
    """``steps`` batches of fixed random crops, read in order (the same batches for both loops)."""
    return DataLoader(random_crops(TRAIN_DIR, batch * steps, crop), batch_size=batch, shuffle=False)


def _now(device: torch.device) -> float:
    """Wall time after the device has finished its queued work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def plain_loop(codec: Codec, data: DataLoader, device: torch.device) -> list[float]:
    """CompressAI-style loop; returns the seconds from each batch start to the next."""
    codec.to(device)
    named = [(n, p) for n, p in codec.backbone.named_parameters() if p.requires_grad]
    net = [p for n, p in named if not n.endswith(".quantiles")]
    aux = [p for n, p in named if n.endswith(".quantiles")]
    optimizer = torch.optim.Adam([{"params": net, "lr": LR}, {"params": aux, "lr": AUX_LR}])
    criterion = MSERateLoss()
    codec.train()
    torch.manual_seed(SEED)
    marks = []
    for x in data:
        x = x.to(device)
        marks.append(_now(device))
        optimizer.zero_grad()
        loss = criterion(codec(x), x, LMBDA)["loss"] + codec.backbone.aux_loss()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net, CLIP)
        optimizer.step()
    return [b - a for a, b in zip(marks, marks[1:], strict=False)]


class _StepTimer(L.Callback):
    """Timestamps each batch start (after the batch is fetched, as in the plain loop)."""

    def __init__(self, device: torch.device) -> None:
        self.marks: list[float] = []
        self.device = device

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.marks.append(_now(self.device))


def lightning_loop(codec: Codec, data: DataLoader, device: torch.device) -> list[float]:
    """``RDModule`` under ``L.Trainer``, no logger/checkpoint/progress bar; seconds between batch starts."""
    module = RDModule(codec, lmbda=LMBDA, lr=LR, aux_lr=AUX_LR, clip_max_norm=CLIP, scheduler=None)
    timer = _StepTimer(device)
    trainer = L.Trainer(accelerator="gpu" if device.type == "cuda" else "cpu", devices=1, max_steps=len(data), max_epochs=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[timer], num_sanity_val_steps=0, limit_val_batches=0)
    torch.manual_seed(SEED)
    trainer.fit(module, train_dataloaders=data)
    return [b - a for a, b in zip(timer.marks, timer.marks[1:], strict=False)]


def main(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--codec", default="cheng2020_attn", help="a name of benchmarks/codecs.py")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--steps", type=int, default=8, help="timed steps per loop")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per loop")
    parser.add_argument("--paper", action="store_true", help="the paper-size model instead of the tiny one")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--name", default="train_step")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    codec = build_bench_codec(args.codec, paper=args.paper)
    data = loader(args.batch, args.crop, args.warmup + args.steps + 1)
    skip = args.warmup
    plain_before = plain_loop(copy.deepcopy(codec), data, device)[skip:]
    lightning = lightning_loop(copy.deepcopy(codec), data, device)[skip:]
    plain_after = plain_loop(copy.deepcopy(codec), data, device)[skip:]
    plain = statistics.median(plain_before + plain_after)
    ours = statistics.median(lightning)
    ratio = ours / plain
    payload = {"target_ratio": TARGET, "codec": args.codec, "paper_size": args.paper, "device": args.device,
               "batch": args.batch, "crop": args.crop,
               "threads": torch.get_num_threads(), "median_step_s": {"plain": plain, "lightning": ours},
               "ratio_lightning_over_plain": ratio, "meets_target": ratio <= TARGET,
               "step_s": {"plain_before": plain_before, "lightning": lightning, "plain_after": plain_after},
               "markdown": f"Training step ({args.codec}, batch {args.batch}, {args.crop}²): plain {plain:.3f} s, "
                           f"Lightning {ours:.3f} s, ratio {ratio:.3f} [target ≤ {TARGET}]"}
    path = write_json(args.name, payload)
    print(f"results: {path}")
    return path


if __name__ == "__main__":
    main()
