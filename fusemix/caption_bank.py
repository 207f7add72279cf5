"""The zero-training baseline: a sound's CLAP latent -> the nearest captions of a caption bank.

Before any bridge is trained, a sound is described by the captions nearest its CLAP audio embedding,
which become an ordinary Stable Diffusion prompt. The bank is the sound corpus the bridges train on,
``fusemix/data/sound_captions.txt`` (7,700 captions); its embeddings are cached per (CLAP model, bank
file, sample). Embedding all of it takes minutes on a CPU (docs/audio_to_image.md), so
:meth:`CaptionBank.build_in_background` serves a seeded sample until the whole bank is cached.
"""
from __future__ import annotations

import atexit
import contextlib
import hashlib
import logging
import os
import random
import threading
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open

from .conventions import cache_root
from .io import atomic_save_safetensors, sha256_file

CACHE_VERSION = "1"
MAX_CAPTION_CHARS = 300
STARTER_CAPTIONS = 400  # what a cold start embeds at once (about what the first request can afford)
logger = logging.getLogger(__name__)
_EXITING = threading.Event()
_BACKGROUND: list[threading.Thread] = []


@atexit.register
def _stop_background() -> None:
    """Let background builds stop between batches before the interpreter goes: a daemon thread killed inside
    a torch op aborts the process ("terminate called without an active exception")."""
    _EXITING.set()
    for t in _BACKGROUND:
        t.join(timeout=30)


class CaptionBankError(ValueError):
    """A caption bank file or query that cannot be used, with the reason."""


@dataclass(frozen=True)
class CaptionMatch:
    caption: str
    score: float  # cosine similarity between the CLAP audio and caption embeddings, in [-1, 1]


def default_bank_path() -> Path:
    return Path(str(resources.files("fusemix") / "data" / "sound_captions.txt"))


def sample_captions(captions: list[str], n: int | None, seed: int = 0) -> list[str]:
    """At most ``n`` of ``captions``: a seeded sample (sorted, so it is stable), or all of them."""
    return captions if n is None or len(captions) <= n else sorted(random.Random(seed).sample(captions, n))


def load_captions(path: str | os.PathLike | None = None) -> list[str]:
    """Captions of a bank file: one per line; blank lines and '#' comments skipped; duplicates dropped."""
    path = Path(path) if path is not None else default_bank_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CaptionBankError(f"caption bank file {path} does not exist") from None
    except UnicodeDecodeError as e:
        raise CaptionBankError(f"caption bank file {path} is not UTF-8 text: {e}") from None
    captions: list[str] = []
    for n, line in enumerate(text.splitlines(), 1):
        line = " ".join(line.split())
        if not line or line.startswith("#"):
            continue
        if len(line) > MAX_CAPTION_CHARS:
            raise CaptionBankError(f"{path}:{n}: caption longer than {MAX_CAPTION_CHARS} characters")
        captions.append(line)
    captions = list(dict.fromkeys(captions))
    if not captions:
        raise CaptionBankError(f"caption bank file {path} holds no captions")
    return captions


def default_cache_dir() -> Path:
    """Where caption-bank embeddings are cached: ``conventions.cache_root("caption_bank")``."""
    return cache_root("caption_bank")


def cache_key(model_id: str, revision: str | None, bank_sha256: str, sample: int | None = None) -> str:
    extra = "" if sample is None else f"\nsample {sample}"
    h = hashlib.sha256(f"v{CACHE_VERSION}\n{model_id}\n{revision}\n{bank_sha256}{extra}".encode())
    return h.hexdigest()[:24]


