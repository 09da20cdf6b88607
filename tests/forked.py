"""Run ``run.py`` and the ``ctrlic`` command as the user does, each call in a process of its own, forked from a
server that has already imported torch, Lightning, CompressAI, Hydra and ctrlic.

A fresh ``python run.py`` spends ~10 s on 2 cores importing before it reads its first override; a fork of a
process that has done those imports (and run no torch op, so no thread pool is copied half-way) starts in
milliseconds. Each call still gets its own process: Hydra's global state, logging set-up, environment, working
directory, signal handlers, rlimits and exit code are its own, and its output goes through file descriptors 1
and 2, so what a subprocess it starts (DDP workers, submitit jobs) prints is captured too.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import runpy
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: imported once by the fork server; every call's process starts with them loaded
PRELOAD = ("torch", "lightning", "compressai", "hydra", "omegaconf", "ctrlic.tasks.train", "ctrlic.tasks.evaluate",
           "ctrlic.cli")

#: a script path, or a module-level function called with the argument list that returns an exit code
Entry = str | Callable[[list[str]], int | None]

_context: multiprocessing.context.ForkServerContext | None = None


def _server() -> multiprocessing.context.ForkServerContext:
    global _context
    if _context is None:
        _context = multiprocessing.get_context("forkserver")
        _context.set_forkserver_preload(list(PRELOAD))
    return _context


def _redirect(fd: int, path: str) -> None:
    target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(target, fd)
    os.close(target)


def _child(entry: Entry, argv: list[str], env: dict[str, str], cwd: str, out: str, err: str) -> None:
    """In the forked process: become the command (own process group, environment, cwd, argv, stdio)."""
    os.setpgrp()
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    _redirect(1, out)
    _redirect(2, err)
    if env.get("OMP_NUM_THREADS"):
        import torch

        torch.set_num_threads(int(env["OMP_NUM_THREADS"]))
    try:
        if callable(entry):
            sys.argv = [entry.__module__, *argv]
            raise SystemExit(entry(argv))
        sys.argv = [entry, *argv]
        runpy.run_path(str(Path(cwd) / entry), run_name="__main__")
    finally:
        atexit._run_exitfuncs()  # multiprocessing ends its processes with os._exit, which skips them


class Running:
    """A command ``start`` began: poll it, signal it, wait for its output (like ``subprocess.Popen``)."""

    def __init__(self, process: multiprocessing.process.BaseProcess, args: list[str], folder: Path) -> None:
        self._process, self.args, self._folder = process, args, folder

    @property
    def pid(self) -> int:
        """Its process id, also its process group's."""
        return self._process.pid

    def poll(self) -> int | None:
        """Its exit code (``-N`` when signal N ended it), or None while it runs."""
        return self._process.exitcode

    def send_signal(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def wait(self, timeout: float | None = None) -> subprocess.CompletedProcess:
        """Wait for it to end (killing its process group after ``timeout``); then what it printed."""
        self._process.join(timeout)
        out, err = self._folder / "stdout", self._folder / "stderr"
        try:
            if self._process.exitcode is None:
                _kill_group(self.pid)
                self._process.join()
                raise subprocess.TimeoutExpired(self.args, timeout, out.read_text(), err.read_text())
            _kill_group(self.pid)  # what it left running (a DDP worker) must not outlive its test
            return subprocess.CompletedProcess(self.args, self._process.exitcode, out.read_text(errors="replace"),
                                               err.read_text(errors="replace"))
        finally:
            shutil.rmtree(self._folder, ignore_errors=True)


def start(entry: Entry, argv: Sequence[str | Path], *, env: dict[str, str] | None = None,
          cwd: Path = ROOT) -> Running:
    """Start ``python ENTRY ARGV`` (a script path relative to ``cwd``) or ``sys.exit(ENTRY(ARGV))`` (a
    module-level function, e.g. ``ctrlic.cli.main``, the console script's entry) in a forked process, in a
    process group of its own, with ``env`` as its whole environment (default: this one)."""
    args = [getattr(entry, "__qualname__", entry), *map(str, argv)]
    folder = Path(tempfile.mkdtemp(prefix="ctrlic-forked-"))
    for name in ("stdout", "stderr"):
        (folder / name).touch()
    process = _server().Process(target=_child, args=(entry, args[1:], dict(os.environ if env is None else env),
                                                     str(cwd), str(folder / "stdout"), str(folder / "stderr")))
    process.start()
    return Running(process, args, folder)


def run(entry: Entry, argv: Sequence[str | Path], *, env: dict[str, str] | None = None, cwd: Path = ROOT,
        timeout: float = 600) -> subprocess.CompletedProcess:
    """``start`` the command and wait for it; returns what ``subprocess.run`` would."""
    return start(entry, argv, env=env, cwd=cwd).wait(timeout)


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass
