"""``make replicate``: run every method's ``benchmarks/replicate_*.py`` with its default settings.

The scripts are found by name, so a new method's replication joins by adding its file. Each runs in its
own process; a failure is reported and the others still run. ``--only calice lpm`` runs a subset,
``--list`` shows what would run.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from benchmarks.common import ROOT

PREFIX = "replicate_"


def discover() -> list[str]:
    """Method names (``replicate_<name>.py``) in benchmarks/, sorted."""
    return sorted(p.stem[len(PREFIX):] for p in (ROOT / "benchmarks").glob(f"{PREFIX}*.py"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", default=None, help="method names, e.g. calice lpm")
    parser.add_argument("--list", action="store_true", help="list the replications and exit")
    args = parser.parse_args(argv)
    methods = discover()
    if args.list:
        print("\n".join(methods))
        return 0
    if args.only:
        unknown = sorted(set(args.only) - set(methods))
        if unknown:
            parser.error(f"no replication named {', '.join(unknown)}; found: {', '.join(methods) or 'none'}")
        methods = [m for m in methods if m in args.only]
    failed = []
    for method in methods:
        start = time.perf_counter()
        print(f"=== replicate_{method}", flush=True)
        proc = subprocess.run([sys.executable, "-m", f"benchmarks.{PREFIX}{method}"], cwd=ROOT,
                              env={**os.environ, "PYTHONWARNINGS": "ignore"})
        status = "ok" if proc.returncode == 0 else f"FAILED (exit code {proc.returncode})"
        print(f"=== replicate_{method}: {status} in {(time.perf_counter() - start) / 60:.1f} min", flush=True)
        if proc.returncode != 0:
            failed.append(method)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