class CaptionBank:
    """Captions + their L2-normalised CLAP text embeddings; ``search`` finds the best for audio latents."""

    def __init__(self, captions: list[str], embeddings: torch.Tensor, model_id: str):
        if embeddings.ndim != 2 or embeddings.shape[0] != len(captions):
            raise CaptionBankError(
                f"need one embedding row per caption: {len(captions)} captions, embeddings {tuple(embeddings.shape)}")
        if not torch.isfinite(embeddings).all():
            raise CaptionBankError("caption embeddings hold NaN or inf values")
        self._rows = (list(captions), F.normalize(embeddings.float(), dim=-1))  # one attribute: swapped at once
        self.model_id = model_id
        self.pending = 0  # captions still being embedded in the background (build_in_background)
        self.complete = threading.Event()  # set once nothing is pending (or the background build failed)
        self.complete.set()

    captions = property(lambda self: self._rows[0], doc="the captions, in bank order")
    embeddings = property(lambda self: self._rows[1], doc="their L2-normalised CLAP text embeddings [N, dim]")

    def __len__(self) -> int:
        return len(self.captions)

    @property
    def dim(self) -> int:
        return self.embeddings.shape[1]

    @classmethod
    def build(cls, text_encoder, path: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None,
              batch_size: int = 64, sample: int | None = None, cached_only: bool = False) -> "CaptionBank | None":
        """Embed the bank with a CLAP text encoder (``.encode(list[str])``, ``.model_id``), cached by
        model id and revision (a local folder's content hash), the bank file's sha256 and ``sample`` (at
        most that many captions, :func:`sample_captions`); ``cached_only``: None unless it is cached."""
        path = Path(path) if path is not None else default_bank_path()
        captions = sample_captions(load_captions(path), sample)
        model_id = str(getattr(text_encoder, "model_id", "unknown"))
        bank_sha = sha256_file(path)
        key = cache_key(model_id, getattr(text_encoder, "revision", None), bank_sha, sample)
        cache_file = Path(cache_dir or default_cache_dir()) / f"bank-{key}.safetensors"
        cached = _read_cache(cache_file, model_id, bank_sha, len(captions))
        if cached is not None or cached_only:
            return None if cached is None else cls(captions, cached, model_id)
        if batch_size < 1:
            raise CaptionBankError(f"batch_size must be >= 1, got {batch_size}")
        rows = []
        for s in range(0, len(captions), batch_size):
            if _EXITING.is_set():  # the interpreter is exiting: a background build stops between batches
                raise CaptionBankError("stopped: the process is exiting")
            rows.append(torch.as_tensor(text_encoder.encode(captions[s:s + batch_size])).float().cpu())
        emb = torch.cat(rows)
        bank = cls(captions, emb, model_id)
        atomic_save_safetensors(cache_file, {"embeddings": bank.embeddings}, {
            "model_id": model_id, "bank_sha256": bank_sha, "count": str(len(captions)),
            "format": f"fusemix.caption_bank.v{CACHE_VERSION}"})
        return bank

    @classmethod
    def build_in_background(cls, text_encoder, path: str | os.PathLike | None = None,
                            cache_dir: str | os.PathLike | None = None, starter: int = STARTER_CAPTIONS) -> "CaptionBank":
        """The whole bank when it is cached; else a seeded sample of ``starter`` captions, embedded now, that
        becomes the whole bank (``pending`` then 0) once a background thread at the lowest CPU
        priority has embedded and cached the rest. A failure there leaves the sample serving (logged)."""
        full = cls.build(text_encoder, path, cache_dir, cached_only=True)
        if full is not None:
            return full
        bank = cls.build(text_encoder, path, cache_dir, sample=starter)
        bank.pending = len(load_captions(path)) - len(bank)
        if bank.pending <= 0:
            return bank
        bank.complete.clear()

        def run():
            try:
                with contextlib.suppress(OSError, AttributeError):  # Linux: niceness is per thread
                    os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
                whole = cls.build(text_encoder, path, cache_dir)
                bank._rows, bank.pending = whole._rows, 0
            except Exception as exc:  # noqa: BLE001 - the sample keeps serving
                if not _EXITING.is_set():
                    logger.warning("caption bank: embedding the whole bank failed (%s); %d captions serve", exc,
                                   len(bank))
            finally:
                bank.complete.set()

        _BACKGROUND.append(threading.Thread(target=run, name="fusemix-caption-bank", daemon=True))
        _BACKGROUND[-1].start()
        return bank

    @torch.no_grad()
    def search(self, latents: torch.Tensor, k: int = 3) -> list[list[CaptionMatch]]:
        """Top-``k`` captions for each CLAP audio latent ([B, dim] or [dim]), best first."""
        latents = torch.as_tensor(latents)
        if latents.ndim == 1:
            latents = latents.unsqueeze(0)
        if latents.ndim != 2 or latents.shape[1] != self.dim:
            raise CaptionBankError(
                f"audio latents must have shape [B, {self.dim}] (CLAP {self.model_id}), got {tuple(latents.shape)}")
        if not torch.isfinite(latents).all():
            raise CaptionBankError("audio latents hold NaN or inf values")
        if not 1 <= k <= len(self):
            raise CaptionBankError(f"k must be between 1 and the bank size {len(self)}, got {k}")
        captions, embeddings = self._rows  # read once: a background build may swap them
        sim = F.normalize(latents.float().cpu(), dim=-1) @ embeddings.t()
        scores, idx = sim.topk(k, dim=1)
        return [[CaptionMatch(captions[i], float(s)) for s, i in zip(srow.tolist(), irow.tolist())]
                for srow, irow in zip(scores, idx)]


def _read_cache(path: Path, model_id: str, bank_sha: str, count: int) -> torch.Tensor | None:
    """The cached embeddings if the file is complete and describes this model and bank, else None."""
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if meta.get("model_id") != model_id or meta.get("bank_sha256") != bank_sha:
                return None
            emb = f.get_tensor("embeddings")
    except (SafetensorError, OSError, KeyError):
        return None  # unreadable cache: rebuild it (the rewrite is atomic)
    if emb.ndim != 2 or emb.shape[0] != count or not torch.isfinite(emb).all():
        return None
    return emb
