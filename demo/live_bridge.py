"""FuseMix live: the app trains its own captions-only bridge in the background.

When no trained bridge is found for the loaded CLAP and Stable Diffusion, :class:`LiveBridge` trains one
from the shipped caption corpus (``train_bridge.py``, in a child process) and caches it under fusemix's
cache root, so a restart reuses it. The caption route serves every request meanwhile, and after a
failure; ``label()`` is the status line the UI shows.
"""
from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import train_bridge

logger = logging.getLogger(__name__)


class LiveBridge:
    """One background training of the bridge for ``clap_model`` -> ``sd_model``; ``job_kw`` (e.g.
    ``max_captions``, ``train_args``) go to ``train_bridge.make_job``."""

    def __init__(self, clap_model: str, sd_model: str, *, audio=(), standin: bool = False, **job_kw):
        self.job = train_bridge.make_job(clap_model, sd_model, **job_kw)
        self.out = train_bridge.cached_bridge(self.job)
        self.audio, self.standin = list(audio), standin
        self.path: Path | None = None  # the trained bridge, once ready
        self.card: dict = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._state = {"state": "idle", "stage": "", "done": 0, "total": 0, "error": "", "seconds": 0.0}

    def _set(self, **kw) -> None:
        with self._lock:
            self._state.update(kw)

    def status(self) -> dict:
        with self._lock:
            return dict(self._state)

    @property
    def ready(self) -> bool:
        return self.status()["state"] == "ready"

    def label(self) -> str:
        """What the UI says about this bridge, plainly."""
        s = self.status()
        if s["state"] == "ready":
            c = self.card
            text = (f"FuseMix bridge trained on this machine from {c['captions']} captions in {c['seconds']:.0f} s "
                    f"(held-out R@1 {c['heldout_r1']:.2f})")
            return text + (" - on RANDOM stand-in models, so its images are meaningless" if self.standin else "")
        if s["state"] == "training":
            where = f" {s['done']}/{s['total']}" if s["total"] else ""
            return f"Training a FuseMix bridge on this machine: {s['stage']}{where}. The caption route serves meanwhile."
        if s["state"] == "failed":
            return f"The FuseMix bridge could not be trained here ({s['error']}); the caption route serves."
        return "No FuseMix bridge yet; the caption route serves."

    def start(self) -> "LiveBridge":
        """Start training unless a cached bridge is found (then it is ready at once). Idempotent."""
        with self._lock:
            if self._thread is not None or self._state["state"] == "ready":
                return self
        cached = train_bridge.load_cached(self.job)
        if cached is not None:
            self._ready(cached)
            return self
        self._set(state="training", stage="starting")
        self._thread = threading.Thread(target=self._run, name="fusemix-live-bridge", daemon=True)
        self._thread.start()
        return self

    def wait(self, timeout: float | None = None) -> dict:
        if self._thread is not None:
            self._thread.join(timeout)
        return self.status()

    def _ready(self, bridge) -> None:
        extra = bridge.config.extra
        self.card = {"captions": extra.get("captions", len(self.job.captions)), "seconds": extra.get("seconds", 0.0),
                     "heldout_r1": extra.get("heldout_r1", float("nan"))}
        self.path = self.out
        self._set(state="ready", stage="done")

    def command(self) -> list[str]:
        """The ``train_bridge.py`` command that trains exactly ``self.job`` into its cache folder."""
        j = self.job
        return [sys.executable, train_bridge.__file__, "--clap", j.clap_model, "--sd", j.sd_model,
                "--captions", j.corpus, "--max_captions", str(len(j.captions)), "--seed", str(j.seed),
                "--out", str(self.out), *(["--standin"] if self.standin else []),
                *(["--audio", *map(str, self.audio)] if self.audio else []), *j.train_args]

    def _run(self) -> None:
        """Train in a child process at the lowest CPU priority, so requests keep their speed."""
        from fusemix.bridge import ConditioningBridge

        t0, last = time.time(), ""
        try:
            proc = subprocess.Popen(self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                    preexec_fn=lambda: os.nice(19))
            for line in proc.stderr:
                last = line.strip() or last
                m = re.match(r"^(.+): (\d+)/(\d+)$", line.strip())  # train_bridge.py's "stage: done/total"
                if m:
                    self._set(stage=m[1], done=int(m[2]), total=int(m[3]))
            if proc.wait() != 0:
                raise RuntimeError(last or f"exit code {proc.returncode}")
            self._ready(ConditioningBridge.from_pretrained(self.out))
        except Exception as exc:  # noqa: BLE001 - the app must keep serving the caption route
            logger.warning("live bridge training failed: %s", exc)
            self._set(state="failed", error=f"{type(exc).__name__}: {str(exc)[:200]}")
        finally:
            self._set(seconds=time.time() - t0)
