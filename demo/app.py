#!/usr/bin/env python
"""FuseMix demo: audio -> image, caption -> images, sound -> images and image -> captions.

    python demo/app.py                      # real checkpoints; tiny stand-ins (labelled) when offline
    python demo/app.py --profile tiny       # untrained random stand-ins, no downloads
    python demo/app.py --strict             # refuse to fall back to stand-ins
    python demo/app.py --gallery ~/photos --weights weights/   (or --weights user/fusemix-adapters)

Every flag has an environment variable (FUSEMIX_PROFILE, FUSEMIX_STRICT, FUSEMIX_GALLERY,
FUSEMIX_WEIGHTS, FUSEMIX_HOST, FUSEMIX_PORT, FUSEMIX_SD_MODEL, FUSEMIX_CLAP_MODEL,
FUSEMIX_REFERENCE_MODEL, FUSEMIX_VAE, FUSEMIX_DEVICE, FUSEMIX_TINY_ROOT; limits: FUSEMIX_MAX_UPLOAD_MB,
FUSEMIX_MAX_AUDIO_SECONDS, FUSEMIX_MAX_CAPTION_CHARS, FUSEMIX_QUEUE_SIZE, ...). ``build_demo()``
returns the ``gr.Blocks`` without loading a model: models load on the first request that needs them.
"""
from __future__ import annotations

import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[1]
# A Hugging Face Space runs `python demo/app.py` from a plain clone: the repo root is not on
# sys.path and fusemix may not be installed. Make both `fusemix` and `demo` importable.
if str(_ROOT) not in sys.path:
    try:
        import fusemix  # noqa: F401
    except ImportError:
        sys.path.insert(0, str(_ROOT))
    else:
        sys.path.append(str(_ROOT))  # only for `demo.models`; an installed fusemix still wins

import os  # noqa: E402

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported

import argparse  # noqa: E402
import functools  # noqa: E402
import html  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import unicodedata  # noqa: E402
from collections import OrderedDict  # noqa: E402
from typing import Any  # noqa: E402

import gradio as gr  # noqa: E402

from demo.models import (  # noqa: E402
    DEFAULT_GALLERY,
    DemoInputError,
    DemoModels,
    ProfileUnavailable,
    Resolution,
    Settings,
    resolve_profile,
)

logger = logging.getLogger("fusemix.demo")

EXAMPLES_DIR = Path(__file__).resolve().parent / "examples"
MAX_SEED = 2**31 - 1
THUMB_SIDE = 320
CAPTION_EXAMPLES = [
    "a cat with green eyes",
    "a rocket on a launch pad at dusk",
    "ancient silver coins",
    "a cup of coffee on a table",
    "galaxies in deep space",
]
IMAGE_EXAMPLE_FILES = ["chelsea.png", "rocket.jpg", "coffee.png"]

CSS = """
.standin-banner {background: #fff4d6; border: 2px solid #d49b00; border-radius: 8px; padding: 4px 12px;}
.standin-banner p, .standin-banner strong {color: #4a3500 !important;}
.route-note {opacity: 0.9;}
#generated-image img {width: 100%; height: 100%; object-fit: contain;}
"""


# --------------------------------------------------------------------------- input checks


def clean_caption(text: Any, max_chars: int, what: str = "caption") -> str:
    """A caption as the models will see it, or :class:`DemoInputError` saying what is wrong."""
    if text is None or (isinstance(text, str) and not text.strip()):
        raise DemoInputError(f"Type a {what} first: the {what} is empty.")
    if not isinstance(text, str):
        raise DemoInputError(f"The {what} must be text.")
    if len(text) > max_chars:
        raise DemoInputError(f"The {what} is {len(text):,} characters long; the limit is {max_chars} characters.")
    bad = sorted({c for c in text if (unicodedata.category(c) == "Cc" and c not in "\t\n\r")
                  or unicodedata.category(c) == "Cs"})
    if bad:
        codes = ", ".join(f"U+{ord(c):04X}" for c in bad[:5])
        raise DemoInputError(f"The {what} contains control characters ({codes}); remove them and try again.")
    text = " ".join(unicodedata.normalize("NFC", text).split())
    if not text:
        raise DemoInputError(f"Type a {what} first: the {what} is empty.")
    return text


def check_number(value: Any, name: str, lo: float, hi: float, integer: bool = False) -> float | int:
    """A slider / number value set through the UI or the API, within its allowed range."""
    if isinstance(value, bool) or value is None:
        raise DemoInputError(f"{name} must be a number between {lo:g} and {hi:g}.")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise DemoInputError(f"{name} must be a number between {lo:g} and {hi:g}.") from None
    if not math.isfinite(v) or not lo <= v <= hi:
        raise DemoInputError(f"{name} must be between {lo:g} and {hi:g}; got {value!r}.")
    if integer:
        if not v.is_integer():
            raise DemoInputError(f"{name} must be a whole number between {lo:g} and {hi:g}; got {value!r}.")
        return int(v)
    return v


def _upload_path(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, dict):  # FileData-like dicts
        value = value.get("path")
    return str(value) if value else None


