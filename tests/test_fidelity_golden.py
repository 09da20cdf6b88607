"""Golden files from the authors' code: our backbones, loaded strictly with the weights their models ran
with, give their outputs within the tolerances each file states.

``tests/expected/fidelity/<method>/`` is written by ``benchmarks/fidelity/<method>.py``, run by hand
with the authors' repository checked out (commit and command in each ``expected.json``); the
scripts never run here. ``tables.pt`` holds the CDF tables their code coded with; loaded with the
weights, they are kept as a checkpoint's own tables are (``codecs/entropy/tables.py``). Cheng2020-attn is compared live with ``compressai.zoo`` in
``test_backbone_cheng.py``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import Tensor, nn

from ctrlic.codecs.backbones.grain_masks import entropy_of, pixel_kernel
from ctrlic.codecs.backbones.stf import SymmetricalTransFormer
from ctrlic.codecs.backbones.tcm import TCM
from ctrlic.codecs.backbones.tic import TIC
from ctrlic.codecs.backbones.vqgan import VQGAN
from ctrlic.codecs.checkpoint import load_weights
from ctrlic.codecs.control.alpha_adapters import AlphaAdapters
from ctrlic.codecs.entropy import tables
from tests.conftest import ROOT

EXPECTED = ROOT / "tests" / "expected" / "fidelity"
BACKBONES = {"stf": SymmetricalTransFormer, "tcm": TCM, "tic": TIC, "vqgan": VQGAN}
#: one weight of each backbone's synthesis transform (decoder), for the test that the comparison can fail
SYNTHESIS_WEIGHT = {"stf": "syn_layers.3.blocks.1.mlp.fc2.weight", "tcm": "g_s.7.0.weight",
                    "tic": "g_s6.weight", "calice_stf": "syn_layers.0.blocks.0.mlp.fc1.lora.W_b",
                    "calice_tcm": "g_s.0.subpel_conv.adapter.conv2.weight",
                    "control_gic": "decoder.conv_out.weight"}


@dataclass
class Case:
    """One golden case: what the authors' code was given and what it returned."""

    method: str
    expected: dict
    weights: dict[str, Tensor]
    x: Tensor
    outputs: dict[str, Tensor]
    tables: dict[str, Tensor]  # the CDF tables their code coded with (empty where none were stored)


def load_case(method: str) -> Case:
    folder = EXPECTED / method
    crop = load_file(folder / "input.safetensors")["crop"]
    theirs = load_file(folder / "tables.safetensors") if (folder / "tables.safetensors").is_file() else {}
    return Case(method, json.loads((folder / "expected.json").read_text()),
                load_file(folder / "weights.safetensors"), (crop.to(torch.float32) / 255)[None],
                load_file(folder / "outputs.safetensors"), theirs)


def md5_of(t: Tensor) -> str:
    """As the scripts' ``summary``: md5 of the raw bytes, floats with −0 written as +0."""
    raw = t.detach().cpu().contiguous()
    return hashlib.md5((raw + 0 if raw.is_floating_point() else raw).numpy().tobytes()).hexdigest()


def build(case: Case, own_tables: bool = True) -> tuple[nn.Module, AlphaAdapters | None]:
    """Our backbone (and α-adapters) as the case names them, with its weights loaded strictly, and
    their CDF tables kept as the codec keeps a checkpoint's (``own_tables=False``: rebuilt here)."""
    ours = case.expected["ours"]
    backbone = BACKBONES[ours["backbone"]](**ours["kwargs"]).eval()
    scheme = None
    if "control" in ours:
        scheme = AlphaAdapters(**ours["control"])
        scheme.attach(backbone)
    weights = dict(case.weights)
    if "attn_masks" in case.expected:  # not stored: a function of the geometry, checked against theirs
        own = {k: v for k, v in backbone.state_dict().items() if k.endswith("attn_mask")}
        assert set(own) == set(case.expected["attn_masks"])
        assert all(md5_of(v) == case.expected["attn_masks"][k]["md5"] for k, v in own.items())
        weights.update(own)
    weights.update(case.tables)
    assert load_weights(backbone, weights, key_map=backbone.checkpoint_key_map) == []
    kept = tables.build(backbone, tables.snapshot(backbone) if own_tables else None)
    if kept.stored is not None:
        tables.install(backbone, kept.stored)
    assert kept.note is None, kept.note
    return backbone, scheme


