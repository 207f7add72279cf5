#!/usr/bin/env python
"""FuseMix demo: audio -> image, caption -> images, sound -> images and image -> captions.

    python demo/app.py [--profile tiny] [--mcp]   # real checkpoints (offline: labelled tiny stand-ins); MCP too

Every flag and limit has an environment variable (``--help``; docs/space.md). ``build_demo()`` returns
the ``gr.Blocks`` without loading a model: models load on first use (on ZeroGPU: at start-up, demo/zerogpu.py).
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import html
import json
import logging
import math
import os
import sys
import threading
import time
import unicodedata
from pathlib import Path
from typing import Any

_ROOT = Path(__file__).resolve().parents[1]
# A Hugging Face Space runs `python demo/app.py` from a plain clone: the repo root is not on sys.path and
# fusemix may not be installed. Appended, it makes `demo` and `fusemix` importable; an installed fusemix wins.
if str(_ROOT) not in sys.path:
    sys.path.append(str(_ROOT))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported
from fusemix.conventions import use_persistent_storage  # noqa: E402

use_persistent_storage()  # a Space's /data keeps the hub and fusemix caches across restarts: set before hub imports

import gradio as gr  # noqa: E402
from PIL import Image  # noqa: E402

import fusemix  # noqa: E402
from demo import zerogpu  # noqa: E402
from demo.gradio_patches import install_atomic_gradio_cache, read_uploads_with  # noqa: E402
from demo.models import PROFILES, DemoInputError, DemoModels, Settings  # noqa: E402
from demo.models import ProfileUnavailable, Resolution, resolve_profile  # noqa: E402
from fusemix.audio import AudioError, InvalidSamplesError, SilentAudioError, UndecodableAudioError  # noqa: E402
from fusemix.audio import load_audio, probe_audio  # noqa: E402
from fusemix.caption_bank import CaptionBankError  # noqa: E402
from fusemix.checkpoint import CheckpointError  # noqa: E402
from fusemix.default_gallery import default_gallery_dir, licence_table  # noqa: E402
from fusemix.encoders.base import EncoderInputError  # noqa: E402
from fusemix.encoders.image import MAX_IMAGE_PIXELS, check_image_size  # noqa: E402
from fusemix.gallery import GalleryError  # noqa: E402
from fusemix.generation import GenerationError, GenerationParamError  # noqa: E402
from fusemix.retrieval import RetrievalError  # noqa: E402

logger = logging.getLogger("fusemix.demo")
EXAMPLES_DIR = Path(__file__).resolve().parent / "examples"
# the UI's prose (titles, notes, labels, flag help), kept as data apart from the layout
T = json.loads((Path(__file__).resolve().parent / "ui_text.json").read_text(encoding="utf-8"))
MAX_SEED = 2**31 - 1
THUMB_SIDE = 320


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
    try:
        if isinstance(value, bool):
            raise TypeError
        v = float(value)  # None, text, lists: TypeError or ValueError
    except (TypeError, ValueError):
        raise DemoInputError(f"{name} must be a number between {lo:g} and {hi:g}.") from None
    if not math.isfinite(v) or not lo <= v <= hi:
        raise DemoInputError(f"{name} must be between {lo:g} and {hi:g}; got {value!r}.")
    if integer and not v.is_integer():
        raise DemoInputError(f"{name} must be a whole number between {lo:g} and {hi:g}; got {value!r}.")
    return int(v) if integer else v


def _upload(value: Any, what: str, limits) -> Path:
    """The path of an uploaded ``what`` (a path or Gradio's FileData dict): present, not empty, within the limit."""
    path = value.get("path") if isinstance(value, dict) else value
    if not path:
        raise DemoInputError("Upload or record a sound first." if what == "sound" else "Upload an image first.")
    p = Path(path)
    if not p.is_file():
        raise DemoInputError(f"The uploaded {what} could not be found on the server; upload it again.")
    size = p.stat().st_size
    if size == 0:
        raise DemoInputError(f"The uploaded {what} is empty (0 bytes).")
    if size > limits.max_upload_mb * 2**20:
        raise DemoInputError(f"The {what} is {size / 2**20:.1f} MB; the limit is {limits.max_upload_mb} MB.")
    return p


def check_audio_upload(value: Any, limits) -> str:
    """An uploaded / recorded sound, checked from its size and header before any decoding."""
    p = _upload(value, "sound", limits)
    info = probe_audio(p, max_bytes=limits.max_upload_mb * 2**20)  # not audio: UndecodableAudioError
    if info.frames <= 0:
        raise DemoInputError("The sound is empty (zero length).")
    if info.duration > limits.max_audio_seconds:
        raise DemoInputError(f"The sound is {info.duration:,.1f} s long; the limit is "
                             f"{limits.max_audio_seconds:g} s. Trim it and try again.")
    if info.duration < limits.min_audio_seconds:
        raise DemoInputError(f"The sound is {info.duration:.2f} s long; it must be at least "
                             f"{limits.min_audio_seconds:g} s.")
    return str(p)


def check_image_upload(value: Any, limits):
    """An uploaded image as an RGB PIL image, its header checked against fusemix's pixel and aspect limits
    (``check_image_size``) before anything decodes: a few kB of PNG can claim 100 M pixels."""
    if hasattr(value, "convert"):  # already read by the upload check (read_uploads_with)
        return value.convert("RGB")
    p = _upload(value, "image", limits)
    try:
        with Image.open(p) as im:  # parses the header; pixel data is read only by load()
            check_image_size(im.size, "upload")
            return im.convert("RGB")
    except EncoderInputError as exc:
        raise DemoInputError(f"This upload was refused: {exc}. Resize or crop it and try again.") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):  # PIL's own cap (or warning as error)
        raise DemoInputError(f"The image is too large: its header claims more pixels than the limit of "
                             f"{MAX_IMAGE_PIXELS / 1e6:g} M pixels.") from None
    except Exception:  # noqa: BLE001 - PIL cannot identify or decode it: not an image we can use
        raise DemoInputError("This file is not an image that can be read (PNG, JPEG, WebP, ...).") from None


