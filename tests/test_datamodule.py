"""ImageDataModule: config errors, unreadable files, deterministic crops, resumable/DDP sampling,
evaluation loaders, and the bundled demo data."""

import hashlib
import itertools
import warnings
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image

from ctrlic.datamodules.images import (
    DataConfigError,
    ImageDataModule,
    RandomCrops,
    ResumableSampler,
    UnreadableImageWarning,
)

DEMO = Path(__file__).resolve().parents[1] / "data" / "demo"


def _images(folder: Path, sizes: list[tuple[int, int]], suffix: str = ".png", seed: int = 0) -> list[Path]:
    """Random RGB images of the given (width, height) sizes, named im00, im01, ..."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i, (w, h) in enumerate(sizes):
        path = folder / f"im{i:02d}{suffix}"
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


@pytest.fixture
def folders(tmp_path):
    train = tmp_path / "train"
    _images(train, [(40, 36)] * 6)
    kodak = tmp_path / "kodak"
    _images(kodak, [(33, 21), (21, 33), (40, 30)], seed=1)
    other = tmp_path / "other"
    _images(other, [(25, 27)] * 2, seed=2)
    return {"train": train, "kodak": kodak, "other": other}


def _dm(folders, **kwargs) -> ImageDataModule:
    kwargs = {"train_dir": folders["train"], "eval_sets": {"kodak": folders["kodak"], "other": folders["other"]},
              "crop_size": 16, "batch_size": 4, **kwargs}
    return ImageDataModule(**kwargs)


def test_missing_train_dir_names_the_key(folders, tmp_path):
    with pytest.raises(DataConfigError, match=r"data\.train_dir: folder '.*nope' does not exist") as info:
        _dm(folders, train_dir=tmp_path / "nope")
    assert isinstance(info.value, FileNotFoundError)
    assert "set data.train_dir=" in str(info.value)


def test_missing_eval_folder_names_the_key(folders, tmp_path):
    with pytest.raises(DataConfigError, match=r"data\.eval_sets\.kodak: folder .* does not exist"):
        _dm(folders, eval_sets={"kodak": tmp_path / "missing"})


def test_empty_folder_says_which_suffixes(folders, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no images here")
    with pytest.raises(DataConfigError, match=r"data\.train_dir: .* has no images .*\.png .*\.jpg"):
        _dm(folders, train_dir=empty)


def test_bad_values_name_the_key(folders):
    with pytest.raises(ValueError, match=r"data\.val_set"):
        _dm(folders, val_set="clic")
    with pytest.raises(ValueError, match=r"data\.fraction"):
        _dm(folders, fraction=0.0)
    with pytest.raises(ValueError, match=r"data\.crop_size"):
        _dm(folders, crop_size=0)


def test_unreadable_files_skipped_with_one_warning(folders):
    (folders["train"] / "broken.png").write_text("not an image")
    data = (folders["train"] / "im00.png").read_bytes()
    (folders["train"] / "cut.png").write_bytes(data[: len(data) // 2])
    dm = _dm(folders)
    with pytest.warns(UnreadableImageWarning) as record:
        loader = dm.train_dataloader()
    assert len(record) == 1
    message = str(record[0].message)
    assert "broken.png" in message and "cut.png" in message
    assert len(loader.dataset.files) == 6
    assert dm.describe()["train"]["unreadable"][0].startswith("broken.png")


def test_decode_failure_during_training_falls_back_and_warns_once(tmp_path):
    good = _images(tmp_path, [(20, 20)])
    jpeg = tmp_path / "late.jpg"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(jpeg)
    jpeg.write_bytes(jpeg.read_bytes()[:-200])  # passes the header check, fails to decode
    ds = RandomCrops([jpeg, *good], crop_size=8)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        crops = [ds[i] for i in range(20)]
    assert [str(w.message).count("late.jpg") for w in record] == [1]
    assert all(c.shape == (3, 8, 8) for c in crops)


def test_crops_are_determined_by_seed_and_index(folders):
    files = sorted(folders["train"].glob("*.png"))
    a, b = RandomCrops(files, 16, seed=3), RandomCrops(files, 16, seed=3)
    assert a[5].shape == (3, 16, 16) and a[5].dtype == torch.float32
    assert torch.equal(a[5], b[5])
    assert not torch.equal(a[5], a[6])
    assert not torch.equal(a[5], RandomCrops(files, 16, seed=4)[5])
    assert 0.0 <= float(a[5].min()) and float(a[5].max()) <= 1.0


def test_small_images_are_padded_to_the_crop(tmp_path):
    small = _images(tmp_path / "s", [(12, 20)])
    crop = RandomCrops(small, 32)[0]
    assert crop.shape == (3, 32, 32)
    tiny = _images(tmp_path / "t", [(1, 1)])
    assert torch.unique(RandomCrops(tiny, 8)[0][0]).numel() == 1  # edge padding of one pixel


def test_sampler_resume_is_the_tail_of_the_sequence():
    full = list(ResumableSampler(4, max_steps=10))
    assert full == list(range(40))
    resumed = ResumableSampler(4, start_step=6, max_steps=10)
    assert list(resumed) == full[24:] and len(resumed) == 16
    unbounded = ResumableSampler(4, start_step=6)
    assert list(itertools.islice(unbounded, 16)) == full[24:]
    with pytest.raises(TypeError, match="use_distributed_sampler=False"):
        len(unbounded)


@pytest.mark.parametrize("step", [0, 5])
def test_two_ranks_union_equals_one_rank_double_batch(step):
    b = 3
    single = ResumableSampler(2 * b, start_step=step, max_steps=step + 1)
    ranks = [ResumableSampler(b, start_step=step, rank=r, world_size=2, max_steps=step + 1) for r in (0, 1)]
    per_rank = [list(s) for s in ranks]
    assert not set(per_rank[0]) & set(per_rank[1])
    assert sorted(per_rank[0] + per_rank[1]) == list(single)


def test_train_loader_follows_the_trainer(folders):
    dm = _dm(folders)
    first = next(iter(dm.train_dataloader()))
    assert first.shape == (4, 3, 16, 16)
    crops = RandomCrops(dm.train_dataloader().dataset.files, 16)
    assert torch.equal(first, torch.stack([crops[i] for i in range(4)]))

    dm.trainer = SimpleNamespace(global_step=5, global_rank=1, world_size=2, accumulate_grad_batches=1)
    loader = dm.train_dataloader()  # data.batch_size = 4 is the global batch: 2 per rank
    sampler = loader.sampler
    assert (sampler.start_step, sampler.rank, sampler.world_size, loader.batch_size) == (5, 1, 2, 2)
    assert next(iter(sampler)) == 5 * 4 + 2
    dm.trainer.world_size = 3
    with pytest.raises(DataConfigError, match="data.batch_size=4 is the global batch of all 3 ranks"):
        dm.train_dataloader()
    dm.trainer.world_size = 2
    dm.trainer.accumulate_grad_batches = 2
    with pytest.raises(ValueError, match="accumulate_grad_batches=1"):
        dm.train_dataloader()


class _Recorder(L.LightningModule):
    """Records a fingerprint of every training batch."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.seen: list[torch.Tensor] = []

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        self.seen.append(batch.sum(dim=(1, 2, 3)))
        return ((self.w - batch.mean()) ** 2).sum()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _fit(folders, max_steps: int, ckpt_path: Path | None = None) -> tuple[L.Trainer, _Recorder]:
    trainer = L.Trainer(max_steps=max_steps, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, use_distributed_sampler=False)
    model = _Recorder()
    trainer.fit(model, datamodule=_dm(folders), ckpt_path=ckpt_path)
    return trainer, model


