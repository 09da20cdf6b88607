"""The GPU suite's shared parts (``make test-gpu``): where it runs, what it builds, its probes and comparisons.

By default the suite runs on CUDA at the experiments' paper sizes. ``CTRLIC_TEST_DEVICE=cpu`` runs the same
test bodies on the CPU at tiny size (``debug=smoke``, 128² image crops); its "device" side then computes
with oneDNN off on one thread, so its arithmetic differs from the reference side's as a GPU's would, and
the comparisons have real differences to measure. ``CTRLIC_GPU_REPORT=FILE`` makes the tests append what
they measured (JSON lines) for ``scripts/gpu_summary.py``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import hydra
import lightning as L
import torch
from compressai.entropy_models.entropy_models import EntropyModel
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from torch import Tensor, nn
from torchvision.ops import StochasticDepth

from ctrlic.codecs.backbones.vqgan import VectorQuantizer
from ctrlic.codecs.build import build_codec, export_codec
from ctrlic.codecs.codec import Codec
from tests.conftest import ROOT

DEVICE_ENV = "CTRLIC_TEST_DEVICE"
REPORT_ENV = "CTRLIC_GPU_REPORT"
KODAK4 = ROOT / "data" / "demo" / "kodak4"

#: the experiments that train, with the extra overrides each needs here. LPIPS-trained ones get a random
#: AlexNet (perceptual_pretrained=false): the ImageNet weights are not on the GPU machine (no network)
#: and the check is the arithmetic, not the metric. Under DDP, Control-GIC's two-optimizer GAN step and
#: LPM's one-prompt-set-at-a-time training leave parameters without gradient in a step, so both need
#: find_unused_parameters (their experiment files say so).
TRAINED: dict[str, tuple[str, ...]] = {
    "anchor_cheng": ("perceptual_pretrained=false",),
    "anchor_stf": ("perceptual_pretrained=false",),
    "anchor_tcm": ("perceptual_pretrained=false",),
    "anchor_tic": ("perceptual_pretrained=false",),
    "calice_stf": ("perceptual_pretrained=false",),
    "calice_tcm": ("perceptual_pretrained=false",),
    "calice_cheng": ("perceptual_pretrained=false",),
    "beta_calice_stf": ("perceptual_pretrained=false",),
    "lpm_tic": ("perceptual_pretrained=false",),
    "mgcf": ("perceptual_pretrained=false",),
    "control_gic": ("perceptual_pretrained=false",),
}
DDP_EXTRA: dict[str, tuple[str, ...]] = {name: ("trainer.strategy.find_unused_parameters=true",)
                                         for name in ("control_gic", "lpm_tic")}
#: the lossy codecs of the experiments (the experiment builds each) and the lossless ones
LOSSY = ("anchor_cheng", "anchor_stf", "anchor_tcm", "anchor_tic", "calice_stf", "calice_tcm", "calice_cheng",
         "beta_calice_stf", "lpm_tic", "control_gic")
LOSSLESS = ("mgcf", "callic")
#: codecs that code the first image only: each shares its anchor's entropy-parameter path (only its
#: transforms differ), and the cpu64 path costs ~20 s of one CPU core per paper-size STF/TCM image and pass
ONE_IMAGE = ("calice_stf", "calice_tcm", "calice_cheng", "beta_calice_stf", "lpm_tic")
#: training steps per run: paper-size bf16 steps, and the fp32 steps compared with the CPU (the second step
#: exercises DDP's reducer after a first backward: unused parameters show up there)
BF16_STEPS, FP32_STEPS = 3, 2
#: LPM trains its five prompt sets one after another: one step each, so that every set trains
STEPS: dict[str, int] = {"lpm_tic": 5}
#: batch of the fp32 comparison (the CPU side runs a paper-size step too)
COMPARE_BATCH = 2
#: fp32 step against the CPU's, TF32 off, same data and noise (see docs/benchmarks.md, "GPU suite")
LOSS_RTOL = 1e-4        # |loss_device − loss_cpu| / |loss_cpu| at the first step
GRAD_RTOL = 1e-3        # ‖g_device − g_cpu‖ / ‖g_cpu‖ over all trainable parameters together
TENSOR_GRAD_RTOL = 1e-2  # the same per parameter tensor, for tensors holding ≥ 1e-3 of the gradient norm


@dataclass(frozen=True)
class Target:
    """Where the suite runs: ``cuda`` at paper size, or ``cpu`` at tiny size (the CPU rehearsal)."""

    device: str

    @property
    def paper(self) -> bool:
        return self.device == "cuda"

    @property
    def accelerator(self) -> str:
        return "gpu" if self.device == "cuda" else "cpu"

    def size_overrides(self) -> tuple[str, ...]:
        return () if self.paper else ("debug=smoke",)

    def bf16_overrides(self) -> tuple[str, ...]:
        """``trainer=gpu`` (bf16-mixed) on CUDA; on the CPU the same precision through autocast."""
        return ("trainer=gpu",) if self.paper else ("trainer=cpu", "trainer.precision=bf16-mixed")

    def ddp_overrides(self) -> tuple[str, ...]:
        """One-process DDP in fp32 (``trainer=ddp``'s precision): NCCL on CUDA, gloo on the CPU."""
        return ("trainer=ddp", "trainer.devices=1", f"trainer.accelerator={self.accelerator}")

    @contextlib.contextmanager
    def arithmetic(self) -> Iterator[None]:
        """The device side's arithmetic: CUDA as it is; on the CPU, oneDNN off and one thread."""
        if self.paper:
            yield
            return
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with torch.backends.mkldnn.flags(enabled=False):
                yield
        finally:
            torch.set_num_threads(threads)

    def images(self, limit: int | None = None) -> list[tuple[str, Tensor]]:
        """The bundled Kodak images (the first ``limit``; ``CTRLIC_GPU_IMAGES=N`` overrides): whole on CUDA,
        128² top-left crops on the CPU."""
        from ctrlic.datamodules.image_io import list_images, load_rgb8, to_tensor

        limit = int(os.environ.get("CTRLIC_GPU_IMAGES", "0")) or limit
        out = []
        for path in list_images(KODAK4)[:limit]:
            x = to_tensor(load_rgb8(path)[0])[None]
            out.append((path.name, x if self.paper else x[..., :128, :128]))
        return out


def target() -> Target:
    """The suite's target from ``CTRLIC_TEST_DEVICE`` (default ``cuda``)."""
    name = os.environ.get(DEVICE_ENV, "cuda")
    if name not in ("cuda", "cpu"):
        raise ValueError(f"{DEVICE_ENV}={name!r}; use cuda (the GPU suite) or cpu (its rehearsal at tiny size)")
    return Target(name)


def report(record: Mapping) -> None:
    """Append one measured record to ``$CTRLIC_GPU_REPORT`` (no-op when unset)."""
    path = os.environ.get(REPORT_ENV)
    if path:
        with open(path, "a") as fh:
            fh.write(json.dumps({"device": target().device, **record}) + "\n")


def compose_experiment(name: str, out_dir: Path, *overrides: str, tgt: Target | None = None) -> DictConfig:
    """The experiment's config on the bundled images, at the target's size, with ``overrides`` last."""
    tgt = tgt or target()
    base = [f"experiment={name}", "data=demo", "data.num_workers=0", f"paths.output_dir={out_dir}",
            *tgt.size_overrides()]
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=[*base, *overrides])