def check_audio_upload(value: Any, limits) -> str:
    """Validate an uploaded / recorded sound from its size and header, before any decoding."""
    from fusemix.audio import AudioError, probe_audio

    path = _upload_path(value)
    if path is None:
        raise DemoInputError("Upload or record a sound first.")
    p = Path(path)
    if not p.is_file():
        raise DemoInputError("The uploaded sound could not be found on the server; upload it again.")
    size = p.stat().st_size
    if size == 0:
        raise DemoInputError("The uploaded file is empty (0 bytes).")
    if size > limits.max_upload_mb * 1024 * 1024:
        raise DemoInputError(f"The file is {size / 2**20:.1f} MB; the limit is {limits.max_upload_mb} MB.")
    try:
        info = probe_audio(p, max_bytes=limits.max_upload_mb * 1024 * 1024)
    except AudioError:
        raise DemoInputError("This file is not audio that can be read. Upload a WAV, FLAC, OGG or MP3 file.") from None
    if info.frames <= 0:
        raise DemoInputError("The sound is empty (zero length).")
    if info.duration > limits.max_audio_seconds:
        raise DemoInputError(f"The sound is {info.duration:,.1f} s long; the limit is "
                             f"{limits.max_audio_seconds:g} s. Trim it and try again.")
    if info.duration < limits.min_audio_seconds:
        raise DemoInputError(f"The sound is {info.duration:.2f} s long; it must be at least "
                             f"{limits.min_audio_seconds:g} s.")
    return str(p)


def decode_audio(path: str, sample_rate: int, limits):
    """Decode a checked upload to mono float32 at ``sample_rate``; corrupt or silent audio is refused."""
    from fusemix.audio import AudioError, load_audio

    try:
        return load_audio(path, sample_rate, max_seconds=limits.max_audio_seconds,
                          min_seconds=limits.min_audio_seconds, max_bytes=limits.max_upload_mb * 1024 * 1024,
                          reject_silent=True)
    except AudioError as exc:
        if "silent" in str(exc):
            raise DemoInputError("The sound is silent; record or upload something audible.") from None
        if "NaN" in str(exc):
            raise DemoInputError("The sound holds invalid samples (NaN or infinity).") from None
        raise DemoInputError("The audio file is corrupt or could not be decoded.") from None


def check_image_upload(value: Any, limits):
    """An uploaded image as an RGB PIL image (size checked first; decompression bombs refused)."""
    from fusemix.encoders.base import EncoderInputError
    from fusemix.encoders.image import open_image

    if value is None:
        raise DemoInputError("Upload an image first.")
    if hasattr(value, "convert"):  # already a PIL image
        return value.convert("RGB")
    path = _upload_path(value)
    if path is None:
        raise DemoInputError("Upload an image first.")
    p = Path(path)
    if not p.is_file() or p.stat().st_size == 0:
        raise DemoInputError("The uploaded image is empty or missing; upload it again.")
    if p.stat().st_size > limits.max_upload_mb * 1024 * 1024:
        raise DemoInputError(f"The image is over the {limits.max_upload_mb} MB limit.")
    check_image_header(p)
    try:
        return open_image(p)
    except EncoderInputError:
        raise DemoInputError("This file is not an image that can be read (PNG, JPEG, WebP, ...).") from None


