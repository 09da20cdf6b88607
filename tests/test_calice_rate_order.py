"""CALICE's central property on a tiny STF: one model, rate falling as α rises (real bitstreams)."""

from __future__ import annotations

from ctrlic.codecs.build import load_codec
from tests.helpers_calice import kodak_crops


def test_bpp_falls_as_alpha_rises_on_overfitted_crops(tiny_calice):
    crops = kodak_crops()
    codec, anchor = load_codec(tiny_calice["model"]), load_codec(tiny_calice["anchor"])
    alphas = (0.0, 0.25, 0.5, 0.75, 1.0)
    total = {a: sum(len(codec.compress(c, {"alpha": a})) for c in crops) for a in alphas}
    assert total[0.0] == sum(len(anchor.compress(c)) for c in crops) + 4 * 10  # + the knob in the header
    assert total[0.0] > 2 * total[0.5], total
    assert all(total[a] > total[b] for a, b in zip(alphas, alphas[1:], strict=False)), total
