"""Input expansion (files, folders, globs) and safe output: temporary file + rename, no silent overwrite."""

from __future__ import annotations

import argparse
import glob
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from ctrlic.cli.errors import CLIError, about

_GLOB_CHARS = set("*?[")
#: what compress writes and decompress reads, and what decompress writes
BITSTREAM_SUFFIX, IMAGE_SUFFIX = ".ctl", ".png"


def expand_inputs(args: Sequence[str], suffixes: tuple[str, ...] | None = None) -> list[Path]:
    """Files named by ``args``: plain files, folders (their images, or files with ``suffixes``) and globs."""
    found: list[Path] = []
    for arg in args:
        path = Path(arg)
        if path.is_dir():
            from ctrlic.datamodules.image_io import list_images  # torch: only when a folder is given

            inside = (list_images(path) if suffixes is None else
                      sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in suffixes))
            if not inside:
                raise CLIError(f"folder '{arg}' holds no input files"
                               + ("" if suffixes is None else f" ({', '.join(suffixes)})"))
            found += inside
        elif path.exists():
            found.append(path)
        elif _GLOB_CHARS & set(arg):
            matches = sorted(Path(p) for p in glob.glob(arg, recursive=True) if Path(p).is_file())
            if not matches:
                raise CLIError(f"no files match '{arg}'")
            found += matches
        else:
            raise CLIError(f"input '{arg}' does not exist")
    unique = list(dict.fromkeys(p.resolve() for p in found))
    return [Path(os.path.relpath(p)) if p.is_relative_to(Path.cwd()) else p for p in unique]


def output_paths(inputs: Sequence[Path], out: str, suffix: str, force: bool) -> list[Path]:
    """One output per input: ``out`` itself for one input, else ``out/<stem><suffix>``; checked up front.

    Refuses outputs that exist (without ``force``), that are an input, or that two inputs share.
    """
    target = Path(out)
    if len(inputs) == 1 and not target.is_dir() and not out.endswith(("/", os.sep)):
        paths = [target]
    else:
        if (target.exists() and not target.is_dir()) or (not target.exists() and target.suffix.lower() == suffix):
            raise CLIError(f"{len(inputs)} inputs need an output folder, not the file '{out}'")
        paths = [target / f"{p.stem}{suffix}" for p in inputs]
    seen: dict[Path, Path] = {}
    sources = {p.resolve() for p in inputs}
    for src, dst in zip(inputs, paths, strict=True):
        key = dst.resolve()
        if key in sources:
            raise CLIError(f"output '{dst}' is an input file; choose another output name")
        if key in seen:
            raise CLIError(f"'{seen[key]}' and '{src}' would both be written to '{dst}'; compress them separately")
        seen[key] = src
        if dst.is_dir():
            raise CLIError(f"output '{dst}' is a folder; give a file name")
        if dst.exists() and not force:
            raise CLIError(f"output '{dst}' exists; pass --force to overwrite it")
    return paths


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a hidden temporary file beside ``path``, then rename it onto ``path``.

    An interrupted or failing write leaves ``path`` untouched (and removes the temporary file).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_bytes(path: Path) -> bytes:
    """The contents of an input file, or a CLIError saying why it cannot be read."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise CLIError(f"cannot read '{path}': {exc.strerror or exc}") from None


def preflight(args: argparse.Namespace) -> None:
    """Resolve and check the file arguments of compress / decompress before the model is loaded.

    Sets ``args.input_paths`` and ``args.output_paths``; every input is checked (image integrity, or
    bitstream structure and checksum) so that a bad file stops a batch before anything is written.
    """
    if args.command == "compress":
        args.input_paths = expand_inputs(args.inputs)
        args.output_paths = output_paths(args.input_paths, args.output, BITSTREAM_SUFFIX, args.force)
        from ctrlic.datamodules.image_io import verify_image

        for path in args.input_paths:
            verify_image(path)
    elif args.command == "decompress":
        args.input_paths = expand_inputs(args.inputs, suffixes=(BITSTREAM_SUFFIX,))
        single = len(args.input_paths) == 1 and not Path(args.output).is_dir()
        if single and Path(args.output).suffix.lower() != IMAGE_SUFFIX:
            raise CLIError(f"decompress writes PNG; name the output '*.png', not '{args.output}'")
        args.output_paths = output_paths(args.input_paths, args.output, IMAGE_SUFFIX, args.force)
        from ctrlic.codecs.bitstream import BitstreamError, read_header

        for path in args.input_paths:
            try:
                read_header(read_bytes(path))
            except BitstreamError as exc:
                raise about(path, exc) from None
