"""A checkpoint's own entropy tables: kept when they fit its weights, recorded in the header, rebuilt after training.

CompressAI's ``Cheng2020Attention`` stands in for the authors' model: its ``compress`` codes z with
whatever tables its entropy bottleneck holds, as the authors' code does. The tables the authors'
releases (CompressAI ≤ 1.2.4: STF's 1.1.6, TIC's 1.2.0 fork, CALICE's 1.2.4) build are written here
from reading their ``EntropyBottleneck.update``: the pmf is |σ(s·u) − σ(s·l)| with s = −sign(l + u).
"""

from __future__ import annotations

import pytest
import torch
from compressai.models import Cheng2020Attention

from ctrlic.codecs import bitstream
from ctrlic.codecs.bitstream import BitstreamError
from ctrlic.codecs.build import build_codec, export_codec, load_codec
from ctrlic.codecs.checkpoint import load_weights
from ctrlic.codecs.entropy import tables
from ctrlic.codecs.entropy.tables import EntropyTablesError

N = 32
BACKBONE = {"_target_": "ctrlic.codecs.backbones.cheng.Cheng2020Attn", "name": "cheng2020_attn",
            "size": "tiny", "sizes": {"tiny": {"N": N}}}
EB = "entropy_bottleneck"


@torch.no_grad()
def older_release_cdf(eb) -> torch.Tensor:
    """The entropy bottleneck's quantized CDFs as CompressAI 1.2.4 (and 1.1.x, TIC's 1.2.0) builds them."""
    medians = eb.quantiles[:, 0, 1]
    minima = torch.clamp(torch.ceil(medians - eb.quantiles[:, 0, 0]).int(), min=0)
    maxima = torch.clamp(torch.ceil(eb.quantiles[:, 0, 2] - medians).int(), min=0)
    pmf_start = medians - minima
    pmf_length = maxima + minima + 1
    max_length = pmf_length.max().item()
    samples = torch.arange(max_length)[None, :] + pmf_start[:, None, None]
    lower = eb._logits_cumulative(samples - 0.5, stop_gradient=True)
    upper = eb._logits_cumulative(samples + 0.5, stop_gradient=True)
    sign = -torch.sign(lower + upper)
    pmf = torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower))[:, 0, :]
    tail_mass = torch.sigmoid(lower[:, 0, :1]) + torch.sigmoid(-upper[:, 0, -1:])
    return eb._pmf_to_cdf(pmf, tail_mass, pmf_length, max_length)


@pytest.fixture(scope="module")
def authors(tmp_path_factory):
    """(CompressAI's model holding the older release's tables, its checkpoint file, the input image).

    The quantiles are fitted by the aux loss first, as in any trained model, so that they reach the
    tails where the two formulas disagree (271 entries here, and symbols of this z use some of them).
    """
    torch.manual_seed(2)
    model = Cheng2020Attention(N=N).eval()
    optimizer = torch.optim.Adam([model.entropy_bottleneck.quantiles], lr=0.5)
    for _ in range(100):
        optimizer.zero_grad()
        model.aux_loss().backward()
        optimizer.step()
    model.update(force=True)
    eb = model.entropy_bottleneck
    built = eb._quantized_cdf.clone()
    eb._quantized_cdf = older_release_cdf(eb)
    path = tmp_path_factory.mktemp("authors") / "checkpoint.pth.tar"
    torch.save({"state_dict": model.state_dict()}, path)
    x = torch.rand(1, 3, 128, 192, generator=torch.Generator().manual_seed(4))
    theirs = z_string(model, x)
    eb._quantized_cdf = built
    assert z_string(model, x) != theirs, "the two sets of tables must code this z differently"
    eb._quantized_cdf = older_release_cdf(eb)
    return model, path, x


def from_checkpoint(path) -> object:
    return build_codec({**BACKBONE, "checkpoint": str(path)})


def z_string(model, x) -> bytes:
    return model.compress(x)["strings"][1][0]


def test_a_checkpoints_own_tables_code_z_as_its_authors_code_does(authors):
    model, path, x = authors
    codec = from_checkpoint(path)
    data = codec.compress(x)
    header, sections = bitstream.parse(data)
    assert sections[-1] == z_string(model, x)
    assert header.extras[tables.EXTRAS_KEY] == codec.entropy_tables.split()[1]
    assert codec.decompress(data).shape == x.shape


def test_rebuild_codes_z_with_this_compressais_tables(authors):
    model, path, x = authors
    codec = from_checkpoint(path)
    codec.set_options(tables="rebuild")
    header, sections = bitstream.parse(codec.compress(x))
    assert tables.EXTRAS_KEY not in header.extras and codec.entropy_tables == "rebuilt"
    rebuilt = Cheng2020Attention(N=N).eval()
    rebuilt.load_state_dict(model.state_dict())
    rebuilt.update(force=True)
    assert sections[-1] == z_string(rebuilt, x) != z_string(model, x)


