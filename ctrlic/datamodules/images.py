"""Image folders as a LightningDataModule: random training crops and full-image evaluation sets.

Training data is a pure function of ``(seed, sample index)``, and the sampler derives sample indices
from the optimizer step, rank and world size. So a resumed run continues the exact data order, and
DDP with W ranks sees the same samples per step as one process: ``data.batch_size`` is the global
batch (as the authors' DataParallel splits theirs), each rank loading ``batch_size / W`` of it.
"""

from __future__ import annotations

import itertools
import os
import warnings
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ctrlic.datamodules.eval_images import DataConfigError, EvalImages, hint, image_folder, readable
from ctrlic.datamodules.image_io import ImageReadError, load_rgb8, to_tensor

TRAIN_KEY = "data.train_dir"
HOLDOUT_KEY = "data.val_split"


class UnreadableImageWarning(UserWarning):
    """Some image files could not be read and were skipped."""


def _eval_key(name: str) -> str:
    """Config key of an evaluation set, used to name it in messages."""
    return f"data.eval_sets.{name}"


def _subset(files: list[Path], fraction: float, seed: int) -> list[Path]:
    """A seeded share of the files (at least one), kept in sorted order; nested across fractions."""
    if fraction >= 1.0:
        return files
    k = max(1, round(fraction * len(files)))
    keep = np.random.default_rng(seed).permutation(len(files))[:k]
    return [files[i] for i in sorted(keep)]


def _pad_to(arr: np.ndarray, size: int) -> np.ndarray:
    """Pad an HxWx3 image at the bottom/right to at least size x size (reflect, edge if too small)."""
    h, w = arr.shape[:2]
    ph, pw = max(0, size - h), max(0, size - w)
    if not ph and not pw:
        return arr
    mode = "reflect" if ph < h and pw < w else "edge"
    return np.pad(arr, ((0, ph), (0, pw), (0, 0)), mode=mode)


def square_pad(arr: np.ndarray, size: int) -> np.ndarray:
    """CALICE's ``SquarePad`` (src/utils/dataset.py:31-41): zeros around an HxWx3 image up to a square of
    side max(H, W, size), plus one pixel on every side; random crops may then hold black borders."""
    h, w = arr.shape[:2]
    side = max(h, w, size)
    hp, vp = (side - w) // 2 + 1, (side - h) // 2 + 1
    return np.pad(arr, ((vp, vp), (hp, hp), (0, 0)))


class RandomCrops(Dataset):
    """Map-style training set: item ``i`` is a random crop fully determined by ``(seed, i)``.

    ``np.random.default_rng([seed, i])`` picks the file and the crop offset (no flips). Images
    smaller than the crop are padded (``square_pad``: every image zero-padded to a square first, as
    CALICE's training). A file that fails to decode is replaced by the next readable one (with one
    warning per file), so a bad file never stops training. Each worker keeps an LRU cache of
    ``cache_size`` decoded images, since training sets here are small.
    """

    #: nominal length: training is bounded by optimizer steps, not epochs
    LENGTH = 2**31 - 1

    def __init__(self, files: Sequence[Path], crop_size: int, seed: int = 0, cache_size: int = 64,
                 square_pad: bool = False) -> None:
        if not files:
            raise ValueError("RandomCrops needs at least one image file")
        self.files = list(files)
        self.crop_size = crop_size
        self.seed = seed
        self.square_pad = square_pad
        self.cache_size = cache_size
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._bad: set[int] = set()

    def __len__(self) -> int:
        return self.LENGTH

    def __getitem__(self, index: int) -> torch.Tensor:
        if not 0 <= index < self.LENGTH:
            raise IndexError(f"sample index {index} out of range [0, {self.LENGTH})")
        rng = np.random.default_rng([self.seed, index])
        return self.crop(int(rng.integers(len(self.files))), rng)

    def crop(self, file_index: int, rng: np.random.Generator) -> torch.Tensor:
        """A random crop (offset from ``rng``) of file ``file_index`` (or the next readable one)."""
        img, c = self._image(file_index), self.crop_size
        img = square_pad(img, c) if self.square_pad else _pad_to(img, c)
        top = int(rng.integers(img.shape[0] - c + 1))
        left = int(rng.integers(img.shape[1] - c + 1))
        return to_tensor(img[top:top + c, left:left + c])

    def _image(self, first: int) -> np.ndarray:
        """Decoded file ``first``, or the next readable one after it (deterministic fallback)."""
        n = len(self.files)
        for k in ((first + t) % n for t in range(n)):
            if k in self._bad:
                continue
            try:
                return self._decoded(k)
            except ImageReadError as err:
                self._bad.add(k)
                warnings.warn(f"{err}; using the next training image instead", UnreadableImageWarning,
                              stacklevel=2)
        raise RuntimeError(f"none of the {n} training images can be decoded")

    def _decoded(self, k: int) -> np.ndarray:
        """Decoded file ``k`` through the LRU cache."""
        if k in self._cache:
            self._cache.move_to_end(k)
            return self._cache[k]
        arr, _ = load_rgb8(self.files[k])
        self._cache[k] = arr
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return arr


