"""What every benchmark prints: the machine it ran on first, its goal figure last, in one fixed form.

The last line of a benchmark is ``GOAL <name>: <value> (goal <op> <target>: met|NOT met)`` so that a
person, gpu_check.sh and tests/test_benchmarks.py all read the result the same way.
"""
from __future__ import annotations

import operator
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a plain checkout

from fusemix.hardware import describe  # noqa: E402

OPS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt}
GOAL_RE = re.compile(r"^GOAL [a-z0-9_]+: [-0-9.e+]+ \(goal (>=|<=|>|<) [-0-9.e+]+: (met|NOT met)\)$")


def machine_line(device=None) -> str:
    """``machine: <CPU, cores, torch capability, GPU, bf16 native or emulated>``."""
    return f"machine: {describe(device)}"


def goal_line(name: str, value: float, op: str, target: float) -> str:
    """The fixed last line, e.g. ``GOAL train_fp32_vs_gemms: 0.88 (goal >= 0.85: met)``."""
    if op not in OPS:
        raise ValueError(f"op must be one of {sorted(OPS)}, got {op!r}")
    if not re.fullmatch(r"[a-z0-9_]+", name):
        raise ValueError(f"a goal name is lower-case letters, digits and '_', got {name!r}")
    met = OPS[op](value, target)
    return f"GOAL {name}: {value:.3g} (goal {op} {target:g}: {'met' if met else 'NOT met'})"
