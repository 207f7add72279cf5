"""Settings, profiles and lazy, shared model loaders for the FuseMix demo.

Profiles: ``real`` (hub or local checkpoints, FuseMix adapters from ``weights/`` or a hub repo; probed
before the app is built, falling back to ``tiny`` unless ``strict``) and ``tiny`` (random stand-ins from
``fusemix.tiny`` and random adapters, so every route runs, all labelled). Each model loads on the first
request that needs it, once, and is shared by every request.
"""
from __future__ import annotations

import functools
import json
import logging
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import HfApi, snapshot_download, try_to_load_from_cache

from fusemix.bridge import ConditioningBridge
from fusemix.caption_bank import STARTER_CAPTIONS, CaptionBank, load_captions, sample_captions
from fusemix.checkpoint import CheckpointError, from_pretrained_safetensors
from demo import zerogpu
from fusemix.conventions import SpecError, cache_root, parse_spec
from fusemix.default_gallery import build_default_gallery, default_captions
from fusemix.encoders import load_encoder
from fusemix.gallery import Gallery, default_cache_dir
from fusemix.generation import AudioToImage
from fusemix.hub_gallery import DEFAULT_DATASET, open_hub_gallery
from fusemix.io import atomic_write_text
from fusemix.model import FusionConfig, FusionModel, ModalitySpec
from fusemix.reference import ReferenceScorer
from fusemix.retrieval import EmbeddingSpace
from fusemix.tiny import STANDIN_FILE, build_tiny_suite, is_standin

logger = logging.getLogger("fusemix.demo")

REPO_ROOT = Path(__file__).resolve().parents[1]
PROFILES = ("real", "tiny")
DEFAULT_IDS = {"clap": "laion/clap-htsat-unfused", "sd": "stabilityai/sd-turbo",
               "reference": "openai/clip-vit-base-patch32"}
# On CPU the full SD VAE decoder costs more than a sd-turbo step; TAESD decodes the same latents (docs/space.md).
DEFAULT_CPU_VAE = "madebyollin/taesd"
DEFAULT_GALLERY = "Default photos (scikit-image)"
STANDIN_ADAPTER_NOTE = "RANDOM STAND-IN adapter built by the demo's tiny profile: untrained, outputs are meaningless.\n"
TINY_LAYOUT_VERSION = "1"


class ProfileUnavailable(RuntimeError):
    """The real profile was asked for with ``strict`` but its checkpoints cannot be loaded."""


class DemoInputError(ValueError):
    """A request the demo refuses, with a plain-language message for the user."""


def _env_bool(value: str | None) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def _parse(var: str, raw: str, kind: Callable[[str], Any], what: str = "a number") -> Any:
    try:
        return kind(raw)
    except ValueError:
        raise ValueError(f"{var} must be {what}, got {raw!r}") from None


@dataclass
class Limits:
    """Request limits; the defaults suit a free CPU Space (2 vCPU, 16 GB)."""

    max_upload_mb: int = 10  # Gradio refuses larger uploads before they reach the app
    max_audio_seconds: float = 30.0  # checked from the file header, before decoding
    min_audio_seconds: float = 0.1
    max_caption_chars: int = 300
    max_top_k: int = 12
    queue_size: int = 256  # waiting costs next to nothing; a short queue turned bursts away (docs/reliability.md)
    generation_concurrency: int = 1  # generations run one at a time (memory)
    # one at a time: fast tokenizers must not be used from two threads ("Already borrowed"); beside generation
    search_concurrency: int = 1


