"""Input expansion (files, folders, globs) and safe output: checked before any model is loaded, written
to hidden temporary files and renamed into place, never over an input, never a partial file."""

from __future__ import annotations

import argparse
import glob
import os
import secrets
import stat
from collections.abc import Callable, Sequence
from pathlib import Path

from ctrlic.cli.errors import CLIError, about

_GLOB_CHARS = set("*?[")
#: what compress writes and decompress reads, and what decompress writes
BITSTREAM_SUFFIX, IMAGE_SUFFIX = ".ctl", ".png"
#: output names compress refuses: they would hold a bitstream under an image's name (lower case)
IMAGE_NAMES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".gif")
#: characters of the target's name kept in its temporary file's name (the whole name may be 255 long)
_TMP_NAME_CHARS = 64
#: longest file name (bytes) of the file systems ctrlic meets (ext4, xfs, btrfs, tmpfs, APFS, NTFS)
_NAME_MAX = 255


class OutputError(CLIError):
    """An output that cannot be written where asked (the message names the path and the reason)."""


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder")):
        if test(mode):
            return name
    return "not a regular file"


def check_regular(path: Path, what: str) -> None:
    """Refuse anything but a regular file (pipes, devices and sockets would hang or never end)."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise CLIError(f"{what} '{path}': {exc.strerror or exc}") from None
    if not stat.S_ISREG(mode):
        raise CLIError(f"{what} '{path}' is {_kind(mode)}; give a regular file")


def read_bytes(path: Path) -> bytes:
    """The contents of a regular input file (opened without blocking, read to its size), or a CLIError."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as f:
            mode = os.fstat(fd).st_mode
            if not stat.S_ISREG(mode):
                raise CLIError(f"'{path}' is {_kind(mode)}; give a regular file")
            return f.read()
    except OSError as exc:
        raise CLIError(f"cannot read '{path}': {exc.strerror or exc}") from None


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
            check_regular(path, "input")
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


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def output_paths(inputs: Sequence[Path], out: str, suffix: str, *, protected: Sequence[Path] = ()) -> list[Path]:
    """One output per input: ``out`` itself for one input, else ``out/<stem><suffix>``; checked up front.

    Refuses outputs that are an input or one of the ``protected`` files (the model), that two inputs
    share, or that are folders or special files.
    """
    target = Path(out)
    _check_name(target)
    if len(inputs) == 1 and not target.is_dir() and not out.endswith(("/", os.sep)):
        paths = [target]
    else:
        if (target.exists() and not target.is_dir()) or (not target.exists() and target.suffix.lower() == suffix):
            raise CLIError(f"{len(inputs)} inputs need an output folder, not the file '{out}'")
        paths = [target / f"{p.stem}{suffix}" for p in inputs]
    seen: dict[Path, Path] = {}
    for src, dst in zip(inputs, paths, strict=True):
        _check_name(dst)
        if any(_same_file(dst, p) for p in inputs):
            raise CLIError(f"output '{dst}' is an input file; choose another output name")
        for p in protected:
            if _same_file(dst, p):
                raise CLIError(f"output '{dst}' is the model file; choose another output name")
        key = dst.resolve()
        if key in seen:
            raise CLIError(f"'{seen[key]}' and '{src}' would both be written to '{dst}'; compress them separately")
        seen[key] = src
        if dst.is_dir():
            raise CLIError(f"output '{dst}' is a folder; give a file name")
        if dst.exists() and not stat.S_ISREG(dst.stat().st_mode):
            raise CLIError(f"output '{dst}' is {_kind(dst.stat().st_mode)}; give a regular file name")
    return paths


def check_existing(paths: Sequence[Path], replace: bool) -> None:
    """Refuse outputs that exist, unless ``replace`` (--force, or --skip-existing checking them later)."""
    for dst in paths:
        if dst.exists() and not replace:
            raise CLIError(f"output '{dst}' exists; pass --force to overwrite it (or --skip-existing to keep "
                           "complete outputs)")


def check_writable(paths: Sequence[Path]) -> None:
    """Check, before anything is loaded, that every output can be created: its folder is a folder (or can be
    made) and accepts a new file."""
    for folder in dict.fromkeys(p.parent for p in paths):
        existing = folder
        while not existing.exists():
            if existing.is_symlink():
                raise OutputError(f"output folder '{folder}': '{existing}' is a broken link")
            existing = existing.parent
        if not existing.is_dir():
            raise OutputError(f"output folder '{folder}': '{existing}' is a file, not a folder")
        if existing == folder:
            _probe(folder)
        elif not os.access(existing, os.W_OK | os.X_OK):
            raise OutputError(f"output folder '{folder}' cannot be created: '{existing}' is not writable")


def _check_name(path: Path) -> None:
    """Refuse a path with a part longer than the file system allows (before anything stats it)."""
    for part in path.parts:
        if len(os.fsencode(part)) > _NAME_MAX:
            raise OutputError(f"output name '{part}' is longer than the {_NAME_MAX} bytes a file name may have; "
                              "choose a shorter name")


