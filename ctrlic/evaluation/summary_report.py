"""The multirun report: ``report.html`` in a sweep folder — the summary table (BD-rates on PSNR, MS-SSIM,
LPIPS and DISTS included), the combined RD plot, the best job, and links to each job's own report."""

from __future__ import annotations

import html
import json
import shutil
from collections.abc import Sequence
from pathlib import Path

from ctrlic.evaluation.report import REPORT, json_safe
from ctrlic.evaluation.report_assets import ASSETS
from ctrlic.evaluation.report_page import CSS

SCRIPT = r"""
const DATA = JSON.parse(document.getElementById('report-data').textContent);
function fmt(v) { return v === null || v === undefined ? '' : typeof v === 'number' ? String(Number(v.toPrecision(4))) : String(v); }
const table = document.getElementById('summary'), head = table.tHead.rows[0], body = table.tBodies[0];
function fill(rows) {
  body.replaceChildren(...rows.map(r => { const tr = document.createElement('tr');
    DATA.columns.forEach(c => { const td = document.createElement('td');
      if (c === 'job' && DATA.links[r.job]) { const a = document.createElement('a'); a.href = DATA.links[r.job]; a.textContent = r.job; td.append(a); }
      else td.textContent = fmt(r[c]);
      tr.append(td); }); return tr; }));
}
DATA.columns.forEach(c => { const th = document.createElement('th'); th.textContent = c; head.append(th);
  th.addEventListener('click', () => { const dir = th.dataset.dir === 'asc' ? 'desc' : 'asc';
    [...head.cells].forEach(o => delete o.dataset.dir); th.dataset.dir = dir;
    fill([...DATA.rows].sort((a, b) => { const u = a[c], v = b[c];
      const k = u === null ? 1 : v === null ? -1 : (typeof u === 'number' ? u - v : String(u).localeCompare(String(v), undefined, {numeric: true}));
      return dir === 'asc' ? k : -k; })); }); });
fill(DATA.rows);
"""


def write_summary_report(root: str | Path, rows: Sequence[dict], columns: Sequence[str], best: dict | None, by: str,
                         plot: Path | None) -> Path:
    """``<root>/report.html`` for a multirun summary; returns its path."""
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
    data = json.dumps(json_safe({"rows": list(rows), "columns": list(columns), "links": links}), allow_nan=False)
    data = data.replace("</", "<\\/")
    title = html.escape(f"multirun summary — {root.resolve().name}")
    text = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>{title}</title>
<style>{CSS}</style></head><body><h1>{title}</h1>
<p>{html.escape(best_line)}. BD columns: <code>bd_rate</code> on the sweep's metric against its reference;
<code>bd_rate_&lt;axis&gt;</code> (percent) and <code>bd_&lt;axis&gt;</code> (BD-quality in the axis' units;
LPIPS and DISTS: negative is better) on MS-SSIM (dB), LPIPS and DISTS. Empty: no number (see each job's
results.json for the reason). Click a job for its own report; click a column to sort.</p>
<div class="table-wrap"><table id="summary" class="sortable"><thead><tr></tr></thead><tbody></tbody></table></div>
<h2>RD curves</h2>{image or '<p class="muted">no job has an RD curve</p>'}
<script type="application/json" id="report-data">{data}</script>
<script>{SCRIPT}</script></body></html>
"""
    path = root / REPORT
    path.write_text(text, encoding="utf-8")
    return path
