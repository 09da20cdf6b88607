"""The command line of ``ctrlic``: sub-commands, options and their defaults (no heavy imports here)."""

from __future__ import annotations

import argparse

from ctrlic.cli.knobs import RATIO_KNOBS, SHORTCUTS
from ctrlic.codecs.tiling import DEFAULT_MAX_PIXELS

#: default tile size in pixels (rounded up to the codec's padding multiple): bounds memory on large photos
DEFAULT_TILE = 1024
#: default relative tolerance of --bpp / --psnr, and the most encodes one search may spend
DEFAULT_TOLERANCE, DEFAULT_MAX_ENCODES = 0.005, 20


class _Once(argparse._StoreAction):
    """``store`` that notes an option given twice with different values (``checks.arguments`` refuses it;
    argparse would silently keep the last)."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        given = namespace.__dict__.setdefault("given_options", {})
        if self.dest in given and given[self.dest] != values:
            namespace.__dict__.setdefault("conflicts", []).append(
                f"{option_string} is given twice with different values ({given[self.dest]} and {values}); give it once")
        given[self.dest] = values
        setattr(namespace, self.dest, values)


def _command(commands: argparse._SubParsersAction, name: str, **kwargs) -> argparse.ArgumentParser:
    """A sub-command whose single-value options refuse conflicting repeats."""
    p = commands.add_parser(name, **kwargs)
    p.register("action", None, _Once)
    p.register("action", "store", _Once)
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ctrlic", description="Compress, decompress, describe and evaluate with trained ctrlic models.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_compress, _add_decompress, _add_info, _add_evaluate):
        add(commands)
    return parser


def _add_trust_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trust-pickle", action="store_true",
                        help="let this model file use Python's full unpickler (older checkpoints); that runs any "
                             "code the file carries, so only for files from a source you trust")


def _add_knob_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("knobs (the names the model declares; see `ctrlic info MODEL`)")
    group.add_argument("--set", action="append", default=[], metavar="KNOB=VALUE", help="set any declared knob")
    for option in SHORTCUTS:
        group.add_argument(f"--{option}", metavar="VALUE", help=f"same as --set {SHORTCUTS[option]}=VALUE")
    fine, medium, coarse = RATIO_KNOBS
    group.add_argument("--ratios", metavar="F,M,C",
                       help=f"granularity ratios: --set {fine}=F --set {medium}=M --set {coarse}=C")


def _add_output_options(parser: argparse.ArgumentParser) -> None:
    existing = parser.add_mutually_exclusive_group()
    existing.add_argument("--force", action="store_true", help="overwrite existing outputs (never an input)")
    existing.add_argument("--skip-existing", action="store_true",
                          help="keep outputs that exist and are complete (continue an interrupted batch)")
    parser.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                        help=f"largest image (width x height) to code or decode (default {DEFAULT_MAX_PIXELS:,} "
                             "= 8192x8192); bounds the memory a file can claim")


def _add_compress(commands: argparse._SubParsersAction) -> None:
    p = _command(commands, "compress", help="compress images into .ctl bitstreams",
                            description="Compress images (files, folders, globs) with a trained model.")
    p.add_argument("inputs", nargs="+", metavar="IN", help="image file(s), folder(s) or glob(s)")
    p.add_argument("output", metavar="OUT", help="output file (one input) or folder (several)")
    p.add_argument("--model", required=True, help="exported codec file or ctrlic training checkpoint")
    target = p.add_mutually_exclusive_group()
    target.add_argument("--bpp", type=float, help="search the knob for this bits per pixel (whole file)")
    target.add_argument("--psnr", type=float, help="search the knob for this PSNR (dB) of the decoded image")
    p.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE,
                   help=f"relative tolerance of the target (default {DEFAULT_TOLERANCE})")
    p.add_argument("--max-encodes", type=int, default=DEFAULT_MAX_ENCODES,
                   help=f"most encodes a target search may spend (default {DEFAULT_MAX_ENCODES})")
    p.add_argument("--tile", type=int, default=None,
                   help=f"code images larger than TILE pixels per side in tiles (default {DEFAULT_TILE}; 0: never)")
    p.add_argument("--entropy-path", choices=("auto", "native", "cpu64"), default="auto",
                   help="where entropy parameters are computed: cpu64 decodes the same on every device "
                        "(auto: cpu64 when the model has it)")
    _add_output_options(p)
    _add_trust_option(p)
    _add_padding_option(p)
    _add_scale_levels_option(p)
    _add_knob_options(p)
    p.set_defaults(command_module="compress")


def _add_scale_levels_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scale-levels", type=int, default=64,
                        help="Gaussian scale-table size (64: CompressAI's; e.g. 256 saves bits; recorded in the file)")


def _add_padding_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pad", default=None, metavar="[centre-]{replicate|zero}[:MULTIPLE]",
                        help="how images are padded to the model's multiple (default replicate, right/bottom; "
                             "the authors' scripts: e.g. centre-zero:128); recorded in the file")


def _add_decompress(commands: argparse._SubParsersAction) -> None:
    p = _command(commands, "decompress", help="decode .ctl bitstreams to PNG",
                            description="Decode bitstreams (files, folders, globs) to 8-bit RGB PNG.")
    p.add_argument("inputs", nargs="+", metavar="IN", help="bitstream file(s), folder(s) or glob(s)")
    p.add_argument("output", metavar="OUT.png", help="output PNG (one input) or folder (several)")
    p.add_argument("--model", help="the model that wrote them (default: the one `ctrlic compress` used "
                                   "with the same weights on this machine)")
    _add_output_options(p)
    _add_trust_option(p)
    p.set_defaults(command_module="decompress")


def _add_info(commands: argparse._SubParsersAction) -> None:
    p = _command(commands, "info", help="describe a bitstream or a model file",
                            description="Describe a .ctl bitstream or an exported codec / checkpoint.")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    _add_trust_option(p)
    p.set_defaults(command_module="info")


def _add_evaluate(commands: argparse._SubParsersAction) -> None:
    p = _command(commands, "eval", help="RD sweep of a model on a folder of images",
                            description="Code every image at the model's sweep knob values; write results.json, "
                                        "rd.png and per_image.csv (the same evaluation as the RD sweep).")
    p.add_argument("--model", required=True, help="exported codec file or ctrlic training checkpoint")
    p.add_argument("--data", required=True, help="folder of images")
    p.add_argument("--out", default="ctrlic-eval", help="output folder (default ./ctrlic-eval)")
    p.add_argument("--max-points", type=int, default=None, help="evaluate at most this many knob settings")
    p.add_argument("--crop", type=int, default=None, help="centre-crop images to this size")
    p.add_argument("--keep-bitstreams", action="store_true", help="keep the .ctl files under OUT/bitstreams")
    p.add_argument("--workers", type=int, default=1, help="coding processes on this machine (default 1)")
    p.add_argument("--shard", metavar="I/N", default=None,
                   help="code every N-th image from the I-th; run I = 0..N-1 (any order, any machine sharing OUT): "
                        "the last to finish writes results.json")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads per coding process (1: results bit-identical across worker and shard counts)")
    _add_trust_option(p)
    _add_padding_option(p)
    _add_scale_levels_option(p)
    p.set_defaults(command_module="evaluate")