# --------------------------------------------------------------------------- error messages


# exception types -> what the user reads ({exc}: its text) and whether to log it; the first match wins
USER_MESSAGES = [
    ((DemoInputError, GenerationParamError, EncoderInputError, CaptionBankError), "{exc}", False),
    ((SilentAudioError,), "The sound is silent; record or upload something audible.", False),
    ((InvalidSamplesError,), "The sound holds invalid samples (NaN or infinity).", False),
    ((UndecodableAudioError,), "This file is not audio that can be read. Upload a WAV, FLAC, OGG or MP3 file.", False),
    ((AudioError,), "The audio file is corrupt or could not be decoded.", False),
    ((GalleryError,), "The gallery cannot be used: {exc}", False),
    ((RetrievalError,), "This search cannot be run: {exc}", False),
    ((GenerationError,), "No usable image came out: {exc}", False),
    ((OSError, ImportError, CheckpointError), "The models could not be loaded: {name}: {short}", True),
    ((Exception,), "Something went wrong on the server ({name}). The app is still running: try again or with "
                   "another input.", True),
]


def user_message(exc: BaseException) -> str:
    """The plain, HTML-escaped message for ``exc`` (from :data:`USER_MESSAGES`)."""
    template, log = next((m, log) for types, m, log in USER_MESSAGES if isinstance(exc, types))
    if log:
        logger.error("request failed: %s", type(exc).__name__, exc_info=exc)
    return html.escape(template.format(exc=exc, name=type(exc).__name__, short=str(exc)[:300]))


