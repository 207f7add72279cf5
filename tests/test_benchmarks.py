"""The benchmark scripts still run: benchmarks/gpu_check.sh at smoke-test sizes, on this CPU.

Not a timing test: it checks that each script finishes and prints its figures, so the one-command
GPU check a lent machine gets is known to work before device time is spent on it.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_runs_every_step_and_reports_figures(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path), "GPU_CHECK_QUICK": "1", "PYTHON": sys.executable,
           "OMP_NUM_THREADS": "1"}
    run = subprocess.run(["bash", "benchmarks/gpu_check.sh"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert {p.name for p in tmp_path.iterdir()} >= {"machine.txt", "cuda_tests.txt", "train_throughput.txt",
                                                     "extract_throughput.txt"}
    assert "passed" in (tmp_path / "cuda_tests.txt").read_text()

    train = (tmp_path / "train_throughput.txt").read_text()
    figures = json.loads(train.strip().splitlines()[-1])
    for key in ("matmul_fp32_gflops", "step_fp32_vs_matmul", "step_fp32_vs_matmul_paired_median",
                "step_fp32_vs_step_gemms_paired_median", "bf16_speedup"):
        assert figures[key] > 0, key

    extract = (tmp_path / "extract_throughput.txt").read_text()
    assert "forward alone" in extract and "resampling and log-mel in forward" in extract
    assert extract.count("forward part: resample") == 3  # float64, float32, and with pad + log-mel
    assert extract.count("whole stage, num_workers=") == 2  # 0 and 1 workers, each a measured ratio
    assert "ratio" in extract


def test_gpu_check_reports_a_failing_step(tmp_path):
    """A step that fails makes the script exit non-zero (the others still run and are kept)."""
    env = {**os.environ, "OUT": str(tmp_path), "GPU_CHECK_QUICK": "1", "PYTHON": "false"}
    run = subprocess.run(["bash", "benchmarks/gpu_check.sh"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode != 0
    assert (tmp_path / "train_throughput.txt").exists()
