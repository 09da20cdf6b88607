"""``ctrlic decompress``: bitstream files back to 8-bit RGB PNG, with the model that wrote them."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from ctrlic.cli import console
from ctrlic.cli.errors import CLIError, about
from ctrlic.cli.files import atomic_write, read_bytes
from ctrlic.cli.models import lookup, open_model
from ctrlic.codecs.bitstream import Header, parse
from ctrlic.datamodules.image_io import save_png

if TYPE_CHECKING:
    from ctrlic.codecs.codec import Codec


def _model_for(path: Path, header: Header, args: argparse.Namespace, cache: dict[Path, Codec]) -> Codec:
    if args.model:
        return open_model(args.model, cache, trust_pickle=args.trust_pickle)
    found = lookup(header.fingerprint)
    if found is None:
        raise CLIError(f"'{path}' was written by a {header.codec!r} model with weights {header.fingerprint.hex()}, "
                       "which this machine has not used to compress; pass --model")
    return open_model(found, cache, trust_pickle=args.trust_pickle)


def run(args: argparse.Namespace) -> None:
    inputs, outputs = args.input_paths, args.output_paths
    cache: dict[Path, Codec] = {}
    for src, dst in zip(console.each(inputs, "decompressing"), outputs, strict=True):
        data = read_bytes(src)
        try:
            parsed = parse(data)
            codec = _model_for(src, parsed[0], args, cache)
            x_hat = codec.decompress(parsed)
        except ValueError as exc:
            raise about(src, exc) from None
        atomic_write(dst, lambda tmp, x_hat=x_hat: save_png(x_hat, tmp))
        console.say(f"{src} -> {dst}: {x_hat.shape[-1]}x{x_hat.shape[-2]}")
