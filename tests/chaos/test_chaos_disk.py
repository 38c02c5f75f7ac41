"""Chaos (bounded): the disk fills while an artifact is being written. What must hold: a clear
error that says what happened and what to do, the documented exit code, and nothing partial
left behind — no artifact, no temporary file, no work directory.

The "full disk" is a file-size limit (RLIMIT_FSIZE) on the child process: writes past it fail
with EFBIG exactly where a full disk fails with ENOSPC, without needing a mount."""

from __future__ import annotations

import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.chaos


def _limited(max_bytes: int) -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write, not a killed process
    resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))


def test_disk_full_while_compressing_leaves_nothing_and_says_why(tiny_gguf: Path,
                                                                 tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    size = tiny_gguf.stat().st_size
    proc = subprocess.run(
        [sys.executable, "-m", "edgeward.cli", "compress", str(tiny_gguf), "--type", "Q8_0",
         "--out", str(out / "q8.gguf"), "--no-eval"],
        preexec_fn=lambda: _limited(size // 5), capture_output=True, text=True, check=False,
        timeout=300)
    assert proc.returncode == 9, proc.stderr  # ResourceError
    assert "disk is full" in proc.stderr and "Free some space" in proc.stderr, proc.stderr
    assert str(out) in proc.stderr  # names the directory, not a hidden work directory
    assert list(out.iterdir()) == []  # no artifact, no .partial, no work directory
    # with room, the same command works: nothing was left in the way
    ok = subprocess.run(
        [sys.executable, "-m", "edgeward.cli", "compress", str(tiny_gguf), "--type", "Q8_0",
         "--out", str(out / "q8.gguf"), "--no-eval"],
        capture_output=True, text=True, check=False, timeout=300)
    assert ok.returncode == 0, ok.stderr
    assert (out / "q8.gguf").is_file()
