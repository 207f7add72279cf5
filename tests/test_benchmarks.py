"""The benchmark scripts still run and end with their goal line: gpu_check.sh at smoke sizes, on this CPU.

Not a timing test: it checks that each script finishes and prints its figures in the fixed form, so
the one-command GPU check a lent machine gets is known to work before device time is spent on it.
"""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GOAL = re.compile(r"^GOAL [a-z0-9_]+: [-0-9.e+]+ \(goal (>=|<=|>|<) [-0-9.e+]+: (met|NOT met)\)$")


def last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1] if lines else ""


@pytest.fixture(scope="module")
def gpu_check(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check")
    env = {**os.environ, "OUT": str(out), "GPU_CHECK_QUICK": "1", "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    run = subprocess.run(["bash", "benchmarks/gpu_check.sh"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=600)
    return run, out


def test_gpu_check_runs_every_step(gpu_check):
    run, out = gpu_check
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert {p.name for p in out.iterdir()} >= {"machine.txt", "cuda_tests.txt", "train_throughput.txt",
                                                "extract_throughput.txt", "demo_generation.txt"}
    assert "passed" in (out / "cuda_tests.txt").read_text()


def test_train_throughput_ends_with_its_goal(gpu_check):
    text = (gpu_check[1] / "train_throughput.txt").read_text()
    assert GOAL.match(last_line(text)) and last_line(text).startswith("GOAL train_fp32_vs_gemms: "), text[-2000:]
    assert "machine: CPU " in text and "train step fp32: " in text
    assert "train step bf16: " in text or "bf16: skipped" in text  # timed where native, else said so


def test_extract_throughput_ends_with_its_goal(gpu_check):
    text = (gpu_check[1] / "extract_throughput.txt").read_text()
    assert GOAL.match(last_line(text)), text[-2000:]
    assert re.search(r"stage\s*/\s*forward\D*\d", text, re.I), text[-2000:]


def test_demo_generation_ends_with_its_goal(gpu_check):
    text = (gpu_check[1] / "demo_generation.txt").read_text()
    assert GOAL.match(last_line(text)) and last_line(text).startswith("GOAL demo_seconds_per_image: "), text[-2000:]
    assert "VAE AutoencoderKL" in text and "per image: median" in text


def test_gpu_check_reports_a_failing_step(tmp_path):
    """A step that fails makes the script exit non-zero (the others still run and are kept)."""
    env = {**os.environ, "OUT": str(tmp_path), "GPU_CHECK_QUICK": "1", "PYTHON": "false"}
    run = subprocess.run(["bash", "benchmarks/gpu_check.sh"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode != 0
    assert (tmp_path / "train_throughput.txt").exists()


def test_search_latency_smoke_run_ends_with_its_goal():
    cmd = [sys.executable, "benchmarks/search_latency.py", "--sizes", "2000", "--batches", "1,4", "--rounds", "2",
           "--calls", "3", "--hnsw-size", "2000", "--hnsw-queries", "30", "--ef-search", "16,128"]
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    line = last_line(run.stdout)
    assert GOAL.match(line) and line.startswith("GOAL search_exact_vs_fastest: "), run.stdout[-2000:]
    cells = [l for l in run.stdout.splitlines() if l.startswith("N=2,000")]
    assert len(cells) == 2 and all(m in cells[0] for m in ("ours", "numpy", "faiss", "torch"))
    recall = float(re.search(r"efSearch=128\s.*recall@10 ([0-9.]+)", run.stdout).group(1))
    assert recall >= 0.9  # a wide beam on embedding-like data finds nearly all true neighbours


def test_goal_line_form():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from common import goal_line

    assert goal_line("train_fp32_vs_gemms", 0.8812, ">=", 0.85) == "GOAL train_fp32_vs_gemms: 0.881 (goal >= 0.85: met)"
    assert goal_line("search_exact_vs_fastest", 0.97, ">=", 1.0).endswith("(goal >= 1: NOT met)")
    assert GOAL.match(goal_line("x_ms", 12.5, "<", 10))
    with pytest.raises(ValueError, match="op must be one of"):
        goal_line("x", 1.0, "=>", 1.0)


def test_bf16_is_native_follows_the_cpu_flags(monkeypatch):
    """Zen 3 (AVX2 only) emulates bf16; AVX512-BF16 or AMX-BF16 multiply it natively."""
    import torch

    from fusemix import hardware

    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    monkeypatch.setattr(hardware, "cpu_flags", lambda: frozenset({"avx", "avx2", "fma"}))
    assert not hardware.bf16_is_native("cpu")
    assert "bf16 on cpu: emulated" in hardware.describe("cpu")
    for flag in ("avx512_bf16", "amx_bf16"):
        monkeypatch.setattr(hardware, "cpu_flags", lambda: frozenset({"avx2", flag}))
        assert hardware.bf16_is_native("cpu") and "bf16 on cpu: native" in hardware.describe("cpu")
