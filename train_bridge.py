"""Train a FuseMix conditioning bridge from captions alone: in one command, or in the background for the app.

CLAP puts audio and text in one space, so a bridge from CLAP's *text* tower into a Stable
Diffusion text encoder's ``prompt_embeds``, trained on nothing but a caption corpus, also serves
CLAP *audio* latents (route b). The modality gap between the towers is corrected by centring each
input on its own tower's mean; the audio mean needs only unlabelled clips.

    python train_bridge.py --clap laion/clap-htsat-unfused --sd stabilityai/sd-turbo --out weights/bridge
    python train_bridge.py ... --captions my_captions.txt --audio demo/examples   # own corpus, audio mean
    python train_bridge.py --clap laion/clap-htsat-unfused --clip openai/clip-vit-base-patch32 --out weights/sound

With ``--clip`` the target is a CLIP's text space instead (pooled, projected text embeddings): the
Sound -> Images adapter, whose output searches the images that CLIP embedded.

Steps: encode the corpus with both text encoders (cached latents, like every extraction) ->
train.py --model bridge (captions only) -> record the audio mean of the given clips -> write the
bridge with a model card, atomically (a kill leaves no half-written bridge).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

import train
from fusemix.bridge.model import TARGETS
from fusemix.caption_bank import default_bank_path, load_captions, sample_captions
from fusemix.conventions import audio_files, cache_root
from fusemix.hardware import describe as describe_hardware
from fusemix.latents import save_latent_pairs
from fusemix.pairs import PairSource
from fusemix.train_state import kept_checkpoint

logger = logging.getLogger(__name__)

CODE_VERSION = "2"  # bump when a change here or in the bridge makes cached bridges stale
DEFAULT_CORPUS = default_bank_path()  # the sound corpus, also the caption-bank baseline's bank
# Captions to train on: enough for most of the R@1 (docs/real_bridge.md), few enough for a CPU start-up
# (docs/space.md); a GPU encodes the whole corpus.
DEFAULT_MAX_CAPTIONS = 800 if not torch.cuda.is_available() else 7700
# train.py's --preset auto picks the bridge's shape and schedule for the corpus size (docs/real_bridge.md).
BRIDGE_ARGS = ["--model", "bridge", "--weight_decay", "0.01"]
# per target: a one-token target is better fitted directly than through a low-rank basis (docs/audio_to_image.md)
TARGET_ARGS = {"sd-text": [], "clip-text": ["--bridge_head", "direct"]}

Progress = Callable[[str, int, int], None]  # (stage, done, total)
NAMES = {"sd-text": "conditioning bridge", "clip-text": "sound adapter"}  # what each target's bridge is called


class CaptionSource(PairSource):
    """A caption corpus as a pair source: each caption is its own item (captions-only training)."""

    modality = None

    def __init__(self, captions: list[str]):
        self.ids = [hashlib.sha256(c.encode()).hexdigest()[:16] for c in captions]
        self.captions = [(c,) for c in captions]
        self.skipped = []

    def item(self, i: int) -> str:
        return self.captions[i][0]

    def items_fingerprint(self) -> str:
        return self.captions_fingerprint()


@dataclass
class BridgeJob:
    """What a captions-only bridge is trained from; its key names the cached result."""

    clap_model: str
    sd_model: str  # the target model: an SD repo, or a CLIP with target="clip-text"
    captions: list[str]
    corpus: str  # where the captions came from (a path), for the model card
    seed: int = 0
    train_args: list[str] = field(default_factory=list)
    target: str = "sd-text"  # the target encoder's kind (fusemix.bridge.model.TARGETS)

    @property
    def corpus_sha256(self) -> str:
        return hashlib.sha256("\n".join(self.captions).encode()).hexdigest()

    @property
    def key(self) -> str:
        payload = [CODE_VERSION, self.clap_model, self.sd_model, self.corpus_sha256, self.seed,
                   BRIDGE_ARGS + TARGET_ARGS[self.target] + self.train_args, self.target]
        return hashlib.sha256(json.dumps(payload).encode()).hexdigest()[:20]


def make_job(clap_model: str, sd_model: str, captions: str | os.PathLike | None = None,
             max_captions: int | None = DEFAULT_MAX_CAPTIONS, seed: int = 0,
             train_args: list[str] | None = None, target: str = "sd-text") -> BridgeJob:
    """The job for a corpus file (default: fusemix's sound captions), at most ``max_captions`` of it
    (a seeded sample, so the key is stable); ``target`` "clip-text" maps into a CLIP's text space."""
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
    path = Path(captions) if captions else DEFAULT_CORPUS
    caps = load_captions(path)
    if max_captions is not None:
        if max_captions < 20:
            raise ValueError(f"max_captions must be at least 20 (train/held-out split), got {max_captions}")
        caps = sample_captions(caps, max_captions, seed)
    if len(caps) < 20:
        raise ValueError(f"{path} holds {len(caps)} captions; a bridge needs at least 20")
    return BridgeJob(str(clap_model), str(sd_model), caps, str(path), seed, list(train_args or []), target)


def model_card(job: BridgeJob, info: dict) -> str:
    mean = (f"mean CLAP audio latent of {info['audio_clips']} unlabelled clips (audio is centred on it)"
            if info["audio_clips"] else
            "none: no clips were given, so audio is centred on the CLAP *text* mean (the modality gap "
            "is not corrected)")
    clip = job.target == "clip-text"
    return "\n".join([
        f"# FuseMix {NAMES[job.target]}, trained from captions alone", "",
        "CLAP text latents -> " + ("the CLIP text embedding (CLIP's image-text space: Sound -> Images)" if clip
                                   else "Stable Diffusion `prompt_embeds`") + ", serving CLAP audio latents (route b).",
        "", "| | |", "| --- | --- |",
        f"| CLAP | `{job.clap_model}` |",
        f"| {'CLIP text tower' if clip else 'Stable Diffusion text encoder'} | `{job.sd_model}` |",
        f"| caption corpus | `{job.corpus}` |", f"| corpus sha256 | `{job.corpus_sha256}` |",
        f"| captions | {len(job.captions)} |", f"| training steps | {info['steps']} |",
        f"| held-out caption R@1 (pooled) | {info['heldout_r1']:.3f} among {info['heldout']} |",
        f"| audio mean | {mean} |", f"| trained | {info['date']} in {info['seconds']:.0f} s |",
        f"| hardware | {info['hardware']} |", f"| train.py arguments | `{' '.join(info['train_args'])}` |",
        "", "Trained on RANDOM stand-in models (fusemix.tiny): its outputs are meaningless." if info["standin"]
        else "", ""])


def train_caption_bridge(job: BridgeJob, out: str | os.PathLike, *, audio=(), latent_cache: str | None = None,
                         progress: Progress | None = None, standin: bool = False) -> Path:
    """Train ``job`` and write the bridge to ``out`` (replaced atomically); returns ``out``."""
    from fusemix.bridge import ConditioningBridge
    from fusemix.encoders import load_encoder
    from fusemix.extract import run_extraction

    report = progress or (lambda stage, done, total: None)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    clips = audio_files(audio) if audio else []
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.", dir=out.parent) as tmp:
        tmp = Path(tmp)
        report("encoding captions", 0, len(job.captions))
        pairs = run_extraction(CaptionSource(job.captions), f"clap-text:{job.clap_model}", f"{job.target}:{job.sd_model}",
                               latent_cache or cache_root("latents"), num_workers=0, progress=False).pairs
        report("encoding captions", len(job.captions), len(job.captions))
        latents = save_latent_pairs(tmp / "captions.safetensors", pairs)
        run = tmp / "run"
        settings = [*BRIDGE_ARGS, *TARGET_ARGS[job.target], "--seed", str(job.seed), *job.train_args]
        result = train.main([*settings, "--latents", str(latents), "--out", str(run), "--no-progress"])
        bridge = ConditioningBridge.from_pretrained(kept_checkpoint(run))
        if clips:
            report("audio mean", 0, len(clips))
            enc = load_encoder("clap-audio", job.clap_model)
            bridge.set_modality_mean("audio", enc.encode([str(c) for c in clips], progress=False))
            report("audio mean", len(clips), len(clips))
        final = tmp / "bridge"
        info = {"steps": result["step"], "heldout_r1": result["best_metric"],
                "heldout": result["heldout_pairs"], "audio_clips": len(clips),
                "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "seconds": time.time() - t0,
                "hardware": describe_hardware(), "train_args": settings, "standin": standin}
        bridge.config.extra.update({"trained_from": "captions", "corpus_sha256": job.corpus_sha256,
                                    "captions": len(job.captions), "key": job.key, **{
                                        k: info[k] for k in ("steps", "heldout_r1", "audio_clips", "seconds")}})
        bridge.save_pretrained(final)
        (final / "README.md").write_text(model_card(job, info), encoding="utf-8")
        old = out.with_name(f".{out.name}.old")
        if out.exists():
            os.replace(out, old)
        os.replace(final, out)
        shutil.rmtree(old, ignore_errors=True)
    return out


def cached_bridge(job: BridgeJob, cache_dir: str | os.PathLike | None = None) -> Path:
    """Where the bridge for ``job`` is cached: under fusemix's cache root, keyed by ``job.key``."""
    return Path(cache_dir) if cache_dir else cache_root("bridges") / job.key


def load_cached(job: BridgeJob, cache_dir=None):
    """The cached bridge for ``job`` when one is complete and loads; else None (a corrupt one is removed)."""
    from fusemix.bridge import ConditioningBridge
    from fusemix.checkpoint import CheckpointError

    path = cached_bridge(job, cache_dir)
    if not path.is_dir():
        return None
    try:
        bridge = ConditioningBridge.from_pretrained(path, clap_model=job.clap_model, sd_model=job.sd_model)
    except (CheckpointError, ValueError, OSError, RuntimeError):
        shutil.rmtree(path, ignore_errors=True)  # partial or corrupt: rebuilt by the caller
        return None
    return bridge if bridge.config.extra.get("key") == job.key else None


def ensure_bridge(job: BridgeJob, cache_dir=None, **kwargs) -> Path:
    """The cached bridge for ``job``, trained first when it is missing, partial or corrupt."""
    if load_cached(job, cache_dir) is None:
        train_caption_bridge(job, cached_bridge(job, cache_dir), **kwargs)
    return cached_bridge(job, cache_dir)


# --------------------------------------------------------------------------- in the background, for the app


class LiveBridge:
    """FuseMix live: an app with no trained bridge trains one for ``clap_model`` -> ``sd_model`` in a
    child process (cached, so a restart reuses it) while its caption route serves; ``label()`` is the
    status line to show. ``job_kw`` (e.g. ``max_captions``, ``train_args``, ``target``) go to
    :func:`make_job`; ``after``: another LiveBridge to let finish first (one training at a time on a small CPU);
    ``run_in``: train in this process through ``run_in(train_caption_bridge, job, out, **kw)`` instead (ZeroGPU:
    a ``spaces.GPU`` call, which pickles the arguments and runs in a GPU worker; no step progress then)."""

    def __init__(self, clap_model: str, sd_model: str, *, audio=(), standin: bool = False,
                 after: "LiveBridge | None" = None, run_in=None, **job_kw):
        self.job = make_job(clap_model, sd_model, **job_kw)
        self.name = NAMES[self.job.target]
        self.out = cached_bridge(self.job)
        self.audio, self.standin, self.after, self.run_in = list(audio), standin, after, run_in
        self.proc: subprocess.Popen | None = None  # the training child, while one runs
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
            text = (f"FuseMix {self.short} trained on this machine from {c['captions']} captions in {c['seconds']:.0f} s "
                    f"(held-out R@1 {c['heldout_r1']:.2f})")
            return text + (" - on RANDOM stand-in models, so its outputs are meaningless" if self.standin else "")
        if s["state"] == "training":
            where = f" {s['done']}/{s['total']}" if s["total"] else ""
            return (f"Training a FuseMix {self.short} on this machine: {s['stage']}{where}. "
                    "The caption route serves meanwhile.")
        if s["state"] == "failed":
            return f"The FuseMix {self.short} could not be trained here ({s['error']}); the caption route serves."
        return f"No FuseMix {self.short} yet; the caption route serves."

    @property
    def short(self) -> str:
        return self.name.removeprefix("conditioning ")

    def start(self) -> "LiveBridge":
        """Start training unless a cached bridge is found (then it is ready at once). Idempotent."""
        with self._lock:
            if self._thread is not None or self._state["state"] == "ready":
                return self
        cached = load_cached(self.job)
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
        return [sys.executable, __file__, "--clap", j.clap_model, "--clip" if j.target == "clip-text" else "--sd", j.sd_model,
                "--captions", j.corpus, "--max_captions", str(len(j.captions)), "--seed", str(j.seed),
                "--out", str(self.out), *(["--standin"] if self.standin else []),
                *(["--audio", *map(str, self.audio)] if self.audio else []), *j.train_args]

    def _run(self) -> None:
        """Train in a child process at the lowest CPU priority, so requests keep their speed."""
        from fusemix.bridge import ConditioningBridge

        if self.after is not None:
            self._set(stage="waiting for the other training to finish")
            self.after.wait()
        t0, last = time.time(), ""
        for stale in self.out.parent.glob(f".{self.out.name}.*"):  # the temporary folder of a killed training
            shutil.rmtree(stale, ignore_errors=True)
        try:
            if self.run_in is not None:
                self._set(stage="training on the GPU")
                self.run_in(train_caption_bridge, self.job, self.out, audio=self.audio, standin=self.standin)
                return self._ready(ConditioningBridge.from_pretrained(self.out))
            self.proc = proc = subprocess.Popen(self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                                text=True, preexec_fn=lambda: os.nice(19))
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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--clap", required=True, help="CLAP hub id or local folder (its text tower encodes the corpus)")
    to = p.add_mutually_exclusive_group(required=True)
    to.add_argument("--sd", help="Stable Diffusion hub id or folder (its text encoder is the target)")
    to.add_argument("--clip", help="CLIP hub id or folder: the target is its text space (the Sound -> Images adapter)")
    p.add_argument("--out", help="folder to write the bridge to (replaced atomically); default: fusemix's cache, "
                              "where one trained before for the same job is reused (as the app does)")
    p.add_argument("--captions", help=f"caption corpus, one per line (default: {DEFAULT_CORPUS.name})")
    p.add_argument("--max_captions", type=int, default=DEFAULT_MAX_CAPTIONS, help="use at most this many (0: all)")
    p.add_argument("--audio", nargs="*", default=[], help="unlabelled clips or folders for the audio mean")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--standin", action="store_true", help="the models are random stand-ins: say so in the card")
    args, extra = p.parse_known_args(argv)  # anything else goes to train.py (e.g. --epochs 50)
    job = make_job(args.clap, args.sd or args.clip, args.captions, args.max_captions or None, args.seed, extra,
                   "clip-text" if args.clip else "sd-text")
    kw = dict(audio=args.audio, standin=args.standin, progress=lambda s, d, t: print(f"{s}: {d}/{t}", file=sys.stderr))
    out = train_caption_bridge(job, args.out, **kw) if args.out else ensure_bridge(job, **kw)
    print(json.dumps({"bridge": str(out), "captions": len(job.captions), "key": job.key}))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
