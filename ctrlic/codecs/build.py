"""Build codecs from config, and write/read the self-contained exported codec file."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf
from torch import nn

from ctrlic.codecs.checkpoint import NO_TRUST, CheckpointError, PickleTrust, load_weights, read_checkpoint
from ctrlic.codecs.codec import Codec
from ctrlic.codecs.codec_file import write_codec_file
from ctrlic.codecs.recorded import check_architecture, check_codec_format

#: backbone-config keys that choose weights rather than architecture (excluded from the config hash)
WEIGHT_KEYS = ("checkpoint", "expects_checkpoint", "adapted", "weights", "trust_pickle")
#: how ``backbone.checkpoint`` is allowed to need the full unpickler (never by default)
BACKBONE_TRUST_SWITCH = "backbone.trust_pickle=true"
log = logging.getLogger("ctrlic")


def _plain(cfg: Mapping | DictConfig | None) -> dict:
    if cfg is None:
        return {}
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)


def architecture(backbone_cfg: Mapping, control_cfg: Mapping | None = None) -> dict:
    """The architecture part of the config: backbone constructor (size resolved) and control scheme."""
    backbone = _plain(backbone_cfg)
    sizes = backbone.pop("sizes", {}) or {}
    size = backbone.pop("size", None)
    if size is not None:
        if size not in sizes:
            raise ValueError(f"backbone.size={size!r} is not defined; choose one of {', '.join(sizes)}")
        backbone.update(sizes[size])
    for key in WEIGHT_KEYS:
        backbone.pop(key, None)
    name = backbone.pop("name")
    return {"name": name, "size": size, "backbone": backbone, "control": _plain(control_cfg) or None}


def build_from_architecture(arch: Mapping, prepare: Callable[[nn.Module], None] | None = None) -> Codec:
    """Instantiate backbone and control scheme from an ``architecture()`` dict.

    ``prepare`` runs on the bare backbone before the control scheme attaches (pretrained weights).
    """
    backbone = hydra.utils.instantiate(arch["backbone"], _convert_="all")
    if prepare is not None:
        prepare(backbone)
    control = hydra.utils.instantiate(arch["control"], _convert_="all") if arch.get("control") else None
    return Codec(backbone, control, name=arch["name"], arch=arch)


def build_codec(backbone_cfg: Mapping, control_cfg: Mapping | None = None) -> Codec:
    """Build a codec from the ``backbone`` and ``control`` config groups, loading pretrained weights.

    ``backbone.checkpoint`` (path, URL or ``zoo:``) is loaded strictly into the backbone before the
    control scheme attaches. Without one, an experiment that builds on a trained model
    (``backbone.expects_checkpoint: true``) warns loudly and starts from random weights.
    """
    plain = _plain(backbone_cfg)
    arch = architecture(plain, control_cfg)
    checkpoint, adapted = plain.get("checkpoint"), plain.get("adapted")
    trust = PickleTrust(plain.get("trust_pickle") is True, BACKBONE_TRUST_SWITCH)

    def load_pretrained(backbone: nn.Module) -> None:
        if checkpoint and adapted:
            merge_adapted(backbone, checkpoint, adapted, trust)
        elif checkpoint:
            load_weights(backbone, checkpoint, trust=trust,  # backbone.weights: raw | ema (vqgan)
                         key_map=functools.partial(backbone.checkpoint_key_map, variant=plain.get("weights")))
        elif plain.get("expects_checkpoint"):
            log.warning("\n%s\n  backbone.checkpoint is not set: this experiment builds on a trained %s but "
                        "starts\n  from RANDOM weights. Set backbone.checkpoint=PATH|URL for real results.\n%s",
                        "!" * 78, arch["name"], "!" * 78)

    return build_from_architecture(arch, load_pretrained)


def merge_adapted(backbone, checkpoint, adapted: Mapping, trust: PickleTrust = NO_TRUST) -> None:
    """Load a checkpoint whose backbone carries adapters and fold them into its weights.

    CALICE's two-step recipe for new metrics: adapters trained at a fixed λ (``adapted.scheme`` is
    their control config, ``adapted.knobs`` the knob values they were trained at) become part of the
    anchor, and a fresh α-adapter set is then trained on top. With ``adapted.merge: false`` the
    adapters stay attached for the control scheme to take over (β-CALICE stacks on a trained α set).
    """
    knobs = dict(adapted.get("knobs") or {})
    scheme = hydra.utils.instantiate(adapted["scheme"], _convert_="all")
    scheme.attach(backbone)
    load_weights(backbone, checkpoint, trust=trust, key_map=backbone.checkpoint_key_map)
    if adapted.get("merge", True):
        scheme.apply(scheme.resolve(knobs))
        scheme.merge()


def export_codec(codec: Codec, path: str | Path) -> Path:
    """Write a self-contained codec file (safetensors): architecture, weights with CDF tables, fingerprint."""
    codec.prepare()
    return write_codec_file(path, codec.arch, codec.backbone.state_dict(), codec.fingerprint.hex())


def codec_from_weights(arch: object, state: Mapping, source: object, fingerprint: str | None = None,
                       tables_fit: bool = True) -> Codec:
    """Build a recorded architecture (only ctrlic's own classes; checked first) and load its weights
    strictly; check the fingerprint when one is recorded.

    ``tables_fit=False`` (a training checkpoint saved while the entropy models trained): its CDF tables
    are stale and are rebuilt, never kept.
    """
    check_architecture(arch, source)
    try:
        codec = build_from_architecture(arch)
    except Exception as err:  # noqa: BLE001 - hydra wraps what the constructors raise
        raise CheckpointError(f"{source}: cannot build the architecture it records ({err}); it was written "
                              "by another ctrlic version or is corrupted") from None
    load_weights(codec.backbone, state)
    if not tables_fit:
        codec.discard_checkpoint_tables()
    codec.prepare()
    if fingerprint and codec.fingerprint.hex() != fingerprint:
        raise CheckpointError(f"{source}: weights fingerprint {codec.fingerprint.hex()} does not match the "
                              f"recorded {fingerprint}; the file is corrupted")
    return codec


def load_codec(source: str | Path | Mapping, label: object = None, trust: PickleTrust = NO_TRUST) -> Codec:
    """Load an exported codec file (a path, or its contents as read), without the training config.

    Nothing in the file runs: it is read without the full unpickler (unless ``trust`` allows it), and
    its format and the classes its architecture names are checked before anything is built.
    """
    obj = read_checkpoint(source, trust) if isinstance(source, str | Path) else source
    label = label if label is not None else source
    if not isinstance(obj, Mapping) or "arch" not in obj or not isinstance(obj.get("state_dict"), Mapping):
        found = ", ".join(map(repr, list(obj)[:6])) if isinstance(obj, Mapping) else type(obj).__name__
        raise CheckpointError(
            f"{label}: not a ctrlic codec or checkpoint (no architecture inside; it holds "
            f"{found}). Plain weights load with backbone.checkpoint=...")
    check_codec_format(obj, label)
    return codec_from_weights(obj["arch"], obj["state_dict"], label, obj.get("fingerprint"))