@dataclass
class Settings:
    """Everything the command line or the environment can choose."""

    profile: str = "real"
    strict: bool = False
    gallery: str | None = None  # a folder of images, offered next to the default gallery
    weights: str | None = None  # folder or hub repo id holding trained adapters; None: <repo>/weights
    clap_model: str = DEFAULT_IDS["clap"]
    sd_model: str = DEFAULT_IDS["sd"]
    reference_model: str = DEFAULT_IDS["reference"]
    vae: str = "auto"  # auto: TAESD on CPU, the checkpoint's own VAE on GPU; full; or an AutoencoderTiny id
    device: str | None = None  # None: CUDA on ZeroGPU or when available, else CPU (demo.zerogpu.device)
    tiny_root: str | None = None  # where stand-ins are built; None: under the fusemix cache root
    host: str | None = None  # None: Gradio's default (GRADIO_SERVER_NAME, else 127.0.0.1)
    port: int | None = None  # None: Gradio's default (GRADIO_SERVER_PORT, else 7860)
    probe_timeout: float = 5.0
    mcp: bool = False  # serve the handlers as MCP tools too (launch(mcp_server=True); needs gradio[mcp])
    live_bridge: bool = True  # no trained bridge found: train one from captions on this machine (train_bridge.LiveBridge)
    hub_gallery: str = DEFAULT_DATASET  # hub (or local) dataset of openly licensed photos; "none": off
    hub_gallery_split: str | None = None  # None here and below: fusemix.hub_gallery's defaults
    hub_gallery_image_column: str | None = None
    hub_gallery_licence_column: str | None = None  # "none": every photo under hub_gallery_licence
    hub_gallery_licence: str | None = None
    hub_gallery_caption_column: str | None = None
    hub_gallery_credit_column: str | None = None
    hub_gallery_size: int | None = None
    limits: Limits = field(default_factory=Limits)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides) -> "Settings":
        """Settings from ``FUSEMIX_<FIELD>`` variables (limits too: ``FUSEMIX_QUEUE_SIZE``, ...); keyword
        overrides that are not None win."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {"limits": Limits()}
        kinds = dict.fromkeys(("strict", "live_bridge", "mcp"), _env_bool) | {"port": int, "probe_timeout": float,
                                                                            "hub_gallery_size": int}
        for f in fields(cls):
            var = f"FUSEMIX_{f.name.upper()}"
            if env.get(var) and f.name != "limits":
                values[f.name] = _parse(var, env[var], kinds.get(f.name, str),
                                        "a port number" if f.name == "port" else "a number")
        for f in fields(Limits):
            var = f"FUSEMIX_{f.name.upper()}"
            if env.get(var):
                setattr(values["limits"], f.name, _parse(var, env[var], type(getattr(values["limits"], f.name))))
        s = cls(**{**values, **{k: v for k, v in overrides.items() if v is not None}})
        if s.profile not in PROFILES:
            raise ValueError(f"profile must be one of {PROFILES}, got {s.profile!r}")
        if s.gallery is not None and not Path(s.gallery).is_dir():
            raise ValueError(f"--gallery {s.gallery!r} is not a folder")
        if s.port is not None and not 0 < int(s.port) < 65536:
            raise ValueError(f"port must be in 1..65535, got {s.port}")
        return s

    def vae_id(self) -> str | None:
        """The AutoencoderTiny to decode with, or None for the SD checkpoint's own VAE."""
        if self.vae == "auto":
            return None if zerogpu.device(self.device).type == "cuda" else DEFAULT_CPU_VAE
        return None if self.vae == "full" else self.vae

    def real_ids(self) -> dict[str, str]:
        ids = {"clap": self.clap_model, "sd": self.sd_model, "reference": self.reference_model}
        return {**ids, "vae": self.vae_id()} if self.vae_id() else ids


# --------------------------------------------------------------------------- profile resolution


@dataclass
class Resolution:
    """Which profile the app runs, and why."""

    requested: str
    profile: str
    reason: str = ""  # why the real profile could not be used (empty when it is used)

    @property
    def standin(self) -> bool:
        return self.profile == "tiny"

    @property
    def fell_back(self) -> bool:
        return self.requested != self.profile


