"""The one way tests serve the demo: tiny stand-in profile, a free loopback port, caches in a tmp dir."""
from __future__ import annotations

import contextlib
import socket
from pathlib import Path
from typing import Callable

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def tiny_demo(base: Path, before_launch: Callable | None = None, **settings):
    """Build the demo on the tiny profile (stand-ins and caches under ``base``) and serve it.

    ``before_launch(demo)`` runs between building and serving (e.g. to check that building loaded
    nothing, or to build the stand-ins before a browser's clock starts). Yields (demo, url, settings);
    the server is closed and FUSEMIX_CACHE restored on exit.
    """
    from demo.app import build_demo, launch_kwargs
    from demo.models import Settings

    mp = pytest.MonkeyPatch()
    mp.setenv("FUSEMIX_CACHE", str(base / "fusemix-cache"))  # never the user's ~/.cache
    demo = None
    try:
        resolved = Settings.from_env(env={}, profile="tiny", tiny_root=str(base / "fusemix-demo-tiny"),
                                     host="127.0.0.1", port=free_port(), **settings)
        demo = build_demo(settings=resolved)
        if before_launch is not None:
            before_launch(demo)
        demo.fusemix.models.start_live_bridge()  # as demo/app.py's main does: the bridge trains meanwhile
        _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, **launch_kwargs(resolved))
        yield demo, url, resolved
    finally:
        if demo is not None:
            demo.close()
        mp.undo()
