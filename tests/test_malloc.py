"""fusemix.malloc and the decoding workers' setup: freed memory is kept (no page faults on repeated
multi-MB arrays) and workers run at the lowest CPU priority.

Each case runs in a fresh interpreter: mallopt changes the whole process, and pytest's must not.
"""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from fusemix import cache
from fusemix.malloc import _glibc_mallopt

ROOT = Path(__file__).resolve().parents[1]

# A worker's pattern: per item, three arrays of 20 MB (above glibc's default mmap threshold once
# they are all live, and together over its default trim threshold), written, then all freed.
CHURN = """
import json, resource, sys
import numpy as np
sys.path.insert(0, {root!r})
from fusemix.malloc import keep_freed_memory
applied = keep_freed_memory() if {keep} else None
def item():
    arrays = [np.empty(5 << 20, np.float32) for _ in range(3)]
    for a in arrays:
        a.fill(1.0)  # touch every page
for _ in range(3):
    item()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    item()
faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20
print(json.dumps({{"applied": applied, "faults": faults}}))
"""


def _churn(keep: bool) -> dict:
    out = subprocess.run([sys.executable, "-c", CHURN.format(root=str(ROOT), keep=keep)],
                         capture_output=True, text=True, timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


needs_glibc = pytest.mark.skipif(_glibc_mallopt() is None, reason="mallopt is glibc's")


@needs_glibc
def test_kept_memory_stops_page_faults_on_repeated_arrays():
    plain, kept = _churn(False), _churn(True)
    assert kept["applied"] is True
    # 60 MB per item is 15,360 small pages (fewer where the kernel backs some with huge pages):
    assert plain["faults"] > 200, plain  # the default really does give the pages back...
    assert kept["faults"] < plain["faults"] / 20, (plain, kept)  # ...and kept memory does not


def test_without_glibc_nothing_is_changed(monkeypatch):
    import fusemix.malloc as m

    monkeypatch.setattr(m, "_glibc_mallopt", lambda: None)
    assert m.keep_freed_memory() is False


def test_refused_setting_is_reported(monkeypatch):
    import fusemix.malloc as m

    calls = []

    def mallopt(param, value):
        calls.append(param)
        return 0 if param == m.M_MMAP_THRESHOLD else 1  # glibc returns 0 for a refused value

    monkeypatch.setattr(m, "_glibc_mallopt", lambda: mallopt)
    assert m.keep_freed_memory() is False
    assert sorted(calls) == sorted([m.M_MMAP_THRESHOLD, m.M_TRIM_THRESHOLD, m.M_TOP_PAD])  # all still tried


WORKER = """
import json, os, sys
sys.path.insert(0, {root!r})
import fusemix.cache as cache
called = []
cache.keep_freed_memory = lambda: called.append(True) or True
cache._worker_init(0)
print(json.dumps({{"nice": os.nice(0), "kept": called}}))
"""


def test_decoding_workers_keep_freed_memory_at_lowest_priority():
    # In a child: niceness can only go up, and pytest's own process must keep its priority.
    out = subprocess.run([sys.executable, "-c", WORKER.format(root=str(ROOT))],
                         capture_output=True, text=True, timeout=120, check=True)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["kept"] == [True]
    assert got["nice"] == 19 == cache.WORKER_NICENESS
