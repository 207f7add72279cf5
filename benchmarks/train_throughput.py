"""How close does a FuseMix training step come to the machine's matmul rate?

Measures, in one run: the matmul rate (GFLOP/s) in fp32 and bf16 at the adapters' own GEMM
shapes, then full training steps (mix -> two adapters -> InfoNCE -> backward -> AdamW) at the
paper's sizes (1536-d and 1024-d inputs -> 512, 4 blocks, expansion 4), and prints samples/s,
achieved GFLOP/s and the ratio. Runs on CUDA when present (--device cuda).

    python benchmarks/train_throughput.py                 # paper sizes, batch 1024
    python benchmarks/train_throughput.py --quick         # small sizes, a smoke run
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a plain checkout

from fusemix.mixing import fusemix_mix, mix_partners, sample_lambda
from fusemix.model import FusionConfig, FusionModel, ModalitySpec
from fusemix.optim import make_optimizer


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timeit(fn, device, warmup: int, iters: int) -> float:
    for _ in range(warmup):
        fn()
    sync(device)
    best = float("inf")
    for _ in range(iters):  # best of several: the least disturbed by other work on the machine
        t = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - t)
    return best


def matmul_gflops(m: int, k: int, n: int, dtype, device, iters: int) -> float:
    a = torch.randn(m, k, device=device, dtype=dtype)
    b = torch.randn(k, n, device=device, dtype=dtype)
    t = timeit(lambda: a @ b, device, 2, iters)
    return 2 * m * k * n / t / 1e9


def step_flops(model: FusionModel, batch: int) -> float:
    """Forward + backward of every Linear: 6 * weights * batch (the loss's B x B matmuls added)."""
    linear = sum(p.numel() for n, p in model.named_parameters() if p.ndim == 2)
    return 6 * linear * batch + 3 * 2 * batch * batch * model.config.proj_dim


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--dims", default="1536,1024", help="input widths of the two adapters (paper: DINOv2-G, BGE-L)")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    args = ap.parse_args()
    if args.quick:
        args.batch, args.dims, args.steps = 256, "384,256", 3
    device = torch.device(args.device)
    dx, dy = map(int, args.dims.split(","))
    print(f"device={device} threads={torch.get_num_threads()} batch={args.batch} dims={dx},{dy}")

    results = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        # The adapters' dominant GEMMs: [B, d] @ [d, 4d] and [B, 4d] @ [4d, d], for both widths.
        rates = [matmul_gflops(args.batch, d, 4 * d, dtype, device, args.steps) for d in (dx, dy)]
        results[f"matmul_{name}_gflops"] = sum(rates) / len(rates)

    torch.manual_seed(0)
    x = torch.randn(8 * args.batch, dx, device=device)
    y = torch.randn(8 * args.batch, dy, device=device)
    for name, bf16 in (("fp32", False), ("bf16", True)):
        model = FusionModel(FusionConfig({"image": ModalitySpec("bench-x", dx), "text": ModalitySpec("bench-y", dy)},
                                         proj_dim=512, depth=4, expansion=4, dropout=0.6)).to(device).train()
        opt = make_optimizer(model, 1e-4, 0.1)
        g = torch.Generator().manual_seed(0)

        def step():
            idx = torch.randint(0, x.shape[0], (args.batch,), generator=g).to(device)
            xb, yb = fusemix_mix(x[idx], y[idx], sample_lambda(1.0, g), mix_partners(args.batch, "permutation", g))
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                loss = model("image", xb, "text", yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        t = timeit(step, device, 1, args.steps)
        flops = step_flops(model, args.batch)
        results[f"step_{name}_s"] = t
        results[f"step_{name}_samples_per_s"] = args.batch / t
        results[f"step_{name}_gflops"] = flops / t / 1e9
        results[f"step_{name}_vs_matmul"] = flops / t / 1e9 / results[f"matmul_{name}_gflops"]
    results["bf16_speedup"] = results["step_fp32_s"] / results["step_bf16_s"]

    print(f"matmul fp32 {results['matmul_fp32_gflops']:.1f} GFLOP/s, bf16 {results['matmul_bf16_gflops']:.1f} GFLOP/s")
    for name in ("fp32", "bf16"):
        print(f"train step {name}: {results[f'step_{name}_samples_per_s']:.0f} samples/s, "
              f"{results[f'step_{name}_gflops']:.1f} GFLOP/s = {100 * results[f'step_{name}_vs_matmul']:.1f}% of {name} matmul")
    print(f"bf16 autocast speed-up over fp32: {results['bf16_speedup']:.2f}x "
          f"(goal: fp32 step >= 85% of matmul, bf16 faster than fp32)")
    print(json.dumps({k: round(v, 4) for k, v in results.items()}))


if __name__ == "__main__":
    main()