# -- training -------------------------------------------------------------------------------------------


class TrainingProbe(L.Callback):
    """Records what the training tests check: losses, parameters before and after, first-step gradients,
    and the dtypes the entropy models and the other layers produce.

    ``comparable=True`` makes the step a deterministic function of data and weights, so two devices can be
    compared: stochastic depth and dropout off, quantization noise drawn from a seeded CPU generator.
    """

    def __init__(self, comparable: bool = False) -> None:
        self.comparable = comparable
        self.losses: list[float] = []
        self.loss_dtypes: set[str] = set()
        self.before: dict[str, Tensor] = {}
        self.after: dict[str, Tensor] = {}
        self.first_grads: dict[str, Tensor] = {}
        #: trainable tensors that had a non-zero gradient after some step
        self.grad_seen: set[str] = set()
        #: dtypes of what the entropy models return (likelihoods, codeword maps) and of the codec's likelihoods
        self.entropy_dtypes: set[str] = set()
        #: output dtypes of the conv/linear layers that compute entropy parameters (means, scales)
        self.parameter_dtypes: set[str] = set()
        #: output dtypes of all other conv/linear layers of the codec (bf16 under autocast)
        self.other_dtypes: set[str] = set()
        self._handles: list = []
        self._restore = None

    # hooks ---------------------------------------------------------------------------------------------

    def setup(self, trainer, pl_module, stage) -> None:
        if self.comparable:
            for m in pl_module.modules():
                if isinstance(m, StochasticDepth | nn.Dropout):
                    m.p = 0.0
            self._restore = _cpu_noise(seed=0)
            self._restore.__enter__()

    def teardown(self, trainer, pl_module, stage) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
        if self._restore is not None:
            self._restore.__exit__(None, None, None)
            self._restore = None

    def on_train_start(self, trainer, pl_module) -> None:
        self.before = {n: p.detach().cpu().clone() for n, p in pl_module.named_parameters() if p.requires_grad}
        codec = pl_module.codec
        parameter_prefixes = tuple(f"{n}." for n in getattr(codec.backbone, "parameter_modules", ()))
        for name, module in codec.backbone.named_modules():
            if isinstance(module, EntropyModel | VectorQuantizer):
                self._handles.append(module.register_forward_hook(self._entropy_hook))
            elif isinstance(module, nn.Conv2d | nn.Linear):
                into = self.parameter_dtypes if f"{name}.".startswith(parameter_prefixes) else self.other_dtypes
                self._handles.append(module.register_forward_hook(_dtype_recorder(into)))
        self._handles.append(codec.register_forward_hook(self._codec_hook))

    def _entropy_hook(self, module, args, out) -> None:
        for value in out if isinstance(out, tuple) else (out,):
            if isinstance(value, Tensor) and value.is_floating_point():
                self.entropy_dtypes.add(str(value.dtype))

    def _codec_hook(self, module, args, out) -> None:
        for value in [*out.get("likelihoods", {}).values(), out.get("log_likelihoods")]:
            if isinstance(value, Tensor):
                self.entropy_dtypes.add(str(value.dtype))

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if not self.first_grads:
            self.first_grads = {n: p.grad.detach().cpu().clone() for n, p in pl_module.named_parameters()
                                if p.requires_grad and p.grad is not None}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.grad_seen |= {n for n, p in pl_module.named_parameters()
                           if p.requires_grad and p.grad is not None and bool(p.grad.any())}
        if isinstance(outputs, Mapping) and isinstance(outputs.get("loss"), Tensor):
            self.loss_dtypes.add(str(outputs["loss"].dtype))
        self.losses.append(float(trainer.callback_metrics["train/loss"]))

    def on_train_end(self, trainer, pl_module) -> None:
        self.after = {n: p.detach().cpu().clone() for n, p in pl_module.named_parameters() if p.requires_grad}

    # what the tests read -----------------------------------------------------------------------------

    def changed(self) -> set[str]:
        """Trainable tensors whose values moved during the run."""
        return {n for n, p in self.before.items() if not torch.equal(p, self.after[n])}