def user_errors(fn):
    """Turn every failure of a handler into a gr.Error with a plain message; the server keeps serving."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except Exception as exc:  # noqa: BLE001 - nothing may take the server down
            raise gr.Error(user_message(exc), print_exception=False) from None

    return wrapper


def served(handler, name: str, seconds: int):
    """``handler`` as served: plain errors, its API / MCP docstring (ui_text.json "api"), spaces.GPU on ZeroGPU."""
    fn = user_errors(handler)
    fn.__doc__ = "\n".join(T["api"][name])
    return zerogpu.gpu(seconds)(fn)


# --------------------------------------------------------------------------- the request handlers


@functools.lru_cache(maxsize=256)
def _thumbnail(path: str):
    """A gallery file as a small RGB thumbnail, read once and shared by requests."""
    with Image.open(path) as im:
        im = im.convert("RGB")
    im.thumbnail((THUMB_SIDE, THUMB_SIDE))
    return im


class Demo:
    """The request handlers apart from the layout; each returns what its outputs show (API docs: ui_text.json)."""

    def __init__(self, models: DemoModels):
        self.models = models
        self.limits = models.settings.limits
        self.gen = zerogpu.generation_ranges(models.standin, models.device, models.settings.sd_model)

    def _info(self, text: str) -> str:
        return (T["standin_line"] if self.models.standin else "") + text

    def _decode(self, path: str, sample_rate: int):
        """A checked upload as mono float32 at ``sample_rate``; silent audio is refused."""
        lim = self.limits
        return load_audio(path, sample_rate, max_seconds=lim.max_audio_seconds, min_seconds=lim.min_audio_seconds,
                          max_bytes=lim.max_upload_mb * 2**20, reject_silent=True)

    def audio_to_image(self, audio: str, route: str, steer_text: str, steer_weight: float, seed: int, steps: int,
                       guidance: float, size: int, progress=gr.Progress()) -> tuple[Image.Image, Any, str]:
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
        given = steer_text is not None and str(steer_text).strip()
        steer = clean_caption(steer_text, lim.max_caption_chars, "steering text") if given else None
        if "audio_to_image" not in self.models.loaded():
            progress(0.05, desc="Loading the audio-to-image models (first request only; later requests reuse it)")
        a2i = self.models.audio_to_image()
        live = self.models.live_bridge_for(a2i)  # attaches a bridge trained here once it is ready
        fallback = None
        if route == "bridge" and a2i.bridge is None:
            if self.models.bridge_entry is not None:
                raise DemoInputError(f"The installed FuseMix bridge cannot be used ({self.models.bridge_error}); "
                                     "use the caption-bank baseline.")
            route, fallback = "captions", live or T["live_pending"]
        progress(0.3, desc="Listening (CLAP)")
        wav = self._decode(path, a2i.audio_encoder.sample_rate)
        progress(0.5, desc="Generating the image")
        res = a2i.generate(wav, route=route, sampling_rate=a2i.audio_encoder.sample_rate, seed=seed,
                           steps=steps, guidance=guidance, height=size, width=size,
                           steer_prompt=steer, steer_weight=steer_weight if steer else 0.0, top_k=3)
        rows = [[m.caption, round(m.score, 4)] for m in (res.captions or [])]
        trained = live or ("random stand-in, untrained" if self.models.standin else "trained")
        how = T["route_text"]["bridge" if res.route == "bridge" else "captions"].format(trained=trained)
        lines = [self._info(f"**Route:** {how}.")]
        if fallback:
            lines.insert(0, f"**The bridge route answered through the caption-bank baseline:** {html.escape(fallback)}")
        if steer:
            lines.append(f"**Text steering:** \"{html.escape(steer)}\" at weight {steer_weight:g}.")
        lines.append(f"**Settings:** seed {seed}, {steps} step(s), guidance {guidance:g}, {size}x{size} px "
                     f"on {self.models.device}; took {res.timings.get('total', 0):.1f} s.")
        # notes about the bridge only where the bridge made this image
        lines += [f"- {html.escape(n)}" for n in res.notes if res.route == "bridge" or not n.startswith("bridge")]
        return res.image, rows, "\n\n".join(lines)

    def caption_to_images(self, caption: str, gallery_name: str, scorer: str, top_k: int, progress=gr.Progress()):
        text = clean_caption(caption, self.limits.max_caption_chars)
        k = check_number(top_k, "Top-k", 1, self.limits.max_top_k, integer=True)
        progress(0.05, desc="Preparing the models and the gallery (slow only the first time)")
        space = self.models.space(scorer, "text", "image")
        gallery = self.models.image_gallery(scorer, gallery_name, space)
        progress(0.7, desc="Ranking the gallery")
        hits = gallery.search(space.embed("text", [text])[0], k)
        return self._gallery_items(hits), self._info(
            f"**Scorer:** {self._scorer_text(scorer)}. **Gallery:** {self._gallery_text(gallery_name, gallery)}. "
            "Scores are cosine similarities.")

    def sound_to_images(self, audio: str, route: str, gallery_name: str, top_k: int, progress=gr.Progress()):
        path = check_audio_upload(audio, self.limits)
        k = check_number(top_k, "Top-k", 1, self.limits.max_top_k, integer=True)
        if route not in ("fusemix", "baseline"):
            raise DemoInputError("Route must be 'fusemix' or 'baseline'.")
        progress(0.05, desc="Preparing the models and the gallery (slow only the first time)")
        m, extra, how, enc = self.models, "", None, self.models.clap_audio()
        wav = self._decode(path, enc.sample_rate)
        adapter, live = m.sound_adapter() if route == "fusemix" else (None, None)
        scorer = "fusemix" if route == "fusemix" and adapter is None and not m.wants_live_sound else "reference"
        space = m.space(scorer, "audio" if scorer == "fusemix" else "text", "image")
        if route == "fusemix" and scorer == "reference" and adapter is None:  # training (or failed): say so
            route, extra = "baseline", f"\n\n**The FuseMix route answered through the baseline:** " \
                                       f"{html.escape(live or T['live_pending'])}"
        progress(0.5, desc="Embedding the sound")
        if adapter is not None:  # CLAP audio -> adapter -> CLIP text space: the reference CLIP's image gallery
            query = adapter.embed(enc.encode([wav], progress=False).to(m.device), "audio")[0].cpu()
            how = T["route_text"]["adapter"].format(trained=live or "installed")
        elif route == "fusemix":
            query = space.embed("audio", [wav])[0]
        else:
            matches = m.caption_bank().search(enc.encode([wav], progress=False), k=3)[0]
            query = space.embed("text", [matches[0].caption])[0]
            extra += "\n\n**Matched captions:** " + "; ".join(
                f"\"{html.escape(x.caption)}\" ({x.score:.3f})" for x in matches)
        gallery = m.image_gallery(scorer, gallery_name, space)
        progress(0.8, desc="Ranking the gallery")
        hits = gallery.search(query, k)
        return self._gallery_items(hits), self._info(
            f"**Route:** {how or T['route_text'][route]}. **Gallery:** {self._gallery_text(gallery_name, gallery)}."
            f"{extra}")

    def image_to_captions(self, image: str, scorer: str, top_k: int, progress=gr.Progress()) -> tuple[Any, str]:
        img = check_image_upload(image, self.limits)
        k = check_number(top_k, "Top-k", 1, self.limits.max_top_k, integer=True)
        progress(0.05, desc="Preparing the models and the caption set (slow only the first time)")
        space = self.models.space(scorer, "image", "text")
        gallery = self.models.caption_gallery(scorer, space)
        progress(0.7, desc="Ranking the captions")
        hits = gallery.search(space.embed("image", [img])[0], k)
        rows = [[i, h.item.meta.get("caption", h.item.key), round(h.score, 4), h.item.meta.get("source", "")]
                for i, h in enumerate(hits, 1)]
        return rows, self._info(f"**Scorer:** {self._scorer_text(scorer)}. Candidates: {len(gallery)} captions "
                                "(the default photos' captions and fusemix's caption bank).")

    def _scorer_text(self, scorer: str) -> str:
        if scorer == "reference":
            ref = "tiny random CLIP stand-in" if self.models.standin else self.models.settings.reference_model
            return f"reference CLIP, zero training ({html.escape(ref)})"
        return "FuseMix adapters" + (" (random stand-ins, untrained)" if self.models.standin else " (trained)")

    @staticmethod
    def _gallery_text(name: str, gallery) -> str:
        text = f"{html.escape(getattr(gallery, 'note', None) or name)} ({len(gallery)} images"  # a stand-in says so
        counts = {r: n for r, n in gallery.report.skipped_counts.items() if r != "not_media"}  # other files: fine
        if counts:
            reasons = ", ".join(f"{n} {r.replace('_', ' ')}" for r, n in counts.items())
            text += f"; {sum(counts.values())} file(s) skipped: {html.escape(reasons)}"
        return text + ")"

    @staticmethod
    def _gallery_items(hits) -> list[tuple[Any, str]]:
        return [(_thumbnail(h.item.path), f"{rank}. {h.item.meta.get('title') or Path(h.item.key).name} · "
                                          f"{h.score:.3f}") for rank, h in enumerate(hits, 1)]


# --------------------------------------------------------------------------- the UI


def _banner(models: DemoModels) -> None:
    if models.standin:
        res = models.resolution
        why = T["banner_why"].format(reason=html.escape(res.reason)) if res.fell_back else ""
        gr.Markdown(T["banner"] + why, elem_classes=["standin-banner"])


@contextlib.contextmanager
def _tab(models: DemoModels, name: str, available: bool):
    """A tab with the stand-in banner and its route note; yields the (label, value) choices to offer
    (the FuseMix one only when its adapters are ``available``)."""
    tab = T["tabs"][name]
    with gr.Tab(tab["title"], id=tab["id"]):
        _banner(models)
        state = "none" if not available else "standin" if models.standin else "trained"
        gr.Markdown(tab["notes"][state], elem_classes=["route-note"])
        offered = ([tab["fusemix"]] if available else []) + [tab["baseline"]]
        yield [(c[1 if models.standin else 0], c[2]) for c in offered]


def _examples(kind: str) -> list[list[str]]:
    if kind == "audio":
        return [[str(p)] for p in sorted(EXAMPLES_DIR.glob("*.wav"))]
    if kind == "caption":
        return [[c] for c in T["caption_examples"]]
    root = default_gallery_dir()
    return [[str(root / f)] for f in T["image_example_files"] if (root / f).is_file()]


def _status_line(fn, elem_id: str | None, api_name: str | None) -> None:
    """A line showing ``fn()``, refreshed every 3 s outside the queue (polls never wait behind searches);
    the same event is the API endpoint ``api_name`` (None: not in the API)."""
    md = gr.Markdown(fn(), elem_id=elem_id, elem_classes=["route-note"])
    gr.Timer(3.0).tick(fn, None, md, queue=False, show_progress="hidden",
                       **({"api_name": api_name} if api_name else {"api_visibility": "private"}))


def _gallery_picker(models: DemoModels):
    """The gallery dropdown (the hub photos first when offered) under the hub gallery's progress line."""
    if models.hub is not None:
        _status_line(models.hub.status, None, None)
    return gr.Dropdown(models.gallery_names(), value=models.gallery_names()[0], label="Gallery")


