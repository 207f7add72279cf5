"""What machine this is, and whether bf16 matmuls run natively on it (elsewhere torch emulates bf16,
many times slower than fp32, so train.py warns and the benchmarks skip it). Reads CPU flags, no probe.
"""
from __future__ import annotations

import contextlib
import platform

import torch

__all__ = ["cpu_name", "cpu_flags", "cpu_cores", "bf16_is_native", "describe"]

# /proc/cpuinfo flags of the x86 units that multiply bf16 in hardware (AMX tiles, AVX-512 dot products).
BF16_CPU_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})


def _cpuinfo_field(name: str) -> str | None:
    """The first value of ``name`` in /proc/cpuinfo (None where there is no such file or field)."""
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
        for line in f:
            key, sep, value = line.partition(":")
            if sep and key.strip() == name:
                return value.strip()
    return None


def cpu_name() -> str:
    """The CPU's model name, e.g. "AMD EPYC" or "Intel(R) Xeon(R) Platinum 8480+"."""
    return _cpuinfo_field("model name") or platform.processor() or platform.machine() or "unknown CPU"


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as /proc/cpuinfo lists them (empty where it cannot be read)."""
    return frozenset((_cpuinfo_field("flags") or "").split())


def cpu_cores() -> int:
    """Cores this process may use: its affinity, capped by a container's CPU quota (joblib reads it)."""
    import joblib  # a pinned dependency

    return int(joblib.cpu_count())


def bf16_is_native(device: str | torch.device = "cpu") -> bool:
    """True when bf16 matmuls on ``device`` run on hardware bf16 units: CUDA's own answer; on a CPU,
    AMX-BF16 / AVX512-BF16 flags or a torch CPU capability that names AMX."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type != "cpu":
        return False
    if cpu_flags() & BF16_CPU_FLAGS:
        return True
    return "AMX" in torch.backends.cpu.get_cpu_capability().upper()


def describe(device: str | torch.device | None = None) -> str:
    """One line naming the CPU, its cores and torch capability, the GPU if any, and bf16 support."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    parts = [f"CPU {cpu_name()}", f"{cpu_cores()} cores", f"torch {torch.__version__}",
             f"capability {torch.backends.cpu.get_cpu_capability()}", f"{torch.get_num_threads()} threads"]
    if torch.cuda.is_available():
        parts.append(f"GPU {torch.cuda.get_device_name(0)}")
    native = bf16_is_native(device)
    parts.append(f"bf16 on {device.type}: {'native' if native else 'emulated (many times slower than fp32)'}")
    return "; ".join(parts)