def close(name: str, ours: Tensor, theirs: Tensor, tol: dict, problems: list[str]) -> None:
    try:
        torch.testing.assert_close(ours, theirs, atol=tol["atol"], rtol=tol["rtol"])
    except AssertionError:
        problems.append(f"{name}: max |diff| {(ours - theirs).abs().max().item():.3g} > atol {tol['atol']}")


def compare_image(name: str, image: Tensor, case: Case, prefix: str, problems: list[str]) -> None:
    """A whole image, or its central window and 8×8-pooled copy when the case stored those."""
    tol = case.expected["tolerances"][name]
    window = case.expected.get("window")
    if window is None:
        close(name, image, case.outputs[f"{prefix}{name}"], tol, problems)
        return
    h, w = image.shape[-2:]
    top, left = (h - window) // 2, (w - window) // 2
    close(f"{name} window", image[..., top:top + window, left:left + window],
          case.outputs[f"{prefix}{name}_window"], tol, problems)
    close(f"{name} pooled", F.avg_pool2d(image, 8), case.outputs[f"{prefix}{name}_pooled"], tol, problems)


@torch.no_grad()
def lic_mismatches(backbone: nn.Module, case: Case, prefix: str = "", results: dict | None = None) -> list[str]:
    """Forward outputs, likelihoods, estimated bits, the payload and the decoded image against theirs."""
    results = results or case.expected
    tol, problems = case.expected["tolerances"], []
    out = backbone(case.x)
    compare_image("forward_x_hat", out["x_hat"], case, prefix, problems)
    for key in ("y", "z"):
        likelihoods = out["likelihoods"][key]
        close(f"likelihoods {key}", likelihoods, case.outputs[f"{prefix}likelihoods_{key}"], tol["likelihoods"],
              problems)
        bits = float(-torch.log2(likelihoods.double()).sum())
        theirs = results["payload"]["estimated_bits"][key]
        if abs(bits - theirs) > tol["estimated_bits"]["rtol"] * theirs:
            problems.append(f"estimated bits {key}: {bits:.4f} vs their {theirs:.4f}")
    sections = dict(zip(("y", "z"), backbone.encode(case.x), strict=True))
    for key, check in case.expected["payload_check"].items():
        if key not in ("y", "z"):
            continue
        theirs = results["payload"][key]
        if len(sections[key]) != theirs["bytes"]:
            problems.append(f"{key} string: {len(sections[key])} bytes vs their {theirs['bytes']}")
        elif check == "md5" and hashlib.md5(sections[key]).hexdigest() != theirs["md5"]:
            problems.append(f"{key} string: same length, other bytes")
    decoded = backbone.decode([sections["y"], sections["z"]], *case.x.shape[-2:])
    compare_image("decoded_x_hat", decoded, case, prefix, problems)
    return problems


@torch.no_grad()
def control_gic_mismatches(backbone: VQGAN, case: Case) -> list[str]:
    """Entropy maps, the official router's masks, the indices, the decoder output and our own decode."""
    tol, problems = case.expected["tolerances"], []
    x_signed = case.x * 2 - 1
    kernel = pixel_kernel(x_signed, backbone.entropy)
    for patch in (16, 8):
        close(f"entropy {patch}", entropy_of(kernel, patch)[0], case.outputs[f"entropy_p{patch}"][0], tol["entropy"],
              problems)
    for k, setting in enumerate(case.expected["cases"]):
        ratios = tuple(setting["ratios"][g] for g in ("fine", "medium", "coarse"))
        backbone.ratios = ratios
        masks = backbone.grain_masks(x_signed)
        for grain, mask in zip(("coarse", "medium", "fine"), masks, strict=True):
            if not torch.equal(mask[0, 0], case.outputs[f"case{k}_mask_{grain}"]):
                problems.append(f"{ratios}: {grain} mask differs")
        _, _, indices = backbone.quantize_image(x_signed, masks)
        if not torch.equal(indices[0], case.outputs[f"case{k}_indices"]):
            problems.append(f"{ratios}: {int((indices[0] != case.outputs[f'case{k}_indices']).sum())} indices differ")
        theirs = case.outputs[f"case{k}_decoder_output"]
        close(f"{ratios} decoder output", backbone.decode_codes(backbone.quantize.lookup(indices), masks)[0], theirs,
              tol["decoder_output"], problems)
        decoded = backbone.decode(backbone.encode(case.x), *case.x.shape[-2:])  # our bitstream, decoded
        close(f"{ratios} decoded image", decoded[0], ((theirs + 1) / 2).clamp(0, 1),
              {"atol": tol["decoder_output"]["atol"] / 2, "rtol": 0}, problems)
    return problems