def _search_tab(models: DemoModels, name: str, handler, available: bool, query, inputs: tuple[str, ...],
                results, examples: str, k: int = 6, status=None) -> None:
    """One search tab: ``inputs`` orders the query, the choice of scorer / route, the gallery and top-k as
    ``handler`` takes them (and as they are laid out); ``query`` and ``results`` make those components;
    ``status``: a live status line (a function, also served as an API endpoint of its name)."""
    lim, tab = models.settings.limits, T["tabs"][name]
    with _tab(models, name, available) as choices:
        with gr.Row():
            with gr.Column(scale=1):
                make = {"query": lambda: query(elem_id=f"{tab['id']}-query"),
                        "choice": lambda: gr.Radio(choices, value=choices[0][1], label=tab["radio"]),
                        "gallery": lambda: _gallery_picker(models),
                        "k": lambda: gr.Slider(1, lim.max_top_k, value=min(k, lim.max_top_k), step=1, label="Top-k")}
                parts = [make[n]() for n in inputs]
                run = gr.Button(tab["button"], variant="primary", elem_id=f"{tab['id']}-run")
                if _examples(examples):
                    gr.Examples(_examples(examples), inputs=parts[:1], label=T["example_labels"][examples])
                if status is not None:
                    _status_line(status, f"{tab['id']}-status", status.__name__)
            with gr.Column(scale=2):
                outputs = [results(elem_id=f"{tab['id']}-results"), gr.Markdown(elem_id=f"{tab['id']}-info")]
    kw = dict(concurrency_limit=lim.search_concurrency, concurrency_id="search")
    run.click(fn := served(handler, name, zerogpu.DURATIONS["search"]), parts, outputs, api_name=name, **kw)
    if isinstance(parts[0], gr.Textbox):  # Enter in the text box searches too
        parts[0].submit(fn, parts, outputs, api_visibility="private", **kw)