@pytest.mark.filterwarnings("ignore:You passed in a `val_dataloader` but have no `validation_step`")
def test_lightning_resume_continues_the_data_order(folders, tmp_path):
    _, straight = _fit(folders, 4)
    first, _ = _fit(folders, 2)
    first.save_checkpoint(tmp_path / "step2.ckpt")
    _, resumed = _fit(folders, 4, ckpt_path=tmp_path / "step2.ckpt")
    assert len(resumed.seen) == 2
    for got, want in zip(resumed.seen, straight.seen[2:], strict=True):
        assert torch.equal(got, want)


def test_val_and_eval_loaders_yield_full_named_images(folders):
    dm = _dm(folders)
    batches = list(dm.val_dataloader())
    assert [b["name"] for b in batches] == [["im00"], ["im01"], ["im02"]]
    assert [tuple(b["x"].shape) for b in batches] == [(1, 3, 21, 33), (1, 3, 33, 21), (1, 3, 30, 40)]
    loaders = dm.eval_dataloaders()
    assert list(loaders) == ["kodak", "other"]
    assert [len(dl) for dl in dm.test_dataloader()] == [3, 2]


def test_limits_and_crops(folders):
    dm = _dm(folders, val_set="other", val_crop=8, val_limit=1, eval_limit=2, eval_crop=24)
    val = list(dm.val_dataloader())
    assert len(val) == 1 and val[0]["x"].shape == (1, 3, 8, 8)
    kodak = [b["x"].shape for b in dm.eval_dataloaders()["kodak"]]
    assert kodak == [(1, 3, 21, 24), (1, 3, 24, 21)]  # a side shorter than the crop is kept whole