class ValidationCrops(Dataset):
    """One random crop per validation image, fixed by ``(seed, image index)`` (CALICE validates on
    random crops of its held-out images, in training batches)."""

    def __init__(self, crops: RandomCrops, limit: int | None = None) -> None:
        self.crops, self.count = crops, min(len(crops.files), limit or len(crops.files))

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.count:
            raise IndexError(f"validation crop {index} out of range [0, {self.count})")
        rng = np.random.default_rng([self.crops.seed, index])
        return {"x": self.crops.crop(index, rng), "name": self.crops.files[index].name}


class ResumableSampler(Sampler[int]):
    """Global sample indices by optimizer step, so resumed runs and DDP ranks see the right samples.

    At step ``s`` (from ``start_step``), rank ``r`` of ``world_size`` yields
    ``(s * world_size + r) * batch_size + k`` for ``k < batch_size``. The union of one step's
    batches over all ranks is therefore the single-process batch of size ``world_size * batch_size``.
    Without ``max_steps`` it never ends and has no length (the Trainer's ``max_steps`` stops training).
    """

    def __init__(self, batch_size: int, start_step: int = 0, rank: int = 0, world_size: int = 1,
                 max_steps: int | None = None) -> None:
        super().__init__()
        if batch_size < 1 or world_size < 1 or not 0 <= rank < world_size or start_step < 0:
            raise ValueError(f"invalid sampler settings: batch_size={batch_size}, start_step={start_step},"
                             f" rank={rank}, world_size={world_size}")
        if max_steps is not None and max_steps < start_step:
            raise ValueError(f"max_steps={max_steps} is before start_step={start_step}")
        self.batch_size = batch_size
        self.start_step = start_step
        self.rank = rank
        self.world_size = world_size
        self.max_steps = max_steps

    def __iter__(self) -> Iterator[int]:
        steps = (itertools.count(self.start_step) if self.max_steps is None
                 else range(self.start_step, self.max_steps))
        b = self.batch_size
        for s in steps:
            first = (s * self.world_size + self.rank) * b
            yield from range(first, first + b)

    def __len__(self) -> int:
        if self.max_steps is None:
            # Lightning reads this TypeError as "no length"; its distributed-sampler wrapper cannot.
            raise TypeError("ResumableSampler without max_steps is unbounded; build the Trainer with"
                            " use_distributed_sampler=False (the sampler shards by rank itself)")
        return (self.max_steps - self.start_step) * self.batch_size


def per_rank_batch(batch_size: int, world_size: int) -> int:
    """Each rank's share of the global ``data.batch_size``; it must divide evenly."""
    if batch_size % world_size:
        raise DataConfigError(f"data.batch_size={batch_size} is the global batch of all {world_size} ranks and "
                              f"must divide evenly among them, e.g. data.batch_size="
                              f"{world_size * max(1, round(batch_size / world_size))}")
    return batch_size // world_size


def _check_int(key: str, value: int | None, minimum: int, optional: bool = False) -> None:
    """Reject a non-integer or too small setting, naming its config key."""
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{key} must be an integer >= {minimum}" + (" or null" if optional else "")
                         + f", got {value!r}")


