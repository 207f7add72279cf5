"""Data parallelism with two CPU processes (gloo) computes what one process computes."""
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from fusemix.latents import save_latent_pairs
from synthetic import make_pairs

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
pytestmark = pytest.mark.skipif(shutil.which("torchrun") is None and not (Path(sys.executable).parent / "torchrun").exists(),
                                reason="torchrun not installed")


def _torchrun(args, timeout=240):
    with socket.socket() as s:  # a free loopback port for the rendezvous
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{ROOT}:{HERE}"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(port), *args]
    r = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def test_global_batch_loss_and_gradients_match_one_process(tmp_path):
    import dist_check

    out = tmp_path / "two.safetensors"
    _torchrun([str(HERE / "dist_check.py"), str(out)])
    two = load_file(str(out))
    model, x, y = dist_check.build()
    loss = model("image", x, "text", y)
    loss.backward()
    assert two["loss"].item() == pytest.approx(loss.item(), rel=1e-5)
    for k, p in model.named_parameters():
        assert torch.allclose(two[f"grad.{k}"], p.grad, atol=1e-6, rtol=1e-4), k
    # The check has teeth: without the gather each process sees only 8 negatives.
    local = model.loss_fn.__class__()
    half = local(model.embed("image", x[:8]), model.embed("text", y[:8])).item()
    assert abs(half - loss.item()) > 1e-3


def test_train_py_two_processes_equal_one(tmp_path):
    f = save_latent_pairs(tmp_path / "p.safetensors", make_pairs(200, seed=5))
    common = ["--latents", str(f), "--epochs", "2", "--batch_size", "40", "--dropout", "0", "--proj_dim", "16",
              "--depth", "1", "--expansion", "2", "--heldout_fraction", "0", "--no-progress", "--warmup_steps", "2"]
    import train

    train.main(common + ["--out", str(tmp_path / "one")])
    _torchrun([str(ROOT / "train.py"), *common, "--out", str(tmp_path / "two")])

    def weights(run, processes):
        ckpt = run / json.loads((run / "latest.json").read_text())["checkpoint"]
        assert json.loads((ckpt / "trainer_state.json").read_text())["num_processes"] == processes
        return load_file(str(ckpt / "model.safetensors"))

    a, b = weights(tmp_path / "one", 1), weights(tmp_path / "two", 2)
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5, rtol=1e-4), k
