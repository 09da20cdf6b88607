"""Every (backbone, control) pair: the ones that fit build, attach, run forward and round-trip at tiny size;
the ones that do not stop at build time with a one-line SchemeFitError naming the pair and why."""

from __future__ import annotations

import hydra
import pytest
import torch

from ctrlic.codecs.backbones.base import CAPABILITIES
from ctrlic.codecs.build import build_codec
from ctrlic.codecs.control.base import SchemeFitError
from ctrlic.errors import user_error
from tests import fitting_matrix
from tests.fitting_matrix import BACKBONES, CONTROLS, MATRIX, Fits, Misfit, compose_pair
from tests.helpers_schemes import kodak_crops

FITS = [pair for pair, entry in MATRIX.items() if isinstance(entry, Fits)]
MISFITS = [pair for pair, entry in MATRIX.items() if isinstance(entry, Misfit)]


def test_the_matrix_covers_every_pair():
    assert set(MATRIX) == {(b, c) for b in BACKBONES for c in CONTROLS}
    backbones = {p.stem for p in (fitting_matrix.ROOT / "conf" / "backbone").glob("*.yaml")}
    assert set(BACKBONES) == backbones
    assert len(FITS) >= 30 and len(MISFITS) >= 15


@pytest.mark.parametrize(("backbone", "control"), FITS)
def test_a_fitting_pair_builds_runs_forward_and_round_trips(backbone, control):
    entry = MATRIX[backbone, control]
    torch.manual_seed(0)
    codec = build_codec(*compose_pair(backbone, control))
    x = kodak_crops(64)
    codec.set_knobs(entry.knobs)
    out = codec(x)
    assert out["x_hat"].shape == x.shape and out["likelihoods"]
    data = codec.compress(x, entry.knobs)
    assert data.knobs == codec.control.resolve(entry.knobs)
    x_hat = codec.decompress(data)
    assert x_hat.shape == x.shape and torch.isfinite(x_hat).all()
    if codec.lossless:
        assert torch.equal(torch.round(x_hat * 255), torch.round(x * 255))


@pytest.mark.parametrize(("backbone", "control"), MISFITS)
def test_a_pair_that_does_not_fit_stops_at_build_time_naming_the_pair_and_why(backbone, control):
    with pytest.raises(Exception) as info:  # noqa: PT011 - Hydra may wrap what a constructor raises
        build_codec(*compose_pair(backbone, control))
    err = user_error(info.value)
    assert isinstance(err, SchemeFitError), repr(info.value)
    message = str(err)
    assert "\n" not in message and " does not fit backbone " in message
    for capability in MATRIX[backbone, control].needs:
        assert CAPABILITIES[capability] in message


def test_the_declared_misfits_are_exactly_the_missing_capabilities():
    """What the list says a pair lacks is what the backbone class does not declare and the scheme requires."""
    for (backbone, control), entry in MATRIX.items():
        if isinstance(entry, Misfit):
            backbone_cfg, control_cfg = compose_pair(backbone, control)
            scheme = hydra.utils.get_class(control_cfg["_target_"])
            model = hydra.utils.get_class(backbone_cfg["_target_"])
            assert tuple(sorted(scheme.requires - model.capabilities)) == entry.needs, (backbone, control)


def test_the_docs_table_is_rendered_from_this_list():
    page = fitting_matrix.PAGE
    assert page.is_file(), f"{page} is missing: run python -m tests.fitting_matrix --write"
    assert page.read_text() == fitting_matrix.render(), (
        "docs/fitting_matrix.md is stale: run python -m tests.fitting_matrix --write")
