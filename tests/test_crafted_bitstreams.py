"""Crafted bitstreams for every backbone family, decoded by the real ``ctrlic decompress``: each is refused
with exit code 2 and one line, none crashes the process or allocates beyond a 2 GiB heap cap, none writes.

Every file is a real bitstream of a tiny codec re-packed with ``bitstream.pack`` (so its CRC is valid)
after one change: the declared size (over the pixel limit, far above what the data holds, twice as wide),
the section count, a section emptied, cut or lengthened, sections swapped or replaced by random bytes,
header extras of the wrong type or out of range, a tile grid that does not add up. All run in ONE
process (``ctrlic_many``) with RLIMIT_DATA and a timeout; the unmodified files decode in the same run.
"""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import pytest

from ctrlic.codecs import bitstream
from tests.helpers_cli import FAMILIES, assert_one_error_line, ctrlic_many, family_codecs

#: heap cap of the decoding process: ten tiny models and their decoders fit in a fraction of it
DATA_LIMIT = 2 << 30
#: families whose image sections are rANS streams, whose end state the decoder checks
RANS = ("cheng2020_attn", "stf", "tcm", "tic", "tic_hyperprior")
#: families that decode through code another family already covers in full (TCM: STF's slice loop; TIC:
#: Cheng's wavefront loop) get the size and section-count cases only
SHARED_PATH = ("tcm", "tic")


@pytest.fixture(scope="module")
def families(tmp_path_factory) -> dict[str, dict[str, Path]]:
    return family_codecs(tmp_path_factory.getbasetemp() / "families")


def _variants(name: str, data: bytes) -> list[tuple[str, bitstream.Header, list[bytes], str]]:
    """(what changed, header, sections, a fragment the error must contain) for one family's bitstream."""
    header, sections = bitstream.unpack(data)

    def h(**kw):
        return dataclasses.replace(header, **kw)

    cases = [
        ("size over the pixel limit", h(height=100_000, width=100_000), sections, "more than the limit"),
        ("size far above the data", h(height=4096, width=4096), sections, ""),
        ("twice as wide", h(width=2 * header.width), sections, ""),
        ("a section dropped", header, sections[:-1], ""),
        ("a section added", header, [*sections, sections[-1]], ""),
    ]
    if name in SHARED_PATH:
        return cases
    # constriction's range decoder reads one word ahead, so one trailing word is invisible to it (and harmless:
    # the image decodes exactly); two are not. rANS streams end in a known state: one word is seen.
    extra = 4 if name in RANS else 8
    for i, s in enumerate(sections):
        def put(new: bytes, i: int = i) -> list[bytes]:
            return [new if j == i else old for j, old in enumerate(sections)]

        cases += [(f"section {i} emptied", header, put(b""), ""),
                  (f"section {i} {extra // 4} word(s) longer", header, put(s + bytes(extra)), "")]
        if len(s) > 4:
            cases += [(f"section {i} one word shorter", header, put(s[:-4]), ""),
                      (f"section {i} cut to an odd length", header, put(s[:-1]), "")]
    if name in RANS:  # rANS streams end in a known state: other data of the same length cannot pass
        rng = random.Random(0)
        cases += [("y and z swapped", header, sections[::-1], ""),
                  ("random y of the same length", header, [rng.randbytes(len(sections[0])), sections[1]], ""),
                  ("random z of the same length", header, [sections[0], rng.randbytes(len(sections[1]))], "")]
    return cases