def mismatches(method: str, case: Case, backbone: nn.Module, scheme: AlphaAdapters | None) -> list[str]:
    if method == "control_gic":
        return control_gic_mismatches(backbone, case)
    if scheme is None:
        return lic_mismatches(backbone, case)
    problems = []
    for k, setting in enumerate(case.expected["cases"]):
        scheme.apply({"alpha": setting["alpha"]})
        problems += [f"α={setting['alpha']}: {p}" for p in lic_mismatches(backbone, case, f"case{k}_", setting)]
    return problems


METHODS = ["stf", "tcm", "tic", "calice_stf", "calice_tcm", "control_gic"]


@pytest.mark.parametrize("method", METHODS)
def test_golden_case_names_the_authors_commit_and_stays_small(method):
    expected = json.loads((EXPECTED / method / "expected.json").read_text())
    assert len(expected["commit"]) == 40 and expected["repository"] and expected["command"]
    assert (EXPECTED / method / "weights.safetensors").stat().st_size < 1_500_000


@pytest.mark.parametrize("method", METHODS)
def test_our_backbone_matches_the_authors_code(method):
    case = load_case(method)
    backbone, scheme = build(case)
    if method == "control_gic":
        counters = sorted((k for k in case.weights if k.startswith("quantize.embedding_counter.")),
                          key=lambda k: int(k.rsplit(".", 1)[1]))
        assert torch.equal(backbone.quantize.counts, torch.stack([case.weights[k].float() for k in counters])
                           .round().to(torch.int64).flatten())
    assert mismatches(method, case, backbone, scheme) == []


@pytest.mark.parametrize("method", METHODS)
def test_changing_one_synthesis_weight_fails_the_comparison(method):
    case = load_case(method)
    backbone, scheme = build(case)
    with torch.no_grad():
        backbone.get_parameter(SYNTHESIS_WEIGHT[method]).view(-1)[0] += 0.01
    problems = mismatches(method, case, backbone, scheme)
    assert any("x_hat" in p or "decoder output" in p for p in problems), problems


def test_tics_z_string_is_theirs_only_with_their_tables():
    """Their CompressAI 1.2.0 fork builds other entropy-bottleneck tables than 1.2.8 from the same weights."""
    case = load_case("tic")
    assert case.expected["payload_check"]["z"] == "md5"
    assert lic_mismatches(build(case)[0], case) == []
    assert lic_mismatches(build(case, own_tables=False)[0], case) == ["z string: same length, other bytes"]


def test_golden_cases_are_where_the_scripts_write_them():
    scripts = {p.stem for p in (ROOT / "benchmarks" / "fidelity").glob("*.py")} - {"__init__", "common"}
    assert scripts == set(METHODS) == {p.name for p in EXPECTED.iterdir() if p.is_dir()}
    assert all(Path(ROOT / "benchmarks" / "fidelity" / f"{m}.py").read_text().count("never by CI") for m in METHODS)


def test_exact_router_gives_other_masks_than_the_authors():
    case = load_case("control_gic")
    backbone, _ = build(case)
    backbone.router = "exact"
    assert any("mask differs" in p for p in control_gic_mismatches(backbone, case))
