"""``ctrlic info``: what a bitstream holds (codec, weights, knobs, size, bpp) or what a model offers."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ctrlic.cli import console
from ctrlic.cli.errors import CLIError, about
from ctrlic.cli.files import read_bytes
from ctrlic.cli.models import open_model
from ctrlic.codecs import bitstream


def bitstream_info(data: bytes) -> dict:
    header = bitstream.read_header(data)
    pixels = header.height * header.width
    return {
        "kind": "bitstream",
        "codec": header.codec,
        "weights_fingerprint": header.fingerprint.hex(),
        "config_hash": header.config_hash.hex(),
        "knobs": header.knobs,
        "width": header.width,
        "height": header.height,
        "bytes": len(data),
        "header_bytes": bitstream.header_size(data),
        "bpp": 8 * len(data) / pixels,
        "extras": header.extras,
    }


def model_info(path: Path, trust_pickle: bool = False) -> dict:
    codec = open_model(path, trust_pickle=trust_pickle)
    return {
        "kind": "model",
        "codec": codec.name,
        "weights_fingerprint": codec.fingerprint.hex(),
        "config_hash": codec.config_hash.hex(),
        "lossless": codec.lossless,
        "scheme": type(codec.control).__name__,
        "knobs": {k.name: {"range": [k.low, k.high], "default": k.default} for k in codec.knobs},
        "parameters": sum(p.numel() for p in codec.parameters()),
        "pad_multiple": codec.backbone.pad_multiple,
        "robust_entropy": codec.backbone.robust_entropy,
        "entropy_tables": codec.entropy_tables,
    }


def run(args: argparse.Namespace) -> None:
    path = Path(args.file)
    if not path.is_file():
        raise CLIError(f"'{args.file}' does not exist" if not path.exists() else f"'{args.file}' is not a file")
    data = read_bytes(path)
    try:
        info = bitstream_info(data) if data.startswith(bitstream.MAGIC) else model_info(path, args.trust_pickle)
    except ValueError as exc:
        raise about(path, exc) from None
    if args.json:
        console.say(json.dumps(info))
        return
    for key, value in info.items():
        if isinstance(value, float):
            value = f"{value:.4f}"
        elif isinstance(value, dict):
            value = json.dumps(value) if value else "-"
        console.say(f"{key:>20}: {value}")
