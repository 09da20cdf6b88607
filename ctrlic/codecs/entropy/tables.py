"""The entropy models' CDF tables: the checkpoint's own, or rebuilt from the weights by this CompressAI.

CompressAI's ``update(force=True)`` rebuilds every table with the formula of the installed release.
The releases the authors trained and evaluated with (STF's vendored 1.1.6, TIC's 1.2.0 fork,
CALICE's 1.2.4) compute the entropy bottleneck's pmf as |σ(s·u) − σ(s·l)| with s = −sign(l + u),
1.2.8 as σ(u) − σ(l), so some entries differ, and a z string coded with one set does not decode with
the other. So each entropy model whose checkpoint brings tables built from its weights keeps them,
and a bitstream coded with them records the digest of the whole set (``EXTRAS_KEY``), so that a
decoder never codes with another set.

"Built from its weights" is checked on what every release derives the same way: the model's offsets,
lengths and scale table must equal the rebuilt ones, and every row must be a valid CDF (which also
keeps hostile tables away from the rANS coder). Entry values are not compared: the two formulas differ
by more than any bound that would still notice slightly changed weights (the escape symbol of one
channel: 1 vs 188 / 65536 on the same weights), so changes made here are tracked instead: once the
entropy models' own weights change (``source_digest``), only rebuilt tables are used.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import torch
from compressai.entropy_models import EntropyModel, GaussianConditional
from torch import Tensor, nn

from ctrlic.errors import UserError

#: the buffers ``update()`` builds in every CompressAI entropy model (excluded from the weights fingerprint)
TABLE_BUFFERS = ("_quantized_cdf", "_offset", "_cdf_length")
#: container extras key: the digest of the checkpoint's own tables a bitstream was coded with
#: (absent: the tables this CompressAI rebuilds from the weights)
EXTRAS_KEY = "tables"

#: which tables the encoder codes with: the checkpoint's own when they can be kept, or always rebuilt
CHOICES = ("checkpoint", "rebuild")

#: ``"<module>.<buffer>"`` → tensor, for every entropy model of a backbone
Tables = dict[str, Tensor]


class EntropyTablesError(UserError):
    """An entropy-table choice that does not exist."""


def check_choice(choice: str) -> str:
    """Validate the ``tables`` coding option."""
    if choice not in CHOICES:
        raise EntropyTablesError(f"unknown entropy-table choice {choice!r}; choose one of {', '.join(CHOICES)}")
    return choice


def _buffers(module: EntropyModel) -> tuple[str, ...]:
    """The buffers that make up one entropy model's tables (the Gaussian's scale table included)."""
    return (*TABLE_BUFFERS, "scale_table") if isinstance(module, GaussianConditional) else TABLE_BUFFERS


def snapshot(backbone: nn.Module) -> Tables:
    """A copy of the tables every entropy model of ``backbone`` holds now (on the CPU)."""
    return {f"{name}.{buf}": getattr(module, buf).detach().cpu().clone()
            for name, module in backbone.named_modules() if isinstance(module, EntropyModel)
            for buf in _buffers(module)}


def install(backbone: nn.Module, tables: Tables) -> None:
    """Put ``tables`` into the entropy models (copies, on each model's device)."""
    for key, value in tables.items():
        owner, _, buf = key.rpartition(".")
        module = backbone.get_submodule(owner)
        setattr(module, buf, value.clone().to(getattr(module, buf).device))


def digest(tables: Tables) -> str:
    """8 hex digits of SHA-256 over the tables' names, dtypes, shapes and values."""
    h = hashlib.sha256()
    for key in sorted(tables):
        value = tables[key].contiguous()
        h.update(f"{key}\0{value.dtype}\0{tuple(value.shape)}\0".encode())
        h.update(value.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()[:8]


def equal(a: Tables, b: Tables) -> bool:
    return a.keys() == b.keys() and all(a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in a)


def _valid_cdfs(cdf: Tensor, lengths: Tensor, precision: int) -> bool:
    """Every row a CDF the rANS coder can use: 0 first, strictly increasing, 2^precision at its length."""
    if cdf.dim() != 2 or lengths.dim() != 1 or len(lengths) != len(cdf) or not len(cdf):
        return False
    lengths = lengths.long()
    if bool((lengths < 2).any()) or bool((lengths > cdf.shape[1]).any()):
        return False
    cdf = cdf.long()
    inside = torch.arange(1, cdf.shape[1])[None] < lengths[:, None]
    increasing = bool(((cdf[:, 1:] > cdf[:, :-1]) | ~inside).all())
    last = cdf.gather(1, (lengths - 1)[:, None]).squeeze(1)
    return increasing and bool((cdf[:, 0] == 0).all()) and bool((last == 1 << precision).all())


def unusable(stored: Tables, built: Tables, precision: int) -> str | None:
    """Why one entropy model's ``stored`` tables may not be kept instead of ``built`` (its rebuild from
    the same weights), or None: they must be valid CDFs laid out as the weights give them, with the same
    offsets, lengths and scale table (what every CompressAI release derives from the quantiles alike)."""
    for key, want in built.items():
        have = stored[key]
        if have.shape != want.shape or have.dtype != want.dtype:
            return f"{key} has shape {tuple(have.shape)}, the weights give {tuple(want.shape)}"
        if not key.endswith("._quantized_cdf") and not torch.equal(have, want):
            return f"{key} differs from the one the weights give: built for other weights"
    cdf = next(k for k in built if k.endswith("._quantized_cdf"))
    if not _valid_cdfs(stored[cdf], stored[cdf.replace("._quantized_cdf", "._cdf_length")], precision):
        return f"{cdf} holds rows that are not valid CDFs"
    return None


def source_digest(backbone: nn.Module) -> str:
    """Digest of what the tables are built from: the entropy models' own weights, tables excluded."""
    state = {f"{name}.{key}": value.detach().cpu()
             for name, module in backbone.named_modules() if isinstance(module, EntropyModel)
             for key, value in module.state_dict().items() if key not in (*TABLE_BUFFERS, "scale_table")}
    return digest(state)


@dataclass
class EntropyTables:
    """Both sets of tables of one backbone: ``built`` (this CompressAI, from the weights) and ``stored``,
    where the entropy models whose checkpoint tables fit the weights keep them (None: no such model,
    or the kept tables equal the rebuilt ones)."""

    built: Tables
    source: str  # ``source_digest`` of the entropy models the tables were built from
    stored: Tables | None = None
    note: str | None = None  # why a checkpoint's tables were not kept (None: kept, or there were none)
    stored_digest: str | None = field(init=False)

    def __post_init__(self) -> None:
        self.stored_digest = digest(self.stored) if self.stored is not None else None


def _by_model(t: Tables) -> dict[str, Tables]:
    """The tables grouped by the entropy model that holds them."""
    groups: dict[str, Tables] = {}
    for key, value in t.items():
        groups.setdefault(key.rpartition(".")[0], {})[key] = value
    return groups


def build(backbone: nn.Module, candidate: Tables | None) -> EntropyTables:
    """Rebuild the tables (``backbone.update(force=True)``) and decide, per entropy model, whether the
    ``candidate`` (the checkpoint's tables, or None) is kept.

    Leaves the rebuilt tables installed. A model whose candidate tables are empty is rebuilt quietly,
    one whose tables do not fit (``unusable``) with a note; ``stored`` is the resulting set when some
    candidate tables were kept and they differ from the rebuild.
    """
    backbone.update(force=True)
    built, source = snapshot(backbone), source_digest(backbone)
    if candidate is None or candidate.keys() != built.keys():
        return EntropyTables(built, source)
    precision = {name: module.entropy_coder_precision for name, module in backbone.named_modules()
                 if isinstance(module, EntropyModel)}
    chosen, notes = {}, []
    for owner, want in _by_model(built).items():
        have = {key: candidate[key] for key in want}
        if all(v.numel() == 0 for v in have.values()):
            chosen.update(want)  # the checkpoint brought none for this model
        elif (reason := unusable(have, want, precision[owner])) is not None:
            chosen.update(want)
            notes.append(reason)
        else:
            chosen.update(have)
    note = f"the checkpoint's entropy tables were rebuilt: {'; '.join(notes)}" if notes else None
    return EntropyTables(built, source, stored=None if equal(chosen, built) else chosen, note=note)