def _audio_tab(models: DemoModels, logic: Demo) -> None:
    lim, g, tab = models.settings.limits, logic.gen, T["tabs"]["audio_to_image"]
    with _tab(models, "audio_to_image", models.has_bridge) as routes:
        with gr.Row():
            with gr.Column():
                inputs = [gr.Audio(sources=["upload", "microphone"], type="filepath", elem_id="audio-image-query",
                                   label=f"Sound (up to {lim.max_audio_seconds:g} s, {lim.max_upload_mb} MB)"),
                          gr.Radio(routes, value=routes[0][1], label=tab["radio"]),
                          gr.Textbox(label="Optional text steering", placeholder="e.g. an oil painting", max_lines=2),
                          gr.Slider(0.0, 1.0, value=0.3, step=0.05, label="Steering weight")]
                with gr.Accordion("Generation settings", open=False):
                    inputs += [gr.Number(value=0, precision=0, minimum=0, maximum=MAX_SEED, label="Seed"),
                               gr.Slider(1, g["max_steps"], value=g["steps"], step=1, label="Steps"),
                               gr.Slider(0.0, g["max_guidance"], value=g["guidance"], step=0.5, label="Guidance"),
                               gr.Dropdown(g["sizes"], value=g["size"], label="Image size (px)")]
                    inputs[-1].api_info = lambda: {"type": "integer", "enum": g["sizes"]}  # Gradio says "string"
                run = gr.Button(tab["button"], variant="primary", elem_id="audio-image-run")
            with gr.Column():
                outputs = [gr.Image(label="Generated image" + (" (untrained stand-in)" if models.standin else ""),
                                    type="pil", format="png", height=360, elem_id="audio-image-results"),
                           gr.Dataframe(headers=["matched caption", "score"], interactive=False,
                                        label="Matched captions (caption-bank route)"),
                           gr.Markdown(elem_id="audio-image-info")]
        if _examples("audio"):
            gr.Examples(_examples("audio"), inputs=inputs[:1], label=T["example_labels"]["audio"])
        if models.settings.live_bridge and models.bridge_entry is None:
            def bridge_status() -> str:
                """What the FuseMix bridge trained on this machine is doing: training (with progress), ready
                (captions, seconds, held-out R@1) or failed (why)."""
                return models.live.label() if models.live else T["live_pending"]

            _status_line(bridge_status, "bridge-status", "bridge_status")
    run.click(served(logic.audio_to_image, "audio_to_image", zerogpu.DURATIONS["generation"]), inputs, outputs,
              api_name="audio_to_image", concurrency_limit=lim.generation_concurrency, concurrency_id="generation")