def _dtype_recorder(into: set[str]):
    def hook(module, args, out) -> None:
        if isinstance(out, Tensor):
            into.add(str(out.dtype))
    return hook


@contextlib.contextmanager
def _cpu_noise(seed: int) -> Iterator[None]:
    """Quantization noise U(−½, ½) from a seeded CPU generator, whatever the device (same draws everywhere)."""
    original = EntropyModel.quantize
    generator = torch.Generator().manual_seed(seed)

    def quantize(self, inputs, mode, means=None):
        if mode == "noise":
            noise = torch.rand(inputs.shape, generator=generator, dtype=torch.float32) - 0.5
            return inputs + noise.to(inputs.device, inputs.dtype)
        return original(self, inputs, mode, means)

    EntropyModel.quantize = quantize
    try:
        yield
    finally:
        EntropyModel.quantize = original


@contextlib.contextmanager
def full_fp32() -> Iterator[None]:
    """TF32 off for CUDA matmuls and convolutions (restored afterwards); nothing to do on the CPU."""
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


@contextlib.contextmanager
def _restored_environment() -> Iterator[None]:
    """Lightning's DDP launcher writes MASTER_ADDR, WORLD_SIZE, ... into os.environ: put it back after."""
    saved = dict(os.environ)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def train_steps(cfg: DictConfig, steps: int, probe: TrainingProbe) -> TrainingProbe:
    """Build data, codec and module as ``task=train`` does and run ``steps`` steps with ``probe`` attached.

    No validation, checkpoints or logger: the probe is the only callback.
    """
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = hydra.utils.instantiate(cfg.data)
    codec = build_codec(cfg.backbone, cfg.get("control"))
    module = hydra.utils.instantiate(cfg.module, codec=codec, _convert_="all")
    with _restored_environment():
        trainer = hydra.utils.instantiate(cfg.trainer, callbacks=[probe], logger=False, enable_checkpointing=False,
                                          max_steps=steps, limit_val_batches=0, enable_progress_bar=False,
                                          enable_model_summary=False, num_sanity_val_steps=0)
        trainer.fit(module, datamodule=datamodule)
    return probe


