"""One local Slurm cluster per test session, for the tests that submit real jobs (all in this package,
so it stops when they are done rather than when the whole suite is)."""

from __future__ import annotations

import shutil

import pytest

from tests.slurm.cluster import LocalSlurm, start_cluster


@pytest.fixture(scope="package")
def slurm() -> LocalSlurm:
    """The running cluster; the tests that use it are skipped, with the reason, where it cannot run."""
    cluster, reason = start_cluster()
    if cluster is None:
        pytest.skip(f"no local Slurm cluster: {reason}")
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(cluster.state_dir, ignore_errors=True)
