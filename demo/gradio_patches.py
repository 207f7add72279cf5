"""Every change the demo makes to Gradio, in one place. Both reach into Gradio internals, so they apply
only to the release they were written for (requirements.txt pins it); on any other they are skipped with
a warning, and the app runs without what they add.
"""
from __future__ import annotations

import functools
import logging
import os
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

logger = logging.getLogger("fusemix.demo")
WRITTEN_FOR = "6.31"  # gradio==6.31.0 in requirements.txt; any 6.31.x patch release
_lock = threading.Lock()


def supported(patch: str) -> bool:
    """True when the installed Gradio is the release these patches were written for; else log and skip."""
    import gradio

    if gradio.__version__.split(".")[:2] == WRITTEN_FOR.split("."):
        return True
    logger.warning("gradio %s is not %s.x: %s is not applied", gradio.__version__, WRITTEN_FOR, patch)
    return False


def install_atomic_gradio_cache() -> bool:
    """Make ``gradio.processing_utils.save_pil_to_cache`` write atomically (True when it patched now).

    Without it: Gradio rewrites ``<cache>/<hash of the bytes>/<name>.<format>`` in place, so when two requests
    return the same thumbnail at once, a download of the first can end early (docs/reliability.md). Here a
    temporary file is renamed over the target, and an existing target (named by its content's hash) is kept.
    """
    from gradio import processing_utils as pu

    with _lock:
        if getattr(pu.save_pil_to_cache, "_fusemix_atomic", False) or not supported("the atomic image cache"):
            return False
        from gradio.profiling import traced_sync  # in the release this was written for

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

        # keep Gradio's profiling hook (a no-op unless its profiling is on)
        save_pil_to_cache = traced_sync("postprocess_save_pil_to_cache")(save_pil_to_cache)
        save_pil_to_cache = functools.wraps(pu.save_pil_to_cache)(save_pil_to_cache)
        save_pil_to_cache._fusemix_atomic = True
        pu.save_pil_to_cache = save_pil_to_cache
        return True


def read_uploads_with(component, read: Callable[[str], object], message: Callable[[BaseException], str]):
    """Make ``component`` (a gr.Image) hand an uploaded file to ``read(path)`` instead of decoding it itself;
    what ``read`` raises reaches the user as ``gr.Error(message(exc))``. Returns the component.

    Without it: gr.Image decodes an upload whole before the handler sees it, so a small PNG claiming
    10000 x 10000 px is decoded before any check (docs/reliability.md), and an unreadable file gets
    Gradio's generic error. (An instance is patched: a Component subclass makes Gradio write a ``.pyi`` stub.)
    """
    import gradio as gr

    if not supported("the image upload check"):
        return component
    original = component.preprocess

    def preprocess(payload):
        path = payload.get("path") if isinstance(payload, dict) else getattr(payload, "path", None)
        if not isinstance(path, (str, os.PathLike)):
            return original(payload)  # nothing uploaded, or a data: URL: Gradio's own handling
        try:
            return read(str(path))
        except Exception as exc:  # noqa: BLE001 - a refused upload is a message, never a crash
            raise gr.Error(message(exc), print_exception=False) from None

    component.preprocess = preprocess
    return component