def compare_steps(device: TrainingProbe, cpu: TrainingProbe) -> dict:
    """First-step loss and gradients of two runs: relative differences, overall and per tensor."""
    loss_rel = abs(device.losses[0] - cpu.losses[0]) / max(abs(cpu.losses[0]), 1e-30)
    names = sorted(cpu.first_grads)
    missing = sorted(set(names) ^ set(device.first_grads))
    diff2 = ref2 = 0.0
    per_tensor = {}
    for name in names:
        if name not in device.first_grads:
            continue
        ref, got = cpu.first_grads[name].double(), device.first_grads[name].double()
        d, r = float((got - ref).norm()), float(ref.norm())
        diff2, ref2 = diff2 + d * d, ref2 + r * r
        per_tensor[name] = (d, r)
    total = math.sqrt(ref2)
    worst = {n: d / r for n, (d, r) in per_tensor.items() if r >= 1e-3 * total and r > 0}
    worst_name = max(worst, key=worst.get) if worst else None
    return {"loss_device": device.losses[0], "loss_cpu": cpu.losses[0], "loss_rel": loss_rel,
            "grad_rel": math.sqrt(diff2) / total if total > 0 else math.inf,
            "worst_tensor": worst_name, "worst_tensor_rel": worst.get(worst_name, 0.0) if worst_name else 0.0,
            "tensors_compared": len(worst), "grad_names_differ": missing}


# -- coding ---------------------------------------------------------------------------------------------


def wake_zero_parameters(codec: Codec, seed: int) -> int:
    """Give all-zero parameters (LoRA B, zero-initialised adapters and prompts) small random values.

    At their initial zeros adapters and prompts change nothing, and a coding test of them would test the
    anchor alone. Returns how many tensors were set.
    """
    generator = torch.Generator().manual_seed(seed)
    woken = 0
    with torch.no_grad():
        for p in codec.backbone.parameters():
            if p.is_floating_point() and p.numel() and not p.any():
                p.copy_(torch.randn(p.shape, generator=generator) * 0.02)
                woken += 1
    return woken


def export_random_codec(experiment: str, out_dir: Path, tgt: Target | None = None) -> tuple[Path, DictConfig]:
    """The experiment's codec with seeded random weights (adapters woken), exported to a codec file."""
    cfg = compose_experiment(experiment, out_dir, tgt=tgt)
    torch.manual_seed(0)
    codec = build_codec(cfg.backbone, cfg.get("control"))
    wake_zero_parameters(codec, seed=1)
    return export_codec(codec, out_dir / f"{experiment}.codec.pt"), cfg


