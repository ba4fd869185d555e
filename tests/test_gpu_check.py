"""benchmarks/gpu_check.py: on a GPU when there is one; here on the CPU, so the script a
GPU session runs once is known to work before it does (bfloat16 steps, the face
detector's batched path, DDP on gloo)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


def run_check(tmp_path: Path, device: str, *extra: str) -> str:
    cmd = [sys.executable, str(SCRIPT), "--device", device, "--work", str(tmp_path)]
    done = subprocess.run([*cmd, *extra], capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    return done.stdout


@pytest.mark.slow
def test_the_gpu_check_runs_its_checks_on_the_cpu(tmp_path):
    out = run_check(tmp_path, "cpu", "--faces", "8", "--frames", "4", "--batch", "8")
    # each torch detector's bfloat16 step agrees with its float32 step
    assert out.count("bfloat16       vs float32") == 2 and out.count(" ok\n") >= 2, out
    assert "Xception: skipped, float32 on a CPU" in out
    assert "15 models" in out and "ratio" in out
    assert "frames together" in out and "faces in 4/4" in out, out
    assert "DDP, 2 processes, gloo: exit 0" in out


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_the_gpu_check_passes_on_the_gpu(tmp_path):
    out = run_check(tmp_path, "cuda")
    assert "float16        vs float32" in out and "FAILED" not in out