def _probe(folder: Path) -> None:
    """Create and remove a hidden file in ``folder`` (the only reliable test of writability)."""
    try:
        tmp = _create_temp(folder / "probe")
    except OSError as exc:
        raise OutputError(f"cannot write into output folder '{folder}': {exc.strerror or exc}") from None
    tmp.unlink()


def _create_temp(path: Path) -> Path:
    """A new hidden file beside ``path``, created with the umask's permissions (like any new file)."""
    name = path.parent / f".{path.name[:_TMP_NAME_CHARS]}.{secrets.token_hex(4)}.tmp"
    os.close(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    return name


def _write_temp(path: Path, write: Callable[[Path], None]) -> Path:
    """``write`` into a new temporary file beside ``path``; on failure nothing is left. OSError: OutputError."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = _create_temp(path)
        write(tmp)
        if path.exists():
            os.chmod(tmp, stat.S_IMODE(path.stat().st_mode))  # --force keeps the replaced file's mode
        return tmp
    except OSError as exc:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        raise OutputError(f"cannot write '{path}': {exc.strerror or exc}") from None
    except BaseException:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        raise


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a hidden temporary file beside ``path``, then rename it onto ``path``.

    An interrupted or failing write leaves ``path`` untouched (and removes the temporary file); a new file
    gets the umask's permissions, a replaced one keeps its mode.
    """
    tmp = _write_temp(path, write)
    try:
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"cannot write '{path}': {exc.strerror or exc}") from None


class OutputBatch:
    """The outputs of one command, each written to a temporary file and renamed into place when the batch
    ends: all finished ones if it succeeds or is interrupted (a rerun with --skip-existing continues), none
    if it fails — a bad file found half-way leaves nothing behind."""

    def __init__(self) -> None:
        self._staged: list[tuple[Path, Path]] = []

    def write(self, path: Path, write: Callable[[Path], None]) -> None:
        self._staged.append((_write_temp(path, write), path))

    def __enter__(self) -> OutputBatch:
        return self

    def __exit__(self, kind, exc, tb) -> None:
        keep = kind is None or issubclass(kind, KeyboardInterrupt)
        staged, self._staged = self._staged, []
        for i, (tmp, path) in enumerate(staged):
            if not keep:
                tmp.unlink(missing_ok=True)
                continue
            try:
                os.replace(tmp, path)
            except OSError as err:
                for later, _ in staged[i:]:
                    later.unlink(missing_ok=True)
                if kind is None:
                    raise OutputError(f"cannot write '{path}': {err.strerror or err}") from None
                return


def preflight(args: argparse.Namespace) -> None:
    """Resolve and check the file arguments of every command before a model is loaded.

    Sets ``args.input_paths`` and ``args.output_paths`` for compress / decompress; every input is checked
    (images fully decoded within the pixel limit, bitstreams' structure, checksum and declared size) and
    every output place tried, so that a bad file or folder stops a batch before anything is written.
    """
    from ctrlic.cli import checks

    checks.arguments(args)
    if args.command == "compress":
        model = _model_path(args)
        args.input_paths = expand_inputs(args.inputs)
        args.output_paths = output_paths(args.input_paths, args.output, BITSTREAM_SUFFIX, protected=[model])
        single = len(args.input_paths) == 1 and not Path(args.output).is_dir()
        if single and Path(args.output).suffix.lower() in IMAGE_NAMES:
            raise CLIError(f"compress writes a bitstream, not an image: name the output "
                           f"'{Path(args.output).with_suffix(BITSTREAM_SUFFIX)}', not '{args.output}' "
                           "(ctrlic decompress makes the PNG)")
        check_existing(args.output_paths, args.force or args.skip_existing)
        check_writable(args.output_paths)
        from ctrlic.datamodules.image_io import load_rgb8

        for path in args.input_paths:
            load_rgb8(path, args.max_pixels)  # every pixel decodes before the first output is written
    elif args.command == "decompress":
        model = _model_path(args)
        args.input_paths = expand_inputs(args.inputs, suffixes=(BITSTREAM_SUFFIX,))
        single = len(args.input_paths) == 1 and not Path(args.output).is_dir()
        if single and Path(args.output).suffix.lower() != IMAGE_SUFFIX:
            raise CLIError(f"decompress writes PNG; name the output '*.png', not '{args.output}'")
        args.output_paths = output_paths(args.input_paths, args.output, IMAGE_SUFFIX,
                                         protected=[model] if model else [])
        check_existing(args.output_paths, args.force or args.skip_existing)
        check_writable(args.output_paths)
        from ctrlic.codecs.bitstream import BitstreamError, read_header
        from ctrlic.codecs.tiling import PixelLimitError, check_pixels

        for path in args.input_paths:
            try:
                header = read_header(read_bytes(path))
                check_pixels(header.height, header.width, args.max_pixels, "the declared image")
            except (BitstreamError, PixelLimitError) as exc:
                raise about(path, exc) from None
    elif args.command == "eval":
        _model_path(args)
        checks.eval_inputs(args)


def _model_path(args: argparse.Namespace) -> Path | None:
    if not getattr(args, "model", None):
        return None
    path = Path(args.model)
    if not path.exists():
        raise CLIError(f"model '{args.model}' does not exist; pass an exported codec file (.codec.safetensors) or a "
                       "checkpoint")
    check_regular(path, "model")
    return path