def test_fraction_is_seeded_and_nested(tmp_path):
    _images(tmp_path / "many", [(8, 8)] * 10)

    def used(fraction: float, seed: int = 0) -> list[Path]:
        dm = ImageDataModule(train_dir=tmp_path / "many", fraction=fraction, seed=seed, crop_size=8)
        return dm.train_dataloader().dataset.files

    assert len(used(0.3)) == 3 and used(0.3) == used(0.3)
    assert set(used(0.3)) <= set(used(0.6))
    assert used(0.3) != used(0.3, seed=1)


def test_describe_reports_resolved_paths_and_counts(folders):
    info = _dm(folders, eval_limit=2).describe()
    assert info["train"] == {"path": str(folders["train"].resolve()), "images": 6, "used": 6,
                             "unreadable": [], "fraction": 1.0}
    assert info["eval_sets"]["kodak"]["used"] == 2 and info["eval_sets"]["kodak"]["images"] == 3
    assert info["val"] == {"set": "kodak", "used": 3}


def test_demo_data_checksums_and_counts():
    lines = (DEMO / "SHA256SUMS").read_text().splitlines()
    assert len(lines) == 28
    for line in lines:
        digest, rel = line.split(maxsplit=1)
        assert hashlib.sha256((DEMO / rel).read_bytes()).hexdigest() == digest, rel
    info = ImageDataModule(train_dir=DEMO / "train", eval_sets={"kodak4": DEMO / "kodak4"}).describe()
    assert info["train"]["used"] == 24 and info["eval_sets"]["kodak4"]["used"] == 4


def test_val_split_holds_out_training_images_for_validation(tmp_path):
    from PIL import Image

    from ctrlic.datamodules.images import ImageDataModule

    train = tmp_path / "train"
    train.mkdir()
    for i in range(20):
        Image.new("RGB", (40 + i, 32), (i, 2 * i, 3 * i)).save(train / f"{i:02d}.png")
    dm = ImageDataModule(train_dir=train, crop_size=16, batch_size=2, seed=3, val_split=0.1)
    held = [item["name"][0] for item in dm.val_dataloader()]
    assert len(held) == 2
    training = {p.stem for p in dm.train_dataloader().dataset.files}
    assert len(training) == 18
    assert not training & {Path(n).stem for n in held}
    again = ImageDataModule(train_dir=train, crop_size=16, batch_size=2, seed=3, val_split=0.1)
    assert [item["name"][0] for item in again.val_dataloader()] == held
