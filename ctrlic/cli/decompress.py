"""``ctrlic decompress``: bitstream files back to 8-bit RGB PNG, with the model that wrote them."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from ctrlic.cli import console
from ctrlic.cli.errors import CLIError, about
from ctrlic.cli.files import OutputBatch, read_bytes
from ctrlic.cli.models import lookup, open_model
from ctrlic.codecs.bitstream import Header, parse
from ctrlic.codecs.layout import check_bitstream
from ctrlic.datamodules.image_io import ImageReadError, load_rgb8, save_png

if TYPE_CHECKING:
    from ctrlic.codecs.codec import Codec


def _model_for(path: Path, header: Header, args: argparse.Namespace, cache: dict[Path, Codec]) -> Codec:
    if args.model:
        codec = open_model(args.model, cache, trust_pickle=args.trust_pickle)
    else:
        found = lookup(header.fingerprint)
        if found is None:
            raise CLIError(f"'{path}' was written by a {header.codec!r} model with weights "
                           f"{header.fingerprint.hex()}, which this machine has not used to compress; pass --model")
        codec = open_model(found, cache, trust_pickle=args.trust_pickle)
    codec.set_options(max_pixels=args.max_pixels)
    return codec


def _complete(path: Path, header: Header) -> bool:
    """True when ``path`` is a whole image of the size the bitstream declares."""
    try:
        arr, _ = load_rgb8(path)
    except ImageReadError:
        return False
    return arr.shape[:2] == (header.height, header.width)


def run(args: argparse.Namespace) -> None:
    inputs, outputs = args.input_paths, args.output_paths
    cache: dict[Path, Codec] = {}
    skip, parsed = set(), {}
    for src, dst in zip(inputs, outputs, strict=True):  # every file's layout, before the first is decoded
        try:
            parsed[src] = header, sections = parse(read_bytes(src))
            check_bitstream(_model_for(src, header, args, cache), header, sections)
        except ValueError as exc:
            raise about(src, exc) from None
        if args.skip_existing and dst.exists():
            if not _complete(dst, header):
                raise CLIError(f"output '{dst}' exists but is not a complete {header.width}x{header.height} image; "
                               "pass --force to overwrite it, or move it away")
            skip.add(dst)
    with OutputBatch() as batch:
        for src, dst in zip(console.each(inputs, "decompressing"), outputs, strict=True):
            if dst in skip:
                console.note(f"'{dst}' exists and is complete; skipped '{src}'")
                continue
            try:
                x_hat = _model_for(src, parsed[src][0], args, cache).decompress(parsed[src])
            except ValueError as exc:
                raise about(src, exc) from None
            batch.write(dst, lambda tmp, x_hat=x_hat: save_png(x_hat, tmp))
            console.say(f"{src} -> {dst}: {x_hat.shape[-1]}x{x_hat.shape[-2]}")
