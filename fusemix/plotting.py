"""Training curves a person can open: loss, temperature and held-out R@1 over steps."""
from __future__ import annotations

import json
from pathlib import Path

from .io import atomic_write


def read_metrics(log_path: str | Path) -> list[dict]:
    rows = []
    for line in Path(log_path).read_text().splitlines():
        line = line.strip()
        if line:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut short by a kill: skip it, keep the rest
                continue
    return rows


def plot_metrics(log_path: str | Path, png_path: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(log_path)
    train = [r for r in rows if r.get("kind") == "train"]
    evals = [r for r in rows if r.get("kind") == "eval"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    axes[0].plot([r["step"] for r in train], [r["loss"] for r in train], lw=1)
    axes[0].set(title="training loss", xlabel="step", yscale="log")
    axes[1].plot([r["step"] for r in train], [r["temperature"] for r in train], lw=1)
    axes[1].set(title="temperature", xlabel="step")
    for key in sorted({k for r in evals for k in r if k.endswith("_R@1")}):
        axes[2].plot([r["step"] for r in evals if key in r], [r[key] for r in evals if key in r], marker="o", label=key)
    axes[2].set(title="held-out R@1", xlabel="step", ylim=(0, 1))
    if evals:
        axes[2].legend()
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    atomic_write(png_path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)
    return Path(png_path)