def probe_checkpoints(ids: Mapping[str, str], timeout: float = 5.0) -> list[str]:
    """Problems that would stop these checkpoints from loading (empty list: all obtainable).

    Cheap: a local folder must hold its key file, a hub id counts when that file is in the local cache;
    else one metadata request per id (the first failure to reach the hub stops further requests)."""
    problems: list[str] = []
    remote: list[str] = []
    for kind, model_id in ids.items():
        key = "model_index.json" if kind == "sd" else "config.json"  # the file every checkpoint of a kind has
        if Path(model_id).expanduser().exists():
            if not (Path(model_id).expanduser() / key).is_file():
                problems.append(f"{model_id} is a local path without {key}")
            continue
        try:
            cached = try_to_load_from_cache(model_id, key)
        except Exception:  # noqa: BLE001 - a malformed id: let the hub check say why
            cached = None
        if not isinstance(cached, str):
            remote.append(model_id)
    if remote and any(_env_bool(os.environ.get(v)) for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")):
        return problems + [f"{m} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set" for m in remote]
    api = HfApi()
    for i, model_id in enumerate(remote):
        try:
            api.model_info(model_id, timeout=timeout)
        except Exception as exc:  # noqa: BLE001 - connection errors, 404, gated repos: all plain reasons
            name = type(exc).__name__
            if "connect" in name.lower() or "timeout" in name.lower() or isinstance(exc, OSError):
                rest = remote[i:]
                problems.append(f"cannot reach the Hugging Face Hub ({name}: {str(exc)[:120]}), and "
                                f"{', '.join(rest)} {'is' if len(rest) == 1 else 'are'} not in the local cache")
                break
            problems.append(f"{model_id}: {name}: {str(exc)[:160]}")
    return problems


def resolve_profile(settings: Settings, probe: Callable[..., list[str]] = probe_checkpoints) -> Resolution:
    """Real if its checkpoints can be had, else tiny (or :class:`ProfileUnavailable` under ``strict``)."""
    if settings.profile == "tiny":
        return Resolution("tiny", "tiny")
    problems = probe(settings.real_ids(), timeout=settings.probe_timeout)
    if not problems:
        return Resolution("real", "real")
    reason = "The real models cannot be loaded here: " + "; ".join(problems) + "."
    if settings.strict:
        raise ProfileUnavailable(reason + " (--strict: not falling back to the tiny stand-ins)")
    logger.warning("%s Falling back to the tiny profile (untrained random stand-ins).", reason)
    return Resolution("real", "tiny", reason)


# --------------------------------------------------------------------------- adapters on disk


def encoder_of(spec: str, modality: str) -> tuple[str, str]:
    """The (kind, model id) of the encoder a checkpoint records (``KIND:MODEL_ID`` or a bare id)."""
    try:
        return parse_spec(spec, modality)
    except SpecError as exc:
        raise DemoInputError(f"cannot tell which encoder produced the {modality!r} latents: {exc}") from None


@dataclass
class AdapterEntry:
    kind: str  # "fusion" or "bridge"
    path: Path
    config: dict
    standin: bool = False

    @property
    def modalities(self) -> set[str]:
        return set(self.config.get("modalities", {})) if self.kind == "fusion" else {"audio"}


def scan_adapters(root: str | os.PathLike) -> tuple[list[AdapterEntry], list[str]]:
    """Adapters under ``root`` (itself or its immediate subfolders): (entries, problems)."""
    root = Path(root)
    if not root.is_dir():
        return [], [f"{root} is not a folder"]
    entries: list[AdapterEntry] = []
    problems: list[str] = []
    for d in [root, *sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))]:
        if not (d / "config.json").is_file():
            continue
        try:
            raw = json.loads((d / "config.json").read_text())
        except (OSError, json.JSONDecodeError) as exc:
            problems.append(f"{d / 'config.json'}: unreadable ({exc})")
            continue
        kind = {"fusemix.FusionModel": "fusion", "fusemix.ConditioningBridge": "bridge"}.get(raw.get("model_type"))
        kind = "sound" if kind == "bridge" and raw.get("target") == "clip-text" else kind  # CLAP -> CLIP text
        if kind is None:
            continue
        if not (d / "model.safetensors").is_file():
            problems.append(f"{d}: config.json without model.safetensors")
            continue
        entries.append(AdapterEntry(kind, d, raw, standin=is_standin(d)))
    return entries, problems


