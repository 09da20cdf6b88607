"""Rate-distortion plots (PNG) of our curves beside published reference curves.

Uses ``matplotlib.figure.Figure`` directly, so no pyplot state or GUI backend is touched.
"""

import os
from collections import Counter
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from ctrlic.evaluation.references import curve_kind

_LABELS = {
    "psnr-rgb": "PSNR (RGB) [dB]",
    "ms-ssim-rgb": "MS-SSIM (RGB) [dB, −10·log10(1−MS-SSIM)]",
    "ms-ssim-db-rgb": "MS-SSIM (RGB) [dB, −10·log10(1−MS-SSIM)]",
}


def axis_label(metric: str) -> str:
    """Y-axis label for ``metric``, naming the unit it is plotted in."""
    return _LABELS.get(metric, metric)


def to_plot_units(metric: str, values: list[float] | np.ndarray) -> np.ndarray:
    """Values as plotted: linear MS-SSIM becomes dB (-10·log10(1-x)) so high-quality points spread out."""
    values = np.asarray(values, dtype=float)
    if metric != "ms-ssim-rgb":
        return values
    with np.errstate(divide="ignore", invalid="ignore"):
        return -10.0 * np.log10(1.0 - values)


def _xy(curve: dict, metric: str, rate_key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Finite (bpp, quality) points of a curve sorted by rate, plus the indices of the points kept."""
    x = np.asarray(curve["results"][rate_key], dtype=float)
    y = to_plot_units(metric, curve["results"][metric])
    index = np.flatnonzero(np.isfinite(x) & np.isfinite(y))
    index = index[np.argsort(x[index], kind="stable")]
    return x[index], y[index], index


def _x_limit(ours: list[np.ndarray], refs: list[np.ndarray]) -> float | None:
    """Right x-limit: 1.5x our largest rate, widened so the low end of the references stays in view.

    None (autoscale) when there are no curves of ours to centre on.
    """
    our_max = max((float(x.max()) for x in ours if x.size), default=0.0)
    if our_max <= 0:
        return None
    # Where most references reach their second point: keeps them readable next to tiny-rate curves.
    second = [float(np.sort(x)[min(1, x.size - 1)]) for x in refs if x.size]
    return max(1.5 * our_max, 1.2 * float(np.median(second))) if second else 1.5 * our_max


def _draw(ax, curves: list[dict], metric: str, refs: list[dict], title: str | None, columns: int) -> None:
    """Draw our curves over the references on one axes (see ``plot_rd``)."""
    our_x, visible_y = [], []

    for curve in curves:
        results = curve["results"]
        rate_key = "bpp" if "bpp" in results else "bpp_est"
        if rate_key not in results or metric not in results:
            raise ValueError(
                f"curve {curve.get('name', '?')!r} has no 'bpp'/'bpp_est' or no {metric!r} to plot"
            )
        x, y, index = _xy(curve, metric, rate_key)
        knob = curve.get("meta", {}).get("knob")
        label = curve["name"] + (" (estimated bpp)" if rate_key == "bpp_est" else "")
        if knob in results:
            label += f" [{knob}]"
        (line,) = ax.plot(x, y, "-o", linewidth=2, markersize=5, label=label, zorder=3)
        if knob in results:
            for xi, yi, i in zip(x, y, index, strict=True):
                ax.annotate(
                    f"{results[knob][i]:.3g}",
                    (xi, yi),
                    xytext=(4, -10),
                    textcoords="offset points",
                    fontsize=7,
                    color=line.get_color(),
                    alpha=0.7,
                )
        our_x.append(x)
        visible_y.append(y)

    names = Counter(r["name"] for r in refs)
    ref_points = []
    for i, ref in enumerate(refs, start=len(curves)):
        x, y, _ = _xy(ref, metric, "bpp")
        classical = ref.get("kind", curve_kind(ref["name"])) == "classical"
        label = ref["file"] if names[ref["name"]] > 1 and "file" in ref else ref["name"]
        ax.plot(
            x,
            y,
            "--" if classical else ":",
            linewidth=1,
            color=f"C{i % 10}",
            alpha=0.8,
            label=label,
            zorder=2,
        )
        ref_points.append((x, y))

    x_max = _x_limit(our_x, [x for x, _ in ref_points])
    if x_max is not None:
        ax.set_xlim(0, x_max)
        visible_y += [y[x <= x_max] for x, y in ref_points]
        shown = np.concatenate(visible_y)
        if shown.size:
            # dB axes keep at least ±0.5 dB; unitless scores (LPIPS, DISTS) a margin of their own size
            pad = max(0.05 * float(np.ptp(shown)), 0.5 if metric in _LABELS else 1e-3)
            ax.set_ylim(float(shown.min()) - pad, float(shown.max()) + pad)

    ax.set_xlabel("bits per pixel [bpp]")
    ax.set_ylabel(axis_label(metric))
    if title:
        ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if columns:
        ax.legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.01, 1.0), ncol=columns)
    elif curves or refs:
        ax.legend(fontsize="small", loc="best")


def _with_metric(references: list[dict] | None, metric: str) -> list[dict]:
    return [r for r in references or [] if metric in r["results"] and "bpp" in r["results"]]


def _save(fig: Figure, out_path: str | os.PathLike) -> Path:
    fig.tight_layout()
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, format="png")
    return out_path


def plot_rd(
    curves: list[dict],
    out_path: str | os.PathLike,
    metric: str = "psnr-rgb",
    references: list[dict] | None = None,
    title: str | None = None,
) -> Path:
    """Plot our curves (solid, markers) over reference curves (thin; classical dashed, learned dotted) as PNG.

    Curves are CompressAI-format dicts; x is "bpp" (or "bpp_est" when a curve has no real bitstream rate).
    When ``meta["knob"]`` names a result key, each point is annotated with that knob's value. References
    without ``metric`` are skipped; the x-axis is clipped around our curves (see ``_x_limit``).
    """
    refs = _with_metric(references, metric)
    entries = len(curves) + len(refs)
    # Beyond a dozen entries the legend goes to the right of the axes, in columns of up to 30.
    columns = 0 if entries <= 12 else -(-entries // 30)
    fig = Figure(figsize=(8 + 3.2 * columns, 6), dpi=120)
    _draw(fig.add_subplot(), curves, metric, refs, title, columns)
    return _save(fig, out_path)


def plot_rd_panels(
    curves: list[dict],
    out_path: str | os.PathLike,
    metrics: list[str],
    references: list[dict] | None = None,
    title: str | None = None,
) -> Path:
    """One panel per metric (e.g. PSNR, LPIPS, DISTS), each with every curve of ``curves`` (a family).

    Metrics no curve reports are left out; references are drawn in the panels of the metrics they have.
    """
    shown = [m for m in metrics if any(m in c["results"] for c in curves)]
    if not shown:
        raise ValueError(f"no curve reports any of {metrics}; nothing to plot")
    fig = Figure(figsize=(6.5 * len(shown), 5.5), dpi=120)
    for n, metric in enumerate(shown):
        ax = fig.add_subplot(1, len(shown), n + 1)
        _draw(ax, [c for c in curves if metric in c["results"]], metric, _with_metric(references, metric),
              None, 0)
    if title:
        fig.suptitle(title)
    return _save(fig, out_path)


def split_family(results: dict, knob: str) -> list[dict]:
    """A results dict whose points span a grid → one curve per value of ``knob`` (a curve family).

    Each curve keeps the points with that value in their order, is named ``"<name> <knob>=<value>"``
    and annotates its points with the remaining knob (``meta.knob``) when there is one.
    """
    values = results["results"].get(knob)
    if values is None:
        raise ValueError(f"results {results['name']!r} have no {knob!r} values to split into curves")
    others = [k for k in results.get("meta", {}).get("knobs", []) if k != knob]
    curves = []
    for value in dict.fromkeys(values):
        keep = [i for i, v in enumerate(values) if v == value]
        curve = {"name": f"{results['name']} {knob}={value:g}", "description": results["description"],
                 "results": {k: [vals[i] for i in keep] for k, vals in results["results"].items()},
                 "meta": {knob: value, **({"knob": others[0]} if len(others) == 1 else {})}}
        curves.append(curve)
    return curves