def _about(models: DemoModels) -> str:
    """What runs here (never loads a model), the limits, and where the shipped examples come from."""
    res = models.resolution
    ids = ({"clap": "tiny random ClapModel", "sd": "tiny random StableDiffusionPipeline",
            "reference": "tiny random CLIPModel"} if models.standin else models.settings.real_ids())
    lines = ["## What runs here", f"- Profile: **{res.profile}**" +
             (f" (asked for {res.requested}; {html.escape(res.reason)})" if res.reason else ""),
             f"- Device: {models.device}" + (" (ZeroGPU: lent per request)" if zerogpu.active() else ""),
             *(f"- {k}: `{v}`" for k, v in ids.items())]
    lines += [f"- FuseMix {a.kind} adapter ({', '.join(sorted(a.modalities))})" +
              (" — random stand-in" if a.standin else f" from `{a.path}`") for a in models.adapters]
    lines += [] if models.adapters else [T["no_adapters"]]
    lines += [f"- note: {html.escape(p)}" for p in [*models.adapter_problems, models.hub_error] if p]
    lines += [T["about_limits"].format(**vars(models.settings.limits)), licence_table(),
              models.hub.describe() if models.hub else "", "", T["about_sounds"]]
    return "\n".join(lines)


def build_demo(settings: Settings | None = None, resolution: Resolution | None = None) -> gr.Blocks:
    """The demo as a ``gr.Blocks`` (queue configured); nothing is loaded until a request needs it. ``settings``
    default to the ``FUSEMIX_*`` environment; the profile is resolved now (a cheap check that the real
    checkpoints can be had: :func:`demo.models.resolve_profile`)."""
    settings = settings or Settings.from_env()
    install_atomic_gradio_cache()
    models = DemoModels(settings, resolution or resolve_profile(settings))
    logic, lim = Demo(models), settings.limits

    def sound_adapter_status() -> str:
        """What the Sound -> Images adapter trained on this machine is doing (training, ready or failed)."""
        return models.live_sound.label() if models.live_sound else T["live_pending"]

    with gr.Blocks(title=T["title"] + (" — untrained stand-ins" if models.standin else "")) as demo:
        gr.Markdown(T["header"])
        with gr.Tabs():
            _audio_tab(models, logic)
            _search_tab(models, "caption_to_images", logic.caption_to_images, models.has_fusion("text", "image"),
                        lambda **kw: gr.Textbox(label=f"Caption (up to {lim.max_caption_chars} characters)",
                                                placeholder="a cat with green eyes", **kw),
                        ("query", "gallery", "choice", "k"),
                        lambda **kw: gr.Gallery(label="Top matches", columns=3, height="auto", **kw), "caption")
            _search_tab(models, "sound_to_images", logic.sound_to_images, models.has_fusion("audio", "image")
                        or models.sound_entry is not None or models.wants_live_sound,
                        lambda **kw: gr.Audio(sources=["upload", "microphone"], type="filepath",
                                              label=f"Sound (up to {lim.max_audio_seconds:g} s)", **kw),
                        ("query", "choice", "gallery", "k"),
                        lambda **kw: gr.Gallery(label="Top matches", columns=3, height="auto", **kw), "audio",
                        status=sound_adapter_status if models.wants_live_sound else None)
            _search_tab(models, "image_to_captions", logic.image_to_captions, models.has_fusion("image", "text"),
                        lambda **kw: read_uploads_with(  # checked from the header before Gradio decodes it
                            gr.Image(type="filepath", label="Image", sources=["upload", "clipboard"], **kw),
                            lambda path: check_image_upload(path, lim), user_message),
                        ("query", "choice", "k"),
                        lambda **kw: gr.Dataframe(headers=["rank", "caption", "score", "from"], interactive=False,
                                                  label="Closest captions", **kw), "image", k=5)
            with gr.Tab("About", id="about"):
                _banner(models)
                gr.Markdown(_about(models))

    demo.queue(max_size=lim.queue_size, default_concurrency_limit=lim.search_concurrency)
    demo.fusemix = logic  # for launch() and tests
    return demo