def _extras_variants(data: bytes) -> list[tuple[str, bitstream.Header, list[bytes], str]]:
    """Header extras and fields the container accepts but the codec must refuse (checked in one shared place)."""
    header, sections = bitstream.unpack(data)

    def h(**kw):
        return dataclasses.replace(header, **kw)

    extras = header.extras
    return [
        ("side count a string", h(extras={**extras, "side": "x"}), sections, "not an integer"),
        ("side count true", h(extras={**extras, "side": True}), sections, "not an integer"),
        ("side count above the sections", h(extras={**extras, "side": 7}), sections, "side sections"),
        ("side count negative", h(extras={**extras, "side": -1}), sections, "side sections"),
        ("entropy path a number", h(extras={**extras, "ep": 5}), sections, "entropy path"),
        ("unknown entropy path", h(extras={**extras, "ep": "gpu"}), sections, "entropy path"),
        ("unknown extras field", h(extras={**extras, "zz": 1}), sections, "does not know (zz)"),
        ("one channel", h(channels=1), sections, "channels"),
        ("a knob the model lacks", h(knobs={"alpha": 0.5}), sections, "unknown knob"),
        ("tile a string", h(extras={**extras, "tile": "x"}), sections, "tile"),
        ("tile without its count", h(extras={**extras, "tile": [64]}), sections, "tile"),
        ("tile count a string", h(extras={**extras, "tile": [64, "2"]}), sections, "not an integer"),
        ("tile of 1 pixel", h(extras={**extras, "tile": [1, 2]}), sections, "multiple of 64"),
        ("tile count 0", h(extras={**extras, "tile": [64, 0]}), sections, "tiled bitstream"),
    ]


def _tiled_variants(data: bytes) -> list[tuple[str, bitstream.Header, list[bytes], str]]:
    header, sections = bitstream.unpack(data)
    tile = header.extras["tile"]

    def h(**kw):
        return dataclasses.replace(header, **kw)

    return [
        ("tiled: sections for 3 per tile", h(extras={**header.extras, "tile": [tile[0], 3]}), sections,
         "tiled bitstream"),
        ("tiled: one tile larger than the image", h(extras={**header.extras, "tile": [128, tile[1]]}), sections,
         "tiled bitstream"),
        ("tiled: 8192x8192 in 64-pixel tiles (16384 tiles)", h(height=8192, width=8192), sections,
         "tiled bitstream"),
        ("tiled: size over the limit", h(height=100_000, width=100_000), sections, "more than the limit"),
    ]


def test_crafted_bitstreams_are_refused_in_one_line(families, tmp_path):
    calls, expected = [], []
    for name in FAMILIES:
        files = families[name]
        model = files["model"]
        variants = _variants(name, files["whole"].read_bytes())
        if name == "cheng2020_attn":
            variants += _extras_variants(files["whole"].read_bytes()) + _tiled_variants(files["tiled"].read_bytes())
        for i, (what, header, sections, match) in enumerate(variants):
            crafted = tmp_path / f"{name}_{i}.ctl"
            crafted.write_bytes(bitstream.pack(header, sections))
            calls.append(["decompress", crafted, tmp_path / f"{name}_{i}.png", "--model", model])
            expected.append((f"{name}: {what}", crafted, match))
        for kind in ("whole", "tiled"):  # the untouched files decode in the same process
            calls.append(["decompress", files[kind], tmp_path / f"{name}_{kind}.png", "--model", model])
            expected.append((f"{name}: {kind}", None, None))
    # a raised pixel limit lets the header through to the grid arithmetic: 2.4 M tiles, none built
    header, sections = bitstream.unpack(families["cheng2020_attn"]["tiled"].read_bytes())
    crafted = tmp_path / "huge_grid.ctl"
    crafted.write_bytes(bitstream.pack(dataclasses.replace(header, height=100_000, width=100_000), sections))
    calls.append(["decompress", crafted, tmp_path / "huge_grid.png", "--model", families["cheng2020_attn"]["model"],
                  "--max-pixels", str(10 ** 11)])
    expected.append(("cheng2020_attn: 100000x100000 under a raised limit", crafted, "tiled bitstream"))

    outcomes = ctrlic_many(calls, home=tmp_path / "home", timeout=900, data_limit=DATA_LIMIT)
    for (what, crafted, match), outcome in zip(expected, outcomes, strict=True):
        if crafted is None:
            assert outcome.code == 0, (what, outcome.stderr)
            continue
        assert_one_error_line(outcome, match)
        assert f"'{crafted}'" in outcome.stderr, (what, outcome.stderr)  # names the file
    written = {p.name for p in tmp_path.glob("*.png")}
    assert written == {f"{n}_{k}.png" for n in FAMILIES for k in ("whole", "tiled")}