# --------------------------------------------------------------------------- the lazy model hub


def _shared(method):
    """A DemoModels method whose result, per arguments, is computed once and then shared by all requests."""

    @functools.wraps(method)
    def get(self, *args):
        return self._once((method.__name__, *args), lambda: method(self, *args))

    return get


class DemoModels:
    """Every model the demo uses, loaded lazily and once, shared by all requests."""

    def __init__(self, settings: Settings, resolution: Resolution):
        self.settings = settings
        self.resolution = resolution
        self.standin = resolution.standin
        self.device = zerogpu.device(settings.device)
        self.tiny_root = Path(settings.tiny_root or cache_root(f"demo-tiny-v{TINY_LAYOUT_VERSION}"))
        self.adapter_problems: list[str] = []
        self.bridge_error: str | None = None  # why an installed bridge could not be used, once tried
        self.adapters: list[AdapterEntry] = self._find_adapters()
        # the tiny profile never touches the network: a local dataset only
        self.hub, self.hub_error = open_hub_gallery(settings, network=not self.standin)
        self._values: dict[tuple, Any] = {}
        self._locks: dict[tuple, threading.Lock] = {}
        self._lock = threading.Lock()

    def _once(self, key: tuple, fn: Callable[[], Any]) -> Any:
        """``fn()`` computed once per key under that key's lock; a failure is not kept (the next call retries)."""
        with self._lock:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._values:
                self._values[key] = fn()
            return self._values[key]

    def loaded(self) -> list[str]:
        """What has been loaded or built so far (nothing until a request, or the live bridge, needs it)."""
        return [key[0] for key in list(self._values)]

    def preload(self) -> list[str]:
        """Load every model now, computing nothing (ZeroGPU: ``spaces`` packs what is on CUDA at launch; CUDA work
        outside a decorated call runs emulated on the CPU, so the caption bank and galleries wait for a call)."""
        self.sd_pipeline(), self.clap_audio(), self.space("reference", "text", "image")
        for mods in [m for m in (("text", "image"), ("audio", "image")) if self.has_fusion(*m)]:
            self.space("fusemix", *mods)
        return self.loaded()

    def _find_adapters(self) -> list[AdapterEntry]:
        if self.standin:  # the tiny profile's own random adapters, built on first use (see tiny_suite)
            fusion_cfg = {"model_type": "fusemix.FusionModel", "modalities": {"audio": {}, "text": {}, "image": {}}}
            return [AdapterEntry("fusion", self.tiny_root / "adapters" / "fusion", fusion_cfg, True)]
        spec = self.settings.weights
        if spec is None:
            spec = str(REPO_ROOT / "weights")
            if not Path(spec).is_dir():
                return []
        root = Path(spec).expanduser()
        try:  # a local folder as is; a hub repo id downloaded (JSON, safetensors and cards only)
            if not root.exists():
                root = snapshot_download(spec, allow_patterns=["*.json", "*.safetensors", "*.md"])
        except Exception as exc:  # noqa: BLE001 - offline, missing repo: say so, run without adapters
            self.adapter_problems.append(f"could not fetch adapters from {spec!r}: {type(exc).__name__}: "
                                         f"{str(exc)[:200]}")
            return []
        entries, problems = scan_adapters(root)
        self.adapter_problems.extend(problems)
        # real profile: stand-in adapters are never passed off as trained ones
        self.adapter_problems += [f"{e.path} is a random stand-in adapter; not used on the real profile"
                                  for e in entries if e.standin]
        return [e for e in entries if not e.standin]

    @property
    def bridge_entry(self) -> AdapterEntry | None:
        return next((e for e in self.adapters if e.kind == "bridge"), None)

    sound_entry = property(lambda self: next((e for e in self.adapters if e.kind == "sound"), None))  # CLAP -> CLIP

    @property
    def has_bridge(self) -> bool:
        """A bridge route is offered: an installed bridge, or one trained here (live)."""
        return self.bridge_entry is not None or self.settings.live_bridge

    def fusion_entry(self, *modalities: str) -> AdapterEntry | None:
        """The first FuseMix adapter model that has all of ``modalities``."""
        return next((e for e in self.adapters if e.kind == "fusion" and set(modalities) <= e.modalities), None)

    def has_fusion(self, *modalities: str) -> bool:
        return self.fusion_entry(*modalities) is not None

    def model_ids(self) -> dict[str, str]:
        """Checkpoint ids (real) or stand-in folders (tiny; built on first call)."""
        if self.standin:
            suite = self.tiny_suite()
            return {"clap": str(suite["clap"]), "sd": str(suite["sd"]), "reference": str(suite["clip"])}
        return self.settings.real_ids()

    @property
    def live(self):
        """The bridge trained on this machine (train_bridge.LiveBridge), once started; else None."""
        return self._values.get(("live",))

    @property
    def live_sound(self):
        """The Sound -> Images adapter (CLAP -> reference CLIP text space) trained on this machine, or None."""
        return self._values.get(("live sound",))

    @property
    def wants_live_sound(self) -> bool:
        """Sound -> Images gets a captions-only adapter trained here: none installed, nor trained two-tower ones."""
        fusion = self.fusion_entry("audio", "image")
        return self.settings.live_bridge and self.sound_entry is None and (fusion is None or fusion.standin)

    def start_live_bridge(self):
        """Train what is not installed from captions, in the background, one at a time: the bridge (CLAP ->
        SD), then the Sound -> Images adapter (CLAP -> reference CLIP). Returns the bridge's LiveBridge."""
        if not self.settings.live_bridge:
            return None
        from train_bridge import LiveBridge

        def make(target, after=None):
            ids = self.model_ids()
            kw = {"max_captions": 300, "train_args": ["--epochs", "10"]} if self.standin else {}
            if zerogpu.active():  # no GPU outside a decorated call: train in this process, inside one
                kw["run_in"] = self._once(("gpu training",), lambda: zerogpu.gpu(zerogpu.DURATIONS["training"])(zerogpu.call))
            return LiveBridge(ids["clap"], ids["reference" if target == "clip-text" else "sd"], target=target,
                              audio=[REPO_ROOT / "demo" / "examples"], standin=self.standin, after=after, **kw).start()

        bridge = self._once(("live",), lambda: make("sd-text")) if self.bridge_entry is None else None
        if self.wants_live_sound:
            self._once(("live sound",), lambda: make("clip-text", bridge))
        return bridge

    def sound_adapter(self):
        """(the installed or live CLAP -> CLIP-text adapter, else None; the live status line or None)."""
        live, entry, ids = self.live_sound, self.sound_entry, self.model_ids()
        path = entry.path if entry else live.path if live and live.ready else None
        return None if path is None else self._once(("sound adapter", str(path)), lambda: ConditioningBridge.from_pretrained(
            path, clap_model=ids["clap"], sd_model=ids["reference"], map_location=self.device)), live and live.label()

    def live_bridge_for(self, a2i):
        """Attach the live bridge to ``a2i`` once it is ready; the live status line, or None without one."""
        live = self.live
        if live is None:
            return None
        if live.ready and a2i.bridge is None:
            with self._lock:
                if a2i.bridge is None:
                    a2i.set_bridge(ConditioningBridge.from_pretrained(live.path, map_location=self.device))
        return live.label()

    @_shared
    def tiny_suite(self) -> dict[str, Path]:
        """The stand-in models and the random FuseMix adapter (built on first use under the tiny root)."""
        suite = build_tiny_suite(self.tiny_root / "models", extras=("clip",))
        d = self.tiny_root / "adapters" / "fusion"
        try:  # one saved by an older fusemix may no longer load: it is random, rebuild it
            if is_standin(d):
                FusionModel.from_pretrained(d)
                return dict(suite)
        except Exception:  # noqa: BLE001
            logger.info("rebuilding stale stand-in adapter %s", d)
        with torch.random.fork_rng(devices=[]):  # seeded: every build (and a racing one) writes the same bytes
            torch.manual_seed(0)
            model = FusionModel(FusionConfig(
                modalities={"audio": ModalitySpec(f"clap-audio:{suite['clap']}", 16, "projected"),
                            "text": ModalitySpec(f"sentence:{suite['sentence']}", 32, "mean"),
                            "image": ModalitySpec(f"image:{suite['image']}", 32, "cls")},
                proj_dim=16, depth=1, expansion=2, dropout=0.0,
                extra={"standin": True, "note": STANDIN_ADAPTER_NOTE.strip()}))
        (d / STANDIN_FILE).unlink(missing_ok=True)
        model.save_pretrained(d)  # each file written atomically, the config last
        atomic_write_text(d / STANDIN_FILE, STANDIN_ADAPTER_NOTE)  # the marker last: the build is complete
        return dict(suite)

    def _audio_encoder(self, model_id: str):
        """A CLAP audio encoder held to the upload limits."""
        lim = self.settings.limits
        return load_encoder("clap-audio", model_id, device=self.device, max_seconds=lim.max_audio_seconds,
                            min_seconds=lim.min_audio_seconds, max_bytes=lim.max_upload_mb * 2**20)

    @_shared
    def clap_audio(self):
        """CLAP audio encoder (shared with the caption bank's text tower through fusemix's CLAP cache)."""
        return self._audio_encoder(self.model_ids()["clap"])

    @_shared
    def caption_bank(self):
        """The baseline's bank: the sound corpus in CLAP (cached; a sample serves while a cold start embeds the rest)."""
        return CaptionBank.build_in_background(load_encoder("clap-text", self.model_ids()["clap"], device=self.device))

    @_shared
    def sd_pipeline(self):
        """The SD pipeline on the device: float16 on CUDA, float32 on CPU; TAESD where ``vae_id`` says so."""
        from diffusers import StableDiffusionPipeline

        ids = self.model_ids()
        dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        extra = {}
        if ids.get("vae"):  # a tiny decoder (TAESD) for the same latent space: CPU-friendly
            from diffusers import AutoencoderTiny

            extra["vae"] = from_pretrained_safetensors(AutoencoderTiny, ids["vae"], dtype=dtype)
        # a checkpoint's own safety checker (SD 1.x has one) is kept: AudioToImage refuses flagged images
        return from_pretrained_safetensors(StableDiffusionPipeline, ids["sd"], dtype=dtype, **extra).to(self.device)

    @_shared
    def audio_to_image(self):
        """CLAP + (bridge if present) + caption bank + the SD pipeline, as one AudioToImage."""
        ids, pipe = self.model_ids(), self.sd_pipeline()
        bridge = None
        entry = self.bridge_entry
        if entry is not None:
            try:  # a bridge for other encoders must not take the caption-bank route down with it
                bridge = ConditioningBridge.from_pretrained(entry.path, clap_model=ids["clap"], sd_model=ids["sd"],
                                                            map_location=self.device)
            except CheckpointError as exc:
                self.bridge_error = str(exc)
                self.adapter_problems.append(f"bridge {entry.path} not used: {exc}")
                logger.warning("bridge %s not used: %s", entry.path, exc)
        return AudioToImage(pipe, self.clap_audio(), bridge=bridge, caption_bank=self.caption_bank(),
                            standin=self.standin or is_standin(ids["sd"]) or is_standin(ids["clap"]))

    @_shared
    def reference(self):
        """The reference CLIP scorer (zero training)."""
        ref = self.model_ids()["reference"]
        return ReferenceScorer.from_pretrained(ref, device=self.device, standin=self.standin or is_standin(ref))

    @_shared
    def fusion_model(self, path: Path):
        if self.standin:
            self.tiny_suite()  # builds the stand-in adapter too
        return FusionModel.from_pretrained(path).to(self.device)

    def space(self, scorer: str, *modalities: str):
        """An EmbeddingSpace: ``"reference"`` (CLIP: image, text) or ``"fusemix"`` (adapters + encoders)."""
        if scorer not in ("fusemix", "reference"):
            raise DemoInputError("Scorer must be 'fusemix' or 'reference'.")
        if scorer == "reference":
            return self._once(("reference space",), lambda: self.reference().space("reference CLIP"))
        entry = self.fusion_entry(*modalities)
        if entry is None:
            other = "baseline route" if "audio" in modalities else "reference scorer"
            raise DemoInputError(f"No trained FuseMix {' and '.join(modalities)} adapters are installed; use the {other}.")
        return self._fusion_space(entry.path, tuple(sorted(modalities)))

    @_shared
    def _fusion_space(self, path: Path, modalities: tuple[str, ...]):
        model = self.fusion_model(path)
        encoders = {}
        for m in modalities:
            kind, model_id = encoder_of(model.config.modalities[m].encoder, m)
            if kind == "clap-audio" and model_id == self.model_ids()["clap"]:
                encoders[m] = self.clap_audio()  # the same CLAP as audio -> image: load it once
            elif kind == "clap-audio":
                encoders[m] = self._audio_encoder(model_id)
            else:
                encoders[m] = load_encoder(kind, model_id, device=self.device)
        # the encoders were loaded from the ids the checkpoint records ("KIND:ID"), so the retriever's
        # own id comparison (plain id against "KIND:ID") is skipped; widths are still checked
        return EmbeddingSpace.from_fusion(model, encoders, name="FuseMix adapters", strict_encoder=False,
                                          standin=self.standin)

    def start_hub_gallery(self) -> None:
        """Store the hub gallery and embed it for the default scorer, in the background (no-op without one)."""
        if self.hub is not None:
            scorer = "fusemix" if self.has_fusion("text", "image") else "reference"
            self.hub.start(lambda: self.space(scorer, "text", "image").embedder("image"))

    def gallery_names(self) -> list[str]:
        """The hub photo gallery (when offered), the default photos, and the ``--gallery`` folder (by its name)."""
        p = Path(self.settings.gallery or "").resolve()
        return ([self.hub.name] if self.hub else []) + [DEFAULT_GALLERY] + (
            [f"Folder: {p.name or p}"] if self.settings.gallery else [])

    def image_gallery(self, scorer: str, name: str, space):
        """The named image gallery embedded in ``space`` (embedded on first use, cached on disk); while the hub
        one is built in the background, the default photos stand in for it, labelled (``.note``)."""
        if name not in self.gallery_names():
            raise DemoInputError(f"Unknown gallery {name!r}; choose one of {self.gallery_names()}.")
        emb = space.embedder("image")
        if self.hub is not None and name == self.hub.name:
            return self.hub.gallery_for(emb, lambda: self.image_gallery(scorer, DEFAULT_GALLERY, space))

        def build():
            if name == DEFAULT_GALLERY:
                return build_default_gallery(emb, progress=False)
            return Gallery.from_folder(self.settings.gallery, emb, modality="image", progress=False)

        return self._once(("gallery", scorer, emb.fingerprint, name), build)

    def caption_gallery(self, scorer: str, space):
        """Image -> captions candidates: the default photos' captions + a sample of the sound corpus (all: minutes)."""
        emb = space.embedder("text")

        def build():
            found: dict[str, dict] = {}  # caption -> meta; the first occurrence wins
            for c, f in zip(*default_captions()):
                found.setdefault(c, {"caption": c, "source": f"caption of {f} (default gallery)"})
            for c in sample_captions(load_captions(), STARTER_CAPTIONS):
                found.setdefault(c, {"caption": c, "source": "caption bank (sound descriptions)"})
            return Gallery.from_items(list(found), emb, modality="text", meta=list(found.values()),
                                      cache_dir=default_cache_dir(), name="demo-captions", progress=False)

        return self._once(("captions", scorer, emb.fingerprint), build)
