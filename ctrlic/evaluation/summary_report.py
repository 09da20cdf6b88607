"""The multirun report: ``report.html`` in a sweep folder — the summary table (BD-rates on PSNR, MS-SSIM,
LPIPS and DISTS included), the combined RD plot, the best job, and links to each job's own report; for a
comparison of control schemes also the comparison table (one row per scheme, BD-rates against the anchors)."""

from __future__ import annotations

import html
import json
import shutil
from collections.abc import Sequence
from pathlib import Path

from ctrlic.evaluation.comparison import COLUMNS as COMPARISON_COLUMNS
from ctrlic.evaluation.report import REPORT, json_safe
from ctrlic.evaluation.report_assets import ASSETS
from ctrlic.evaluation.report_page import CSS

SCRIPT = r"""
const DATA = JSON.parse(document.getElementById('report-data').textContent);
function fmt(v) { return v === null || v === undefined ? '' : typeof v === 'number' ? String(Number(v.toPrecision(4))) : String(v); }
function sortable(id, rows, columns, links) {
  const table = document.getElementById(id), head = table.tHead.rows[0], body = table.tBodies[0];
  function fill(sorted) {
    body.replaceChildren(...sorted.map(r => { const tr = document.createElement('tr');
      columns.forEach(c => { const td = document.createElement('td');
        if (c === 'job' && links[r.job]) { const a = document.createElement('a'); a.href = links[r.job]; a.textContent = r.job; td.append(a); }
        else td.textContent = fmt(r[c]);
        tr.append(td); }); return tr; }));
  }
  columns.forEach(c => { const th = document.createElement('th'); th.textContent = c; head.append(th);
    th.addEventListener('click', () => { const dir = th.dataset.dir === 'asc' ? 'desc' : 'asc';
      [...head.cells].forEach(o => delete o.dataset.dir); th.dataset.dir = dir;
      fill([...rows].sort((a, b) => { const u = a[c], v = b[c];
        const k = u === null ? 1 : v === null ? -1 : (typeof u === 'number' ? u - v : String(u).localeCompare(String(v), undefined, {numeric: true}));
        return dir === 'asc' ? k : -k; })); }); });
  fill(rows);
}
sortable('summary', DATA.rows, DATA.columns, DATA.links);
if (DATA.comparison) sortable('comparison', DATA.comparison.rows, DATA.comparison.columns, {});
"""

COMPARISON = """<h2>Control schemes against {reference}</h2>
<p>One row per curve: the separately trained anchors joined into one curve, every other scheme's knob sweep.
<code>bd_rate_psnr</code> / <code>bd_rate_ms_ssim</code>: BD-rate (percent, negative is better) against the
anchors' curve; <code>bpp_span</code>: max / min bpp the knob reaches; <code>params_per_extra_point</code>: stored
parameters per extra rate point of the evaluated sweep (a whole model for separately trained anchors);
<code>train_s_with_base</code>: training seconds including the anchor the scheme starts from.</p>
<div class="table-wrap"><table id="comparison" class="sortable"><thead><tr></tr></thead><tbody></tbody></table></div>
"""


def write_summary_report(root: str | Path, rows: Sequence[dict], columns: Sequence[str], best: dict | None, by: str,
                         plot: Path | None, comparison: dict | None = None) -> Path:
    """``<root>/report.html`` for a multirun summary (and the comparison of ``evaluation.comparison``)."""
    root = Path(root)
    links = {r["job"]: f"{r['job']}/{REPORT}" for r in rows if (root / str(r["job"]) / REPORT).is_file()}
    image = ""
    if plot is not None and Path(plot).is_file():
        (root / ASSETS).mkdir(exist_ok=True)
        shutil.copyfile(plot, root / ASSETS / Path(plot).name)
        image = f'<img src="{ASSETS}/{Path(plot).name}" alt="RD curves of every job" style="max-width:100%">'
    if best is None:
        best_line = "best: none (no job has a BD-rate or a loss)"
    else:
        best_line = f"best by {by}: job {best['job']} ({best['overrides']})"
    compared = None if comparison is None else {"rows": comparison["rows"], "columns": list(COMPARISON_COLUMNS)}
    data = json.dumps(json_safe({"rows": list(rows), "columns": list(columns), "links": links,
                                 "comparison": compared}), allow_nan=False)
    data = data.replace("</", "<\\/")
    title = html.escape(f"multirun summary — {root.resolve().name}")
    section = COMPARISON.format(reference=html.escape(str(comparison["reference"]))) if comparison else ""
    text = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>{title}</title>
<style>{CSS}</style></head><body><h1>{title}</h1>
<p>{html.escape(best_line)}. BD columns: <code>bd_rate</code> on the sweep's metric against its reference;
<code>bd_rate_&lt;axis&gt;</code> (percent) and <code>bd_&lt;axis&gt;</code> (BD-quality in the axis' units;
LPIPS and DISTS: negative is better) on MS-SSIM (dB), LPIPS and DISTS. Empty: no number (see each job's
results.json for the reason). Click a job for its own report; click a column to sort.</p>
{section}<h2>Jobs</h2>
<div class="table-wrap"><table id="summary" class="sortable"><thead><tr></tr></thead><tbody></tbody></table></div>
<h2>RD curves</h2>{image or '<p class="muted">no job has an RD curve</p>'}
<script type="application/json" id="report-data">{data}</script>
<script>{SCRIPT}</script></body></html>
"""
    path = root / REPORT
    path.write_text(text, encoding="utf-8")
    return path