def middle_knobs(codec: Codec) -> dict[str, float]:
    """The middle of the codec's knob sweep among settings with no knob at 0 (where adapters, β-sets or
    per-image fits would do nothing); {} for fixed-rate codecs."""
    points = codec.control.sweep_points() or [{}]
    active = [p for p in points if all(p.values())] or points
    return dict(active[len(active) // 2])


#: where each backbone turns the decoded latent into an image: (class name in its MRO, attribute)
SYNTHESIS_ENTRY = (("ChannelAutoregressive", "synthesis"), ("Cheng2020Attn", "g_s"), ("TIC", "g_s"),
                   ("VQGAN", "decode_codes"))


class LatentsCaptured(Exception):
    """Raised at the synthesis entry by ``synthesis_inputs(stop=True)``: the decoded latent is all we need."""


@contextlib.contextmanager
def synthesis_inputs(backbone: nn.Module, stop: bool = False) -> Iterator[list[Tensor]]:
    """Collect (on the CPU) the decoded latent each decode hands to the synthesis transform; with ``stop``
    the decode ends there (``LatentsCaptured``), skipping the synthesis."""
    classes = {cls.__name__ for cls in type(backbone).__mro__}
    name = next((attr for cls, attr in SYNTHESIS_ENTRY if cls in classes), None)
    if name is None:
        raise TypeError(f"no synthesis entry known for {type(backbone).__name__}; add it to SYNTHESIS_ENTRY")
    captured: list[Tensor] = []

    def keep(latent: Tensor) -> None:
        captured.append(latent.detach().cpu().clone())
        if stop:
            raise LatentsCaptured

    entry = getattr(backbone, name)
    if isinstance(entry, nn.Module):
        handle = entry.register_forward_pre_hook(lambda m, args: keep(args[0]))
        try:
            yield captured
        finally:
            handle.remove()
        return

    def wrapper(latent, *args, **kwargs):
        keep(latent)
        return entry(latent, *args, **kwargs)

    backbone.__dict__[name] = wrapper  # shadows the method on this instance only
    try:
        yield captured
    finally:
        del backbone.__dict__[name]


def decoded_latent(codec: Codec, data: bytes) -> Tensor:
    """The latent ``codec`` decodes from ``data``, without running the synthesis transform."""
    with synthesis_inputs(codec.backbone, stop=True) as latents:
        try:
            codec.decompress(data)
        except LatentsCaptured:
            pass
    return latents[-1]


def to_8bit(x: Tensor) -> Tensor:
    return torch.round(x.detach().float().cpu().clamp(0, 1) * 255).to(torch.int16)


def cross_decode(device_codec: Codec, cpu_codec: Codec, tgt: Target, x: Tensor, knobs: Mapping[str, float],
                 path: str, pixels: bool = True) -> dict:
    """Encode on the device, decode there and on the CPU; what the two decoders produced, compared.

    ``latents_equal``: the decoded latents are bit-identical (the entropy decoding agreed symbol for
    symbol); ``max_latent_diff`` > 0.25 means a symbol differs (a desynchronised stream). With ``pixels``
    both decode to the end and the images are compared in 8 bits: the synthesis transforms run on
    different devices (TF32 off on the GPU), so those may differ by a rounding. Without, both decoders
    stop at the latent (what counting wrong decodes needs).
    """
    if device_codec.backbone.robust_entropy:
        device_codec.set_options(entropy_path=path)
    with tgt.arithmetic(), full_fp32():
        data = device_codec.compress(x, knobs)
        if pixels:
            with synthesis_inputs(device_codec.backbone) as dev_latents:
                x_dev = device_codec.decompress(data)
            dev_latent = dev_latents[-1]
        else:
            dev_latent = decoded_latent(device_codec, data)
    row = {"path": path, "bytes": len(data), "error": None, "max_pixel_diff": None}
    try:
        if pixels:
            with synthesis_inputs(cpu_codec.backbone) as cpu_latents:
                x_cpu = cpu_codec.decompress(data)
            cpu_latent = cpu_latents[-1]
            row["max_pixel_diff"] = int((to_8bit(x_dev) - to_8bit(x_cpu)).abs().max())
        else:
            cpu_latent = decoded_latent(cpu_codec, data)
    except Exception as exc:  # noqa: BLE001 - a desynchronised stream may fail anywhere in the decoder
        row.update(error=f"{type(exc).__name__}: {exc}", latents_equal=False, max_latent_diff=math.inf)
        return row
    a, b = dev_latent, cpu_latent
    row["latents_equal"] = a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    row["max_latent_diff"] = float((a.double() - b.double()).abs().max()) if a.shape == b.shape else math.inf
    return row


def lossless_cross_decode(device_codec: Codec, cpu_codec: Codec, x: Tensor, knobs: Mapping[str, float]) -> dict:
    """Lossless: encode with the codec on the device, decode on the CPU and on the device; exact or not.

    MGCF codes on the CPU (a CPU copy of a GPU model) with the CPU's own kernels on both sides, so the CPU
    rehearsal does not change the arithmetic here: the device side is the codec's device alone.
    """
    data = device_codec.compress(x, knobs)
    x_dev = device_codec.decompress(data)
    x_cpu = cpu_codec.decompress(data)
    exact = to_8bit(x)
    return {"bytes": len(data), "cpu_exact": torch.equal(to_8bit(x_cpu), exact),
            "device_exact": torch.equal(to_8bit(x_dev), exact)}
