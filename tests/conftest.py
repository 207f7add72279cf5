"""Offline, CPU-only test settings shared by the whole suite."""
import os

# Tiny models gain nothing from several threads, and OpenMP threads spinning on a shared
# 2-core machine made steps ~5x slower (measured): one thread unless the caller says otherwise.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("MPLBACKEND", "Agg")

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # train.py and demo/ live at the repo root
    sys.path.insert(0, str(ROOT))