# --------------------------------------------------------------------------- launching


def launch_kwargs(settings: Settings) -> dict:
    """What ``demo.launch`` needs besides the Blocks (limits, allowed example files, styling, MCP)."""
    allowed = [str(EXAMPLES_DIR)] + [str(Path(p[0]).parent) for p in _examples("image")[:1]]
    return {"server_name": settings.host, "server_port": settings.port,
            "max_file_size": f"{settings.limits.max_upload_mb}mb", "allowed_paths": allowed, "css": T["css"],
            "footer_links": ["api", "gradio"], "mcp_server": True if settings.mcp else None}  # None: GRADIO_MCP_SERVER


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="FuseMix Gradio demo", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    kw = {"strict": (on := {"action": "store_true"}), "mcp": on, "port": {"type": int}, "profile": {"choices": PROFILES}}
    for name, text in T["flags"].items():
        p.add_argument("--" + name.replace("_", "-"), default=None, help=f"{text} [FUSEMIX_{name.upper()}]",
                       **kw.get(name, {}))
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    args = parse_args(argv)
    t0 = time.perf_counter()
    try:
        settings = Settings.from_env(**vars(args))
        resolution = resolve_profile(settings)
    except (ValueError, ProfileUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    if resolution.fell_back:
        print(f"NOTE: {resolution.reason}\nStarting on the TINY profile: every output comes from untrained random "
              "stand-ins (use --strict to exit instead).", file=sys.stderr, flush=True)
    demo = build_demo(settings=settings, resolution=resolution)
    if zerogpu.active():  # spaces lends the GPU per call: the models go to CUDA now, before launch
        with contextlib.suppress(Exception):  # else the first request that needs it loads it and says what failed
            demo.fusemix.models.preload()
    threading.Thread(target=demo.fusemix.models.start_live_bridge, daemon=True).start()
    demo.fusemix.models.start_hub_gallery()  # its own thread: stores and embeds the hub photos
    print(f"fusemix {fusemix.__version__} from {Path(fusemix.__file__).resolve().parent}\nprofile: "
          f"{resolution.profile}; app built in {time.perf_counter() - t0:.1f} s; models load on first use", flush=True)
    demo.launch(**launch_kwargs(settings))


if __name__ == "__main__":
    main()