class ImageDataModule(L.LightningDataModule):
    """Training crops from ``train_dir`` and named evaluation sets, configured under ``data:``.

    ``batch_size`` is the global batch per optimizer step; under DDP each of W ranks loads
    ``batch_size / W`` (which must be whole). Trainer requirements: ``use_distributed_sampler=False``
    (:class:`ResumableSampler` shards by rank itself) and ``accumulate_grad_batches=1``. The sample offset is ``trainer.global_step``, so
    the LightningModule must make one optimizer step per training batch (automatic optimization,
    or manual optimization stepping one Lightning optimizer per batch). The training loader has no
    length, so validate every N steps: ``val_check_interval=N`` with ``check_val_every_n_epoch=None``.
    Under DDP every rank evaluates all validation/evaluation images.
    """

    def __init__(
        self,
        train_dir: str | os.PathLike | None = None,
        eval_sets: Mapping[str, str | os.PathLike] | None = None,
        crop_size: int = 256,
        batch_size: int = 16,
        num_workers: int = 0,
        seed: int = 0,
        val_set: str | None = None,
        val_crop: int | None = None,
        eval_crop: int | None = None,
        eval_limit: int | None = None,
        val_limit: int | None = None,
        fraction: float = 1.0,
        val_split: float = 0.0,
        square_pad: bool = False,
        val_random_crops: bool = False,
        val_batch_size: int = 1,
    ) -> None:
        super().__init__()
        _check_int("data.crop_size", crop_size, 1)
        _check_int("data.batch_size", batch_size, 1)
        _check_int("data.num_workers", num_workers, 0)
        _check_int("data.val_batch_size", val_batch_size, 1)
        _check_int("data.seed", seed, 0)
        for key, value in (("val_crop", val_crop), ("eval_crop", eval_crop),
                           ("eval_limit", eval_limit), ("val_limit", val_limit)):
            _check_int(f"data.{key}", value, 1, optional=True)
        if not 0.0 < fraction <= 1.0:
            raise ValueError(f"data.fraction must be in (0, 1], got {fraction!r}")
        if not 0.0 <= val_split < 1.0:
            raise ValueError(f"data.val_split must be in [0, 1), got {val_split!r}")
        self.eval_sets = {str(name): str(folder) for name, folder in (eval_sets or {}).items()}
        if val_set is not None and val_set not in self.eval_sets:
            raise ValueError(f"data.val_set: {val_set!r} is not one of data.eval_sets"
                             f" ({', '.join(self.eval_sets) or 'none configured'})")
        self.val_set = val_set if val_set is not None else next(iter(self.eval_sets), None)
        self.crop_size = crop_size
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.val_crop = val_crop
        self.eval_crop = eval_crop
        self.eval_limit = eval_limit
        self.val_limit = val_limit
        self.fraction = fraction
        self.val_split = val_split
        self.square_pad = square_pad
        self.val_random_crops, self.val_batch_size = val_random_crops, val_batch_size

        # per config key: resolved folder, number of images found, files in use (before the check)
        self._roots: dict[str, Path] = {}
        self._found: dict[str, int] = {}
        self._files: dict[str, list[Path]] = {}
        self._unreadable: dict[str, list[str]] = {}
        if train_dir is not None:
            self._add(TRAIN_KEY, train_dir, fraction)
            if val_split:
                self._hold_out(val_split)
        for name, folder in self.eval_sets.items():
            self._add(_eval_key(name), folder, 1.0)

    def _add(self, key: str, folder: str | os.PathLike, fraction: float) -> None:
        """List a configured folder (raising DataConfigError now, not at first use) and keep a share."""
        root, files = image_folder(key, folder)
        self._roots[key], self._found[key] = root, len(files)
        self._files[key] = _subset(files, fraction, self.seed)

    def _hold_out(self, share: float) -> None:
        """Move a seeded share of the training files to a validation set (CALICE's 90/10 split)."""
        files = self._files[TRAIN_KEY]
        if len(files) < 2:
            raise DataConfigError(f"{HOLDOUT_KEY}: {TRAIN_KEY} has {len(files)} image(s), too few to split")
        order = np.random.default_rng([self.seed, 1]).permutation(len(files))
        k = min(len(files) - 1, max(1, round(share * len(files))))
        held = set(order[:k].tolist())
        self._files[HOLDOUT_KEY] = [f for i, f in enumerate(files) if i in held]
        self._files[TRAIN_KEY] = [f for i, f in enumerate(files) if i not in held]
        self._roots[HOLDOUT_KEY], self._found[HOLDOUT_KEY] = self._roots[TRAIN_KEY], k

    def _readable(self, *keys: str) -> list[list[Path]]:
        """Files of each set that pass a header check; new failures are reported in ONE warning."""
        reports = []
        for key in keys:
            if key in self._unreadable:
                continue
            good, bad = readable(self._files[key], self._roots[key])
            if not good:
                raise DataConfigError(f"{key}: none of the {len(bad)} images in '{self._roots[key]}' can be"
                                      f" read, e.g. {bad[0]} — {hint(key)}")
            self._files[key], self._unreadable[key] = good, bad
            if bad:
                reports.append(f"{key} ('{self._roots[key]}'): {', '.join(bad)}")
        if reports:
            warnings.warn("skipping unreadable image files: " + "; ".join(reports), UnreadableImageWarning,
                          stacklevel=3)
        return [self._files[key] for key in keys]

    def train_dataloader(self) -> DataLoader:
        """Infinite loader of random crops, continuing at the trainer's global step (resume-safe)."""
        if TRAIN_KEY not in self._files:
            raise DataConfigError(f"{TRAIN_KEY} is not set — {hint(TRAIN_KEY)}")
        (files,) = self._readable(TRAIN_KEY)
        step, rank, world_size = 0, 0, 1
        if self.trainer is not None:
            if self.trainer.accumulate_grad_batches != 1:
                raise ValueError("ImageDataModule needs Trainer(accumulate_grad_batches=1): sample indices"
                                 " follow trainer.global_step, which counts optimizer steps, not batches")
            step, rank, world_size = self.trainer.global_step, self.trainer.global_rank, self.trainer.world_size
        batch = per_rank_batch(self.batch_size, world_size)
        sampler = ResumableSampler(batch, start_step=step, rank=rank, world_size=world_size)
        return DataLoader(
            RandomCrops(files, self.crop_size, self.seed, square_pad=self.square_pad),
            batch_size=batch,
            sampler=sampler,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def _eval_loader(self, key: str, files: list[Path], crop: int | None, limit: int | None,
                     persistent: bool = False) -> DataLoader:
        """Batch-1 loader of full (or center-cropped) images of one evaluation set (by config key)."""
        dataset = EvalImages(files[:limit], self._roots[key], crop)
        return DataLoader(dataset, batch_size=1, shuffle=False, num_workers=self.num_workers,
                          persistent_workers=persistent and self.num_workers > 0)

    def _val_crops_loader(self, files: list[Path]) -> DataLoader:
        """Random ``crop_size`` crops of the validation images (square-padded as training), in batches."""
        crops = RandomCrops(files, self.crop_size, self.seed + 1, square_pad=self.square_pad)
        return DataLoader(ValidationCrops(crops, self.val_limit), batch_size=self.val_batch_size, shuffle=False,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0)

    def val_dataloader(self) -> DataLoader:
        """The held-out training images (``val_split`` > 0) or the ``val_set`` images, batch 1,
        cropped by ``val_crop`` and limited by ``val_limit``; with ``val_random_crops``, one random
        ``crop_size`` crop of each in batches of ``val_batch_size`` (CALICE's validation)."""
        if self.val_split:
            key = HOLDOUT_KEY
        elif self.val_set is None:
            raise DataConfigError("data.eval_sets is empty: validation needs one,"
                                  " e.g. data.eval_sets={kodak:/path/to/kodak}")
        else:
            key = _eval_key(self.val_set)
        (files,) = self._readable(key)
        if self.val_random_crops:
            return self._val_crops_loader(files)
        return self._eval_loader(key, files, self.val_crop, self.val_limit, persistent=True)

    def eval_dataloaders(self) -> dict[str, DataLoader]:
        """Every evaluation set by name, batch 1, cropped by ``eval_crop`` and limited by ``eval_limit``."""
        names = list(self.eval_sets)
        checked = self._readable(*map(_eval_key, names))
        return {name: self._eval_loader(_eval_key(name), files, self.eval_crop, self.eval_limit)
                for name, files in zip(names, checked, strict=True)}

    def test_dataloader(self) -> list[DataLoader]:
        """:meth:`eval_dataloaders` as a list; ``dataloader_idx`` follows the order of ``eval_sets``."""
        return list(self.eval_dataloaders().values())

    def _describe_val(self) -> dict[str, Any] | None:
        key = HOLDOUT_KEY if self.val_split else (_eval_key(self.val_set) if self.val_set else None)
        if key is None:
            return None
        name = f"{self.val_split:.0%} of the training images" if self.val_split else self.val_set
        return {"set": name, "used": len(self._files[key][:self.val_limit])}

    def describe(self) -> dict[str, Any]:
        """Resolved folders and image counts per set (for ``task=info``); checks every file's header."""
        self._readable(*self._files)

        def entry(key: str, limit: int | None) -> dict[str, Any]:
            return {"path": str(self._roots[key]), "images": self._found[key],
                    "used": len(self._files[key][:limit]), "unreadable": list(self._unreadable[key])}

        train = entry(TRAIN_KEY, None) if TRAIN_KEY in self._files else None
        if train is not None:
            train["fraction"] = self.fraction
        return {
            "train": train,
            "eval_sets": {name: entry(_eval_key(name), self.eval_limit) for name in self.eval_sets},
            "val": self._describe_val(),
        }