def check_image_header(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) of an image file read from its header only (``Image.open`` without ``load``);
    DemoInputError when it is not an image or is over the library's pixel / aspect-ratio limits
    (``fusemix.encoders.image.check_image_size``). A 14 kB PNG can claim 10000 x 10000 px: decoding it
    cost 8.6 s and +930 MB, so this runs before anything decodes."""
    from PIL import Image

    from fusemix.encoders.base import EncoderInputError
    from fusemix.encoders.image import MAX_IMAGE_PIXELS, check_image_size

    try:
        with Image.open(path) as im:  # parses the header; pixel data is read only by load()
            w, h = (int(v) for v in im.size)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):  # PIL's own cap (or warning as error)
        raise DemoInputError(f"The image is too large: its header claims more pixels than the limit of "
                             f"{MAX_IMAGE_PIXELS / 1e6:g} M pixels.") from None
    except Exception:  # noqa: BLE001 - PIL cannot identify it: not an image we can use
        raise DemoInputError("This file is not an image that can be read (PNG, JPEG, WebP, ...).") from None
    try:
        check_image_size((w, h), "upload")
    except EncoderInputError as e:
        raise DemoInputError(f"This upload was refused: {e}. Resize or crop it and try again.") from None
    return w, h


# --------------------------------------------------------------------------- error handling


def _user_message(exc: BaseException) -> str | None:
    """The plain message of an expected, user-caused error; None for anything else."""
    from fusemix.audio import AudioError
    from fusemix.caption_bank import CaptionBankError
    from fusemix.encoders.base import EncoderInputError
    from fusemix.gallery import GalleryError
    from fusemix.generation import GenerationError, GenerationParamError
    from fusemix.retrieval import RetrievalError

    if isinstance(exc, (DemoInputError, GenerationParamError, AudioError, EncoderInputError, CaptionBankError)):
        return str(exc)
    if isinstance(exc, GalleryError):
        return f"The gallery cannot be used: {exc}"
    if isinstance(exc, RetrievalError):
        return f"This search cannot be run: {exc}"
    if isinstance(exc, GenerationError):
        return f"No usable image came out: {exc}"
    return None


def user_errors(fn):
    """Turn every failure into a gr.Error with a plain message; the server keeps serving."""
    from fusemix.checkpoint import CheckpointError

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except Exception as exc:  # noqa: BLE001 - nothing may take the server down
            msg = _user_message(exc)
            if msg is not None:
                raise gr.Error(html.escape(msg), print_exception=False) from None
            if isinstance(exc, (OSError, ImportError, CheckpointError)):
                logger.exception("model loading failed")
                raise gr.Error(html.escape(f"The models could not be loaded: {type(exc).__name__}: {str(exc)[:300]}"),
                               print_exception=False) from None
            logger.exception("unexpected error in %s", fn.__name__)
            raise gr.Error(f"Something went wrong on the server ({html.escape(type(exc).__name__)}). "
                           "The app is still running: try again or with another input.",
                           print_exception=False) from None

    return wrapper


def plain_image_errors(component: gr.Image) -> gr.Image:
    """Make an image input check an upload's header (size, aspect ratio) before Gradio decodes it, and
    answer a refused or unreadable upload with a plain message instead of Gradio's generic one.
    (Wrapping the instance's ``preprocess`` rather than subclassing: a Component subclass makes
    Gradio write a ``.pyi`` stub next to this file.)"""
    original = component.preprocess

    def preprocess(payload):
        path = payload.get("path") if isinstance(payload, dict) else getattr(payload, "path", None)
        if isinstance(path, (str, os.PathLike)) and Path(path).is_file():  # else Gradio's own handling
            try:
                check_image_header(path)  # gr.Image decodes the whole image: refuse from the header first
            except DemoInputError as exc:
                raise gr.Error(html.escape(str(exc)), print_exception=False) from None
        try:
            return original(payload)
        except Exception:  # noqa: BLE001 - PIL cannot open it: not an image we can use
            raise gr.Error("This file is not an image that can be read (PNG, JPEG, WebP, ...).",
                           print_exception=False) from None

    component.preprocess = preprocess
    return component


def ImageInput(**kwargs) -> gr.Image:  # noqa: N802 - a factory used like the component it returns
    """``gr.Image(**kwargs)`` for uploads, wrapped by :func:`plain_image_errors`: huge or extreme
    images are refused from their header before Gradio decodes them."""
    return plain_image_errors(gr.Image(**kwargs))


_atomic_cache_lock = threading.Lock()


def install_atomic_gradio_cache() -> bool:
    """Make Gradio's image cache writes atomic (idempotent; True when it patched, False when already done).

    ``gradio.processing_utils.save_pil_to_cache`` writes ``<cache>/<hash of the bytes>/<name>.<format>``
    in place, so when two requests return the same thumbnail at once, a download of the first can read
    the file while the second rewrites it and end early (``RemoteProtocolError`` in the load test,
    docs/reliability.md). This version writes a temporary file in the same folder and renames it over
    the target (and skips the write when the target exists: the name is the content's hash, and every
    file written here is complete). Same arguments, same returned path."""
    import uuid

    from gradio import processing_utils as pu

    with _atomic_cache_lock:
        if getattr(pu.save_pil_to_cache, "_fusemix_atomic", False):
            return False

        def save_pil_to_cache(img, cache_dir: str, name: str = "image", format: str = "webp") -> str:  # noqa: A002
            data = pu.encode_pil_to_bytes(img, format)
            d = Path(cache_dir) / pu.hash_bytes(data)
            d.mkdir(exist_ok=True, parents=True)
            target = (d / f"{name}.{format}").resolve()
            if not target.is_file():
                tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
                try:
                    with open(tmp, "xb") as f:  # "x": a new file, created with the usual umask
                        f.write(data)
                    os.replace(tmp, target)
                finally:
                    tmp.unlink(missing_ok=True)
            return str(target)

        try:  # keep Gradio's profiling hook (a no-op unless its profiling is on)
            from gradio.profiling import traced_sync

            save_pil_to_cache = functools.wraps(pu.save_pil_to_cache)(
                traced_sync("postprocess_save_pil_to_cache")(save_pil_to_cache))
        except ImportError:
            pass
        save_pil_to_cache._fusemix_atomic = True
        pu.save_pil_to_cache = save_pil_to_cache
        return True


# --------------------------------------------------------------------------- the demo's logic


class _Thumbs:
    """Small in-memory LRU of gallery thumbnails (files are read once, not per request)."""

    def __init__(self, size: int = 256):
        self.size, self.data, self.lock = size, OrderedDict(), threading.Lock()

    def get(self, path: str):
        from PIL import Image

        with self.lock:
            if path in self.data:
                self.data.move_to_end(path)
                return self.data[path]
        with Image.open(path) as im:
            im = im.convert("RGB")
            im.thumbnail((THUMB_SIDE, THUMB_SIDE))
        with self.lock:
            self.data[path] = im
            while len(self.data) > self.size:
                self.data.popitem(last=False)
        return im


class Demo:
    """The request handlers, independent of the UI layout (each returns what its outputs show)."""

    def __init__(self, models: DemoModels):
        self.models = models
        self.limits = models.settings.limits
        self.thumbs = _Thumbs()
        self.gen = generation_ranges(models)

    # -- labels ------------------------------------------------------------------------------
    def standin_line(self) -> str:
        return ("**Untrained stand-ins:** this output comes from tiny random models (tiny profile), "
                "not from trained checkpoints; it carries no meaning.\n\n") if self.models.standin else ""

    def _progress_load(self, progress, what: str, loaded: bool | None) -> None:
        if loaded is False:
            progress(0.05, desc=f"Loading {what} (first request only; later requests reuse it)")
        elif loaded is None:
            progress(0.05, desc=f"Preparing {what} (slow only the first time)")

    # -- audio -> image --------------------------------------------------------------------
    def audio_to_image(self, audio, route, steer_text, steer_weight, seed, steps, guidance, size,
                       progress=gr.Progress()):
        lim, g = self.limits, self.gen
        path = check_audio_upload(audio, lim)
        if route not in ("bridge", "captions"):
            raise DemoInputError("Route must be 'bridge' or 'captions'.")
        if route == "bridge" and not self.models.has_bridge:
            raise DemoInputError("No trained FuseMix bridge is installed; use the caption-bank baseline.")
        seed = check_number(seed, "Seed", 0, MAX_SEED, integer=True)
        steps = check_number(steps, "Steps", 1, g["max_steps"], integer=True)
        guidance = check_number(guidance, "Guidance", 0.0, g["max_guidance"])
        size = check_number(size, "Image size", min(g["sizes"]), max(g["sizes"]), integer=True)
        if size not in g["sizes"]:
            raise DemoInputError(f"Image size must be one of {g['sizes']}.")
        steer_weight = check_number(steer_weight, "Steering weight", 0.0, 1.0)
        steer = None
        if steer_text is not None and str(steer_text).strip():
            steer = clean_caption(steer_text, lim.max_caption_chars, "steering text")
        self._progress_load(progress, "the audio-to-image models", "audio-to-image" in self.models.loaded())
        a2i = self.models.audio_to_image()
        if route == "bridge" and a2i.bridge is None:
            raise DemoInputError(f"The installed FuseMix bridge cannot be used ({self.models.bridge_error}); "
                                 "use the caption-bank baseline.")
        progress(0.3, desc="Listening (CLAP)")
        wav = decode_audio(path, a2i.audio_encoder.sample_rate, lim)
        progress(0.5, desc="Generating the image")
        res = a2i.generate(wav, route=route, sampling_rate=a2i.audio_encoder.sample_rate, seed=seed,
                           steps=steps, guidance=guidance, height=size, width=size,
                           steer_prompt=steer, steer_weight=steer_weight if steer else 0.0, top_k=3)
        rows = [[m.caption, round(m.score, 4)] for m in (res.captions or [])]
        route_text = ("FuseMix conditioning bridge" + (" (random stand-in, untrained)" if self.models.standin
                                                        else " (trained)") if res.route == "bridge" else
                      "zero-training caption-bank baseline: CLAP matched the sound to the captions below, and "
                      "the best one was used as the prompt")
        lines = [self.standin_line() + f"**Route:** {route_text}."]
        if steer:
            lines.append(f"**Text steering:** \"{html.escape(steer)}\" at weight {steer_weight:g}.")
        lines.append(f"**Settings:** seed {seed}, {steps} step(s), guidance {guidance:g}, {size}x{size} px "
                     f"on {self.models.device}; took {res.timings.get('total', 0):.1f} s.")
        for n in res.notes:
            if res.route != "bridge" and n.startswith("bridge"):
                continue  # the bridge played no part in this image
            lines.append(f"- {html.escape(n)}")
        return res.image, rows, "\n\n".join(lines)

    # -- caption -> images ----------------------------------------------------------------
    def caption_to_images(self, caption, gallery_name, scorer, top_k, progress=gr.Progress()):
        text = clean_caption(caption, self.limits.max_caption_chars)
        k = check_number(top_k, "Top-k", 1, self.limits.max_top_k, integer=True)
        scorer = self._check_scorer(scorer, "text", "image")
        self._progress_load(progress, "the models and the gallery", None)
        space = self.models.space(scorer, "text", "image")
        gallery = self.models.image_gallery(scorer, gallery_name, space)
        progress(0.7, desc="Ranking the gallery")
        hits = gallery.search(space.embed("text", [text])[0], k)
        info = (self.standin_line() + f"**Scorer:** {self._scorer_text(scorer)}. **Gallery:** "
                f"{self._gallery_text(gallery_name, gallery)}. Scores are cosine similarities.")
        return self._gallery_items(hits), info

    # -- sound -> images ------------------------------------------------------------------
    def sound_to_images(self, audio, route, gallery_name, top_k, progress=gr.Progress()):
        lim = self.limits
        path = check_audio_upload(audio, lim)
        k = check_number(top_k, "Top-k", 1, lim.max_top_k, integer=True)
        if route not in ("fusemix", "baseline"):
            raise DemoInputError("Route must be 'fusemix' or 'baseline'.")
        self._progress_load(progress, "the models and the gallery", None)
        if route == "fusemix":
            if not self.models.has_fusion("audio", "image"):
                raise DemoInputError("No trained FuseMix audio and image adapters are installed; "
                                     "use the baseline route.")
            space = self.models.space("fusemix", "audio", "image")
            gallery = self.models.image_gallery("fusemix", gallery_name, space)
            wav = decode_audio(path, self.models.clap_audio().sample_rate, lim)
            progress(0.6, desc="Embedding the sound")
            q = space.embed("audio", [wav])[0]
            how = ("FuseMix shared space: the sound's audio adapter output ranks the images directly "
                   "(no audio-image pairs were used in training)")
            extra = ""
        else:
            enc = self.models.clap_audio()
            bank = self.models.caption_bank()
            wav = decode_audio(path, enc.sample_rate, lim)
            progress(0.5, desc="Matching the sound to captions (CLAP)")
            matches = bank.search(enc.encode([wav], progress=False), k=3)[0]
            space = self.models.space("reference", "text", "image")
            gallery = self.models.image_gallery("reference", gallery_name, space)
            q = space.embed("text", [matches[0].caption])[0]
            how = ("zero-training baseline: CLAP matched the sound to a caption, and the reference CLIP "
                   "ranked the images for that caption")
            extra = "\n\n**Matched captions:** " + "; ".join(
                f"\"{html.escape(m.caption)}\" ({m.score:.3f})" for m in matches)
        progress(0.8, desc="Ranking the gallery")
        hits = gallery.search(q, k)
        info = (self.standin_line() + f"**Route:** {how}. **Gallery:** "
                f"{self._gallery_text(gallery_name, gallery)}.{extra}")
        return self._gallery_items(hits), info

    # -- image -> captions ----------------------------------------------------------------
    def image_to_captions(self, image, scorer, top_k, progress=gr.Progress()):
        img = check_image_upload(image, self.limits)
        k = check_number(top_k, "Top-k", 1, self.limits.max_top_k, integer=True)
        scorer = self._check_scorer(scorer, "image", "text")
        self._progress_load(progress, "the models and the caption set", None)
        space = self.models.space(scorer, "image", "text")
        gallery = self.models.caption_gallery(scorer, space)
        progress(0.7, desc="Ranking the captions")
        hits = gallery.search(space.embed("image", [img])[0], k)
        rows = [[i + 1, h.item.meta.get("caption", h.item.key), round(h.score, 4), h.item.meta.get("source", "")]
                for i, h in enumerate(hits)]
        info = (self.standin_line() + f"**Scorer:** {self._scorer_text(scorer)}. Candidates: {len(gallery)} "
                "captions (the default photos' captions and fusemix's caption bank).")
        return rows, info

    # -- helpers --------------------------------------------------------------------------
    def _check_scorer(self, scorer, *modalities) -> str:
        if scorer == "reference":
            return scorer
        if scorer == "fusemix":
            if not self.models.has_fusion(*modalities):
                raise DemoInputError(f"No trained FuseMix {' and '.join(modalities)} adapters are installed; "
                                     "use the reference scorer.")
            return scorer
        raise DemoInputError("Scorer must be 'fusemix' or 'reference'.")

    def _scorer_text(self, scorer: str) -> str:
        if scorer == "reference":
            ref = "tiny random CLIP stand-in" if self.models.standin else self.models.settings.reference_model
            return f"reference CLIP, zero training ({html.escape(ref)})"
        return "FuseMix adapters" + (" (random stand-ins, untrained)" if self.models.standin else " (trained)")

    @staticmethod
    def _gallery_text(name: str, gallery) -> str:
        text = f"{html.escape(name)} ({len(gallery)} images"
        counts = {r: n for r, n in gallery.report.skipped_counts.items() if r != "not_media"}  # other files: fine
        skipped = sum(counts.values())
        if skipped:
            reasons = ", ".join(f"{n} {r.replace('_', ' ')}" for r, n in counts.items())
            text += f"; {skipped} file(s) skipped: {html.escape(reasons)}"
        return text + ")"

    def _gallery_items(self, hits) -> list[tuple[Any, str]]:
        out = []
        for rank, h in enumerate(hits, 1):
            title = h.item.meta.get("title") or Path(h.item.key).name
            out.append((self.thumbs.get(h.item.path), f"{rank}. {title} · {h.score:.3f}"))
        return out


def generation_ranges(models: DemoModels) -> dict:
    """Safe slider ranges and defaults for the profile and device (CPU Spaces get small ones)."""
    from fusemix.generation import default_params_for

    gpu = models.device.type == "cuda"
    if models.standin:
        return {"sizes": [64, 96, 128], "size": 64, "max_steps": 4, "steps": 2, "guidance": 1.0,
                "max_guidance": 10.0}
    d = default_params_for(models.settings.sd_model)
    fast = d["steps"] <= 4  # turbo / LCM checkpoints
    sizes = [512, 576, 640, 704, 768] if gpu else [256, 320, 384, 448, 512]
    # CPU: one step of sd-turbo at 512 px with TAESD is ~20 CPU-seconds (~10 s on 2 idle cores), measured
    steps = d["steps"] if gpu else (1 if fast else min(d["steps"], 12))
    return {"sizes": sizes, "size": 512, "max_steps": 50 if gpu else (8 if fast else 30), "steps": steps,
            "guidance": d["guidance"], "max_guidance": 10.0}


# --------------------------------------------------------------------------- the UI


def _banner(models: DemoModels):
    if not models.standin:
        return
    why = ""
    if models.resolution.fell_back:
        why = " " + html.escape(models.resolution.reason) + " The app started on the tiny profile instead."
    gr.Markdown("⚠️ **Untrained stand-ins: every output on this page comes from tiny random models, not from "
                "trained checkpoints, and means nothing.**" + why, elem_classes=["standin-banner"])


def _audio_examples() -> list[list[str]]:
    return [[str(p)] for p in sorted(EXAMPLES_DIR.glob("*.wav"))]


def _image_examples() -> list[list[str]]:
    try:
        from fusemix.default_gallery import default_gallery_dir

        root = default_gallery_dir()
    except Exception:  # noqa: BLE001 - scikit-image missing: no image examples
        return []
    return [[str(root / f)] for f in IMAGE_EXAMPLE_FILES if (root / f).is_file()]


def build_demo(profile: str | None = None, *, strict: bool | None = None, gallery: str | None = None,
               weights: str | None = None, settings: Settings | None = None,
               resolution: Resolution | None = None) -> gr.Blocks:
    """The demo as a ``gr.Blocks`` (queue configured); nothing is loaded until a request needs it.

    Arguments override ``FUSEMIX_*`` environment variables. The chosen profile is resolved now
    (a cheap check that the real checkpoints can be had); see :mod:`demo.models`.
    """
    if settings is None:
        settings = Settings.from_env(profile=profile, strict=strict, gallery=gallery, weights=weights)
    if resolution is None:
        resolution = resolve_profile(settings)
    install_atomic_gradio_cache()  # concurrent requests returning the same thumbnail (docs/reliability.md)
    models = DemoModels(settings, resolution)
    demo_logic = Demo(models)
    lim, g = settings.limits, demo_logic.gen
    title = "FuseMix demo" + (" — untrained stand-ins" if models.standin else "")

    with gr.Blocks(title=title) as demo:
        gr.Markdown("# FuseMix: sounds, captions and images through frozen encoders\n"
                    "Frozen pre-trained encoders, small fusion adapters trained with FuseMix "
                    "(Vouitsis et al., CVPR 2024), and zero-training baselines where no adapter is trained yet.")
        with gr.Tabs():
            # ---------------------------------------------------------------- audio -> image
            with gr.Tab("Audio → Image", id="audio-image"):
                _banner(models)
                if models.has_bridge:
                    routes = [("FuseMix bridge" + (" (untrained stand-in)" if models.standin else " (trained)"),
                               "bridge"), ("Caption-bank baseline (zero training)", "captions")]
                    note = ("The FuseMix bridge maps the sound's CLAP embedding straight into Stable Diffusion's "
                            "prompt space. The caption-bank baseline stays available for comparison.")
                    if models.standin:
                        note = ("Here the bridge is a random, untrained stand-in, so that the bridge route runs "
                                "end to end. " + note)
                else:
                    routes = [("Caption-bank baseline (zero training)", "captions")]
                    note = ("No trained FuseMix bridge is installed (weights/ holds none yet), so sounds go "
                            "through the zero-training caption-bank baseline: CLAP finds the captions closest "
                            "to the sound, and the best one becomes the prompt.")
                gr.Markdown(note, elem_classes=["route-note"])
                with gr.Row():
                    with gr.Column():
                        a_audio = gr.Audio(sources=["upload", "microphone"], type="filepath",
                                           label=f"Sound (up to {lim.max_audio_seconds:g} s, {lim.max_upload_mb} MB)")
                        a_route = gr.Radio(routes, value=routes[0][1], label="Route")
                        a_steer = gr.Textbox(label="Optional text steering", placeholder="e.g. an oil painting",
                                             max_lines=2)
                        a_steer_w = gr.Slider(0.0, 1.0, value=0.3, step=0.05, label="Steering weight")
                        with gr.Accordion("Generation settings", open=False):
                            a_seed = gr.Number(value=0, precision=0, minimum=0, maximum=MAX_SEED, label="Seed")
                            a_steps = gr.Slider(1, g["max_steps"], value=g["steps"], step=1, label="Steps")
                            a_guid = gr.Slider(0.0, g["max_guidance"], value=g["guidance"], step=0.5,
                                               label="Guidance")
                            a_size = gr.Dropdown(g["sizes"], value=g["size"], label="Image size (px)")
                        a_btn = gr.Button("Generate image", variant="primary", elem_id="generate-btn")
                    with gr.Column():
                        a_img = gr.Image(label="Generated image" + (" (untrained stand-in)" if models.standin
                                                                    else ""), type="pil", elem_id="generated-image",
                                         format="png", height=360)
                        a_caps = gr.Dataframe(headers=["matched caption", "score"], label="Matched captions "
                                              "(caption-bank route)", interactive=False)
                        a_info = gr.Markdown(elem_id="audio-image-info")
                if _audio_examples():
                    gr.Examples(_audio_examples(), inputs=[a_audio], label="Example sounds (synthesized)")
            # ---------------------------------------------------------------- caption -> images
            with gr.Tab("Caption → Images", id="caption-images"):
                _banner(models)
                scorers = _scorers(models, "text", "image")
                gr.Markdown(_scorer_note(models, "text", "image"), elem_classes=["route-note"])
                with gr.Row():
                    with gr.Column(scale=1):
                        c_text = gr.Textbox(label=f"Caption (up to {lim.max_caption_chars} characters)",
                                            placeholder="a cat with green eyes", elem_id="caption-input")
                        c_gal = gr.Dropdown(models.gallery_names(), value=DEFAULT_GALLERY, label="Gallery")
                        c_scorer = gr.Radio(scorers, value=scorers[0][1], label="Scorer")
                        c_k = gr.Slider(1, lim.max_top_k, value=min(6, lim.max_top_k), step=1, label="Top-k")
                        c_btn = gr.Button("Search", variant="primary", elem_id="search-btn")
                        gr.Examples([[c] for c in CAPTION_EXAMPLES], inputs=[c_text], label="Example captions")
                    with gr.Column(scale=2):
                        c_out = gr.Gallery(label="Top matches", columns=3, height="auto", elem_id="caption-gallery")
                        c_info = gr.Markdown()
            # ---------------------------------------------------------------- sound -> images
            with gr.Tab("Sound → Images", id="sound-images"):
                _banner(models)
                s_routes = []
                if models.has_fusion("audio", "image"):
                    s_routes.append(("FuseMix shared space" + (" (untrained stand-ins)" if models.standin else ""),
                                     "fusemix"))
                    s_note = ("FuseMix audio and image adapters share one space (trained against a common text "
                              "anchor), so a sound ranks images directly. The zero-training baseline stays "
                              "available for comparison.")
                    if models.standin:
                        s_note = "Here the adapters are random, untrained stand-ins. " + s_note
                else:
                    s_note = ("**No trained FuseMix audio and image adapters are installed**, so the shared-space "
                              "route is not available here. The zero-training baseline below matches the sound to "
                              "a caption with CLAP, then ranks the images for it with the reference CLIP.")
                s_routes.append(("Baseline: CLAP caption → reference CLIP (zero training)", "baseline"))
                gr.Markdown(s_note, elem_classes=["route-note"])
                with gr.Row():
                    with gr.Column(scale=1):
                        s_audio = gr.Audio(sources=["upload", "microphone"], type="filepath",
                                           label=f"Sound (up to {lim.max_audio_seconds:g} s)")
                        s_route = gr.Radio(s_routes, value=s_routes[0][1], label="Route")
                        s_gal = gr.Dropdown(models.gallery_names(), value=DEFAULT_GALLERY, label="Gallery")
                        s_k = gr.Slider(1, lim.max_top_k, value=min(6, lim.max_top_k), step=1, label="Top-k")
                        s_btn = gr.Button("Find images", variant="primary")
                        if _audio_examples():
                            gr.Examples(_audio_examples(), inputs=[s_audio], label="Example sounds (synthesized)")
                    with gr.Column(scale=2):
                        s_out = gr.Gallery(label="Top matches", columns=3, height="auto")
                        s_info = gr.Markdown()
            # ---------------------------------------------------------------- image -> captions
            with gr.Tab("Image → Captions", id="image-captions"):
                _banner(models)
                i_scorers = _scorers(models, "image", "text")
                gr.Markdown(_scorer_note(models, "image", "text"), elem_classes=["route-note"])
                with gr.Row():
                    with gr.Column(scale=1):
                        i_img = ImageInput(type="filepath", label="Image", sources=["upload", "clipboard"])
                        i_scorer = gr.Radio(i_scorers, value=i_scorers[0][1], label="Scorer")
                        i_k = gr.Slider(1, lim.max_top_k, value=min(5, lim.max_top_k), step=1, label="Top-k")
                        i_btn = gr.Button("Find captions", variant="primary")
                        if _image_examples():
                            gr.Examples(_image_examples(), inputs=[i_img], label="Example photos (scikit-image)")
                    with gr.Column(scale=2):
                        i_out = gr.Dataframe(headers=["rank", "caption", "score", "from"], interactive=False,
                                             label="Closest captions")
                        i_info = gr.Markdown()
            # ---------------------------------------------------------------- about
            with gr.Tab("About", id="about"):
                _banner(models)
                gr.Markdown(_about(models))

        gen_kw = dict(concurrency_limit=lim.generation_concurrency, concurrency_id="generation")
        search_kw = dict(concurrency_limit=lim.search_concurrency, concurrency_id="search")
        a_btn.click(user_errors(demo_logic.audio_to_image),
                    [a_audio, a_route, a_steer, a_steer_w, a_seed, a_steps, a_guid, a_size],
                    [a_img, a_caps, a_info], api_name="audio_to_image", **gen_kw)
        c_btn.click(user_errors(demo_logic.caption_to_images), [c_text, c_gal, c_scorer, c_k], [c_out, c_info],
                    api_name="caption_to_images", **search_kw)
        c_text.submit(user_errors(demo_logic.caption_to_images), [c_text, c_gal, c_scorer, c_k], [c_out, c_info],
                      api_visibility="private", **search_kw)
        s_btn.click(user_errors(demo_logic.sound_to_images), [s_audio, s_route, s_gal, s_k], [s_out, s_info],
                    api_name="sound_to_images", **search_kw)
        i_btn.click(user_errors(demo_logic.image_to_captions), [i_img, i_scorer, i_k], [i_out, i_info],
                    api_name="image_to_captions", **search_kw)

    demo.queue(max_size=lim.queue_size, default_concurrency_limit=lim.search_concurrency)
    demo.fusemix = demo_logic  # for launch() and tests
    return demo


def _scorers(models: DemoModels, *modalities: str) -> list[tuple[str, str]]:
    ref = ("Reference CLIP (zero training" + (", untrained stand-in)" if models.standin else ")"), "reference")
    if models.has_fusion(*modalities):
        return [("FuseMix adapters" + (" (untrained stand-ins)" if models.standin else ""), "fusemix"), ref]
    return [ref]


def _scorer_note(models: DemoModels, *modalities: str) -> str:
    pair = " and ".join(modalities)
    if models.has_fusion(*modalities):
        if models.standin:
            return (f"Random, untrained stand-in FuseMix {pair} adapters run here (so the FuseMix route runs end "
                    "to end); the reference CLIP (a tiny random stand-in too) stays selectable.")
        return (f"FuseMix {pair} adapters are installed and used by default; the reference CLIP (zero training) "
                "stays selectable for comparison.")
    return (f"**No trained FuseMix {pair} adapters are installed** (weights/ holds none yet), so this tab uses the "
            "zero-training reference: a CLIP model scores the captions and images as it ships.")


def _about(models: DemoModels) -> str:
    d = models.describe()
    lim = models.settings.limits
    lines = ["## What runs here", f"- Profile: **{d['profile']}**" +
             (f" (asked for {d['requested']}; {html.escape(d['reason'])})" if d["reason"] else ""),
             f"- Device: {d['device']}"]
    lines += [f"- {k}: `{v}`" for k, v in d["models"].items()]
    if d["adapters"]:
        for a in d["adapters"]:
            lines.append(f"- FuseMix {a['kind']} adapter ({', '.join(a['modalities'])})" +
                         (" — random stand-in" if a["standin"] else f" from `{a['path']}`"))
    else:
        lines.append("- FuseMix adapters: none installed (see weights/README.md for how to train and publish them)")
    for p in d["adapter_problems"]:
        lines.append(f"- note: {html.escape(p)}")
    lines += ["", "## Limits",
              f"- uploads up to {lim.max_upload_mb} MB; sounds {lim.min_audio_seconds:g}–{lim.max_audio_seconds:g} s "
              f"(checked from the file header before decoding); captions up to {lim.max_caption_chars} characters",
              f"- image generation runs {lim.generation_concurrency} at a time; at most {lim.queue_size} requests "
              "wait in the queue",
              "", "## Default gallery", "Real photographs shipped with scikit-image:", ""]
    try:
        from fusemix.default_gallery import licence_table

        lines.append(licence_table())
    except Exception:  # noqa: BLE001
        lines.append("(scikit-image is not installed)")
    lines += ["", "Example sounds were synthesized for this project (numpy tones and noise, espeak-ng speech)."]
    return "\n".join(lines)


# --------------------------------------------------------------------------- launching


def launch_kwargs(settings: Settings) -> dict:
    """What ``demo.launch`` needs besides the Blocks (limits, allowed example files, styling)."""
    allowed = [str(EXAMPLES_DIR)]
    allowed += [str(Path(p[0]).parent) for p in _image_examples()[:1]]
    return {"server_name": settings.host, "server_port": settings.port,
            "max_file_size": f"{settings.limits.max_upload_mb}mb", "allowed_paths": allowed, "css": CSS,
            "footer_links": ["api", "gradio"]}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="FuseMix Gradio demo", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--profile", choices=["real", "tiny"], default=None,
                   help="real: hub checkpoints (default); tiny: untrained random stand-ins [FUSEMIX_PROFILE]")
    p.add_argument("--strict", action="store_true", default=None,
                   help="exit instead of falling back to the tiny stand-ins [FUSEMIX_STRICT]")
    p.add_argument("--gallery", default=None, help="a folder of images offered next to the default gallery "
                                                   "[FUSEMIX_GALLERY]")
    p.add_argument("--weights", default=None, help="folder or hub repo id with trained FuseMix adapters "
                                                   "(default: weights/) [FUSEMIX_WEIGHTS]")
    p.add_argument("--host", default=None, help="interface to bind, e.g. 0.0.0.0 [FUSEMIX_HOST, GRADIO_SERVER_NAME]")
    p.add_argument("--port", type=int, default=None, help="port [FUSEMIX_PORT, GRADIO_SERVER_PORT]")
    p.add_argument("--sd-model", default=None, help="Stable Diffusion checkpoint [FUSEMIX_SD_MODEL]")
    p.add_argument("--clap-model", default=None, help="CLAP checkpoint [FUSEMIX_CLAP_MODEL]")
    p.add_argument("--reference-model", default=None, help="reference CLIP checkpoint [FUSEMIX_REFERENCE_MODEL]")
    p.add_argument("--vae", default=None, help="auto (TAESD decoder on CPU, the checkpoint's VAE on GPU), full, or "
                                               "an AutoencoderTiny id [FUSEMIX_VAE]")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda when present) "
                                                   "[FUSEMIX_DEVICE]")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    args = parse_args(argv)
    t0 = time.perf_counter()
    try:
        settings = Settings.from_env(profile=args.profile, strict=args.strict, gallery=args.gallery,
                                     weights=args.weights, host=args.host, port=args.port, sd_model=args.sd_model,
                                     clap_model=args.clap_model, reference_model=args.reference_model,
                                     vae=args.vae, device=args.device)
        resolution = resolve_profile(settings)
    except (ValueError, ProfileUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    if resolution.fell_back:
        print(f"NOTE: {resolution.reason}\nStarting on the TINY profile: every output comes from untrained random "
              "stand-ins (use --strict to exit instead).", file=sys.stderr, flush=True)
    demo = build_demo(settings=settings, resolution=resolution)
    import fusemix

    print(f"fusemix {fusemix.__version__} from {Path(fusemix.__file__).resolve().parent}", flush=True)
    print(f"profile: {resolution.profile}; app built in {time.perf_counter() - t0:.1f} s; models load on first use",
          flush=True)
    demo.launch(**launch_kwargs(settings))


if __name__ == "__main__":
    main()