def test_a_decoder_follows_the_header_and_never_mixes_the_tables(authors):
    _, path, x = authors
    codec = from_checkpoint(path)
    kept = codec.compress(x)
    codec.set_options(tables="rebuild")
    rebuilt = codec.compress(x)
    decoder = from_checkpoint(path)  # holds both sets; codes with the checkpoint's by default
    assert decoder.decompress(rebuilt).equal(codec.decompress(rebuilt))
    assert decoder.decompress(kept).equal(codec.decompress(kept))
    state = {k: v for k, v in torch.load(path, weights_only=True)["state_dict"].items()
             if not k.endswith((*tables.TABLE_BUFFERS, "scale_table"))}  # the same weights, without tables
    bare = build_codec(BACKBONE)
    torch.nn.Module.load_state_dict(bare.backbone, state, strict=False)
    assert bare.fingerprint == codec.fingerprint
    with pytest.raises(BitstreamError, match="entropy tables of its checkpoint"):
        bare.decompress(kept)
    assert bare.decompress(rebuilt).equal(codec.decompress(rebuilt))


def test_an_exported_codec_keeps_the_checkpoints_tables(authors, tmp_path):
    _, path, x = authors
    codec = from_checkpoint(path)
    data = codec.compress(x)
    loaded = load_codec(export_codec(codec, tmp_path / "codec.pt"))
    assert loaded.entropy_tables == codec.entropy_tables != "rebuilt"
    assert loaded.decompress(data).equal(codec.decompress(data))


def test_fine_tuning_the_entropy_models_gives_fresh_tables(authors):
    model, path, x = authors
    codec = from_checkpoint(path)
    assert codec.entropy_tables != "rebuilt"
    codec.train()
    optimizer = torch.optim.SGD(codec.backbone.entropy_bottleneck.parameters(), lr=1e-2)
    z = torch.randn(2, N, 4, 4) * 3
    _, likelihoods = codec.backbone.entropy_bottleneck(z)
    (-likelihoods.log2().sum() + codec.backbone.aux_loss()).backward()
    optimizer.step()
    codec.eval()
    header, sections = bitstream.parse(codec.compress(x))
    assert tables.EXTRAS_KEY not in header.extras and codec.entropy_tables == "rebuilt"
    tuned = Cheng2020Attention(N=N).eval()
    tuned.load_state_dict(codec.backbone.state_dict())
    tuned.update(force=True)
    assert sections[-1] == z_string(tuned, x)


def test_a_training_checkpoint_saved_while_the_entropy_models_trained_reopens_with_fresh_tables(authors, tmp_path):
    from ctrlic.codecs.build import codec_from_weights
    from ctrlic.lightning_modules.checkpoint import codec_weights, open_codec
    from ctrlic.lightning_modules.rd import RDModule

    _, path, _ = authors
    module = RDModule(from_checkpoint(path))
    assert module.codec.tables_fit
    optimizer = torch.optim.SGD(module.codec.backbone.entropy_bottleneck.parameters(), lr=1e-4)
    module.codec.backbone.aux_loss().backward()
    optimizer.step()
    checkpoint = {"state_dict": module.state_dict(), "global_step": 1}
    module.on_save_checkpoint(checkpoint)
    assert checkpoint["ctrlic"]["tables_fit"] is False
    torch.save(checkpoint, tmp_path / "train.ckpt")
    assert open_codec(tmp_path / "train.ckpt").entropy_tables == "rebuilt"
    # what the record prevents: one small step left offsets and lengths alone, so the stale tables would pass
    stale = codec_from_weights(checkpoint["ctrlic"]["arch"], codec_weights(checkpoint), "state dict")
    assert stale.entropy_tables != "rebuilt"


def test_training_that_leaves_the_entropy_models_alone_keeps_the_tables(authors):
    """Adapters or a synthesis fine-tune do not touch what the tables are built from."""
    _, path, x = authors
    codec = from_checkpoint(path)
    kept = codec.entropy_tables
    codec.train()
    with torch.no_grad():
        codec.backbone.get_parameter("g_s.0.conv_a.0.conv.0.weight").mul_(1.01)
    codec.eval()
    assert codec.entropy_tables == kept != "rebuilt"
    assert tables.EXTRAS_KEY in bitstream.parse(codec.compress(x))[0].extras


def test_tables_loaded_after_a_prepare_are_taken(authors):
    model, path, _ = authors
    codec = build_codec(BACKBONE)
    codec.prepare()
    assert codec.entropy_tables == "rebuilt"
    load_weights(codec.backbone, model.state_dict())
    codec.prepare()
    assert codec.entropy_tables != "rebuilt"


def broken(state: dict, key: str, change) -> dict:
    state = {k: v.clone() for k, v in state.items()}
    change(state[f"{EB}.{key}"])
    return state


@pytest.mark.parametrize(("what", "key", "change"), [
    ("not increasing", "_quantized_cdf", lambda t: t[0, 1:3].copy_(t[0, 1:3].flip(0))),
    ("not ending at 2^16", "_quantized_cdf", lambda t: t[:, :].clamp_(max=60000)),
    ("length past the row", "_cdf_length", lambda t: t.add_(1000)),
    ("other offsets", "_offset", lambda t: t.sub_(1)),
])
def test_tables_that_do_not_fit_the_weights_are_rebuilt(authors, what, key, change, caplog):
    model, _, x = authors
    codec = build_codec(BACKBONE)
    load_weights(codec.backbone, broken(model.state_dict(), key, change))
    with caplog.at_level("INFO", logger="ctrlic"):
        codec.prepare()
    assert codec.entropy_tables == "rebuilt", what
    assert "entropy tables were rebuilt" in caplog.text
    assert codec.decompress(codec.compress(x)).shape == x.shape


def test_an_unknown_table_choice_is_a_user_error():
    codec = build_codec(BACKBONE)
    with pytest.raises(EntropyTablesError, match="checkpoint, rebuild"):
        codec.set_options(tables="newest")
