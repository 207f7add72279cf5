"""ZeroGPU (a Space's GPU, lent per call to functions decorated with ``spaces.GPU``) and the demo's GPU branch:
CUDA, float16 (``DemoModels.audio_to_image``), the full VAE (``Settings.vae_id``), GPU sizes and steps. Models go
to CUDA at start-up, outside decorated calls (``spaces`` packs them at launch). Off ZeroGPU ``gpu()`` is the
identity and ``spaces`` is not imported."""
import logging
import os

import torch

from fusemix.conventions import pick_device
from fusemix.generation import default_params_for

ENV = "SPACES_ZERO_GPU"  # what the spaces package reads (spaces/config.py): "1", "t" or "true"
# seconds a call may hold the GPU; margin for a first call's setup (training: encoding the corpus + ~150 steps)
DURATIONS = {"generation": 60, "search": 30, "training": 180}


def active(env=None) -> bool:
    """True on a ZeroGPU Space (``SPACES_ZERO_GPU`` is 1/t/true, as the ``spaces`` package decides)."""
    return (os.environ if env is None else env).get(ENV, "").lower() in ("1", "t", "true")


def gpu(duration: int):
    """A decorator: ``spaces.GPU(duration=duration)`` on ZeroGPU where ``spaces`` imports, else the identity."""
    if isinstance(duration, bool) or not isinstance(duration, int) or duration <= 0:
        raise ValueError(f"duration must be a positive whole number of seconds, got {duration!r}")
    if active():
        try:
            import spaces  # preinstalled on ZeroGPU Spaces; imported by nothing else here
            return spaces.GPU(duration=duration)
        except Exception as exc:  # noqa: BLE001 - missing, or its start-up checks failed: run without it
            logging.getLogger("fusemix.demo").warning("ZeroGPU without spaces.GPU: %s: %s", type(exc).__name__, exc)
    return lambda fn: fn


def device(requested: str | None = None, env=None) -> torch.device:
    """``requested``; else CUDA on ZeroGPU (no GPU is visible at start-up there); else CUDA if present, else CPU."""
    return torch.device("cuda") if requested in (None, "auto") and active(env) else pick_device(requested)


def generation_ranges(standin: bool, dev: torch.device, sd_model: str) -> dict:
    """Slider ranges and defaults: small on CPU (a 512 px step costs seconds); on a GPU the checkpoint's own."""
    if standin:
        return {"sizes": [64, 96, 128], "size": 64, "max_steps": 4, "steps": 2, "guidance": 1.0, "max_guidance": 10.0}
    d, on_gpu = default_params_for(sd_model), dev.type == "cuda"
    fast = d["steps"] <= 4  # turbo / LCM checkpoints, distilled for a few steps
    return {"sizes": [512, 576, 640, 704, 768] if on_gpu else [256, 320, 384, 448, 512], "size": 512,
            "max_steps": 8 if fast else (50 if on_gpu else 30), "guidance": d["guidance"], "max_guidance": 10.0,
            "steps": d["steps"] if on_gpu else (1 if fast else min(d["steps"], 12))}


def call(fn, *args, **kwargs):
    """``fn(*args, **kwargs)``; wrapped by :func:`gpu` it runs inside a ZeroGPU call (the start-up training)."""
    return fn(*args, **kwargs)
