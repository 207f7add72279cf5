"""The app's background bridge training (train_bridge.LiveBridge) on the tiny stand-ins."""
import pytest

from train_bridge import LiveBridge
from fusemix.tiny import build_tiny_suite

FAST = ["--epochs", "4", "--eval_every", "2", "--save_every", "2"]


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    return build_tiny_suite(tmp_path_factory.mktemp("tiny") / "models")


def live(suite, **kw):
    return LiveBridge(str(suite["clap"]), str(suite["sd"]), max_captions=120, train_args=FAST, standin=True, **kw)


def test_trains_in_the_background_then_is_reused(suite, tmp_path, monkeypatch):
    monkeypatch.setenv("FUSEMIX_CACHE", str(tmp_path))
    lb = live(suite).start()
    assert lb.status()["state"] == "training" and lb.path is None  # start() returns at once
    assert lb.wait(300)["state"] == "ready", lb.status()
    assert lb.path.is_dir() and "trained on this machine from 120 captions" in lb.label()
    assert "stand-in" in lb.label()
    again = live(suite).start()  # a restart: the cache answers at once, nothing is retrained
    assert again.ready and again.path == lb.path  # ready at once: start() found it, no training began
    assert "RANDOM stand-in" in (lb.path / "README.md").read_text()


def test_a_failed_training_is_reported_and_leaves_nothing(suite, tmp_path, monkeypatch):
    monkeypatch.setenv("FUSEMIX_CACHE", str(tmp_path))

    lb = LiveBridge(str(tmp_path / "no-such-clap"), str(suite["sd"]), max_captions=120, train_args=FAST).start()
    assert lb.wait(120)["state"] == "failed"
    assert "could not be trained here (RuntimeError: " in lb.label() and "caption route serves" in lb.label()
    assert not (tmp_path / "bridges").exists() or not any((tmp_path / "bridges").iterdir())
