"""The app's background bridge training (train_bridge.LiveBridge) on the tiny stand-ins."""
from pathlib import Path

import pytest

from train_bridge import LiveBridge
from fusemix.tiny import build_tiny_suite

EXAMPLES = Path(__file__).resolve().parents[1] / "demo" / "examples"
DEFAULT_GALLERY = "Default photos (scikit-image)"
FAST = ["--epochs", "4", "--eval_every", "2", "--save_every", "2"]


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    return build_tiny_suite(tmp_path_factory.mktemp("tiny") / "models", extras=("clip",))


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


def test_sound_to_images_trains_its_adapter_after_the_bridge_and_serves_the_baseline_meanwhile(tmp_path, monkeypatch):
    """Sound -> Images through FuseMix: CLAP audio -> an adapter into the reference CLIP's text space,
    trained here from captions after the bridge; until then the FuseMix route answers through the caption chain."""
    from demo.app import Demo
    from demo.models import DemoModels, Resolution, Settings

    monkeypatch.setenv("FUSEMIX_CACHE", str(tmp_path / "cache"))
    started = []
    real_popen = __import__("subprocess").Popen

    def popen(cmd, *a, **kw):  # record the order in which the two trainings start
        started.append("--clip" in cmd)
        return real_popen(cmd, *a, **kw)

    monkeypatch.setattr("train_bridge.subprocess.Popen", popen)
    settings = Settings.from_env(env={}, profile="tiny", tiny_root=str(tmp_path / "tiny"))
    models = DemoModels(settings, Resolution("tiny", "tiny"))
    demo, quiet = Demo(models), (lambda *a, **k: None)
    bridge = models.start_live_bridge()
    sound = models.live_sound
    assert bridge is not None and sound is not None and sound.status()["state"] == "training"
    items, info = demo.sound_to_images(str(EXAMPLES / "birdsong.wav"), "fusemix", DEFAULT_GALLERY, 3, progress=quiet)
    assert len(items) == 3 and "answered through the baseline" in info and "Matched captions" in info
    assert sound.wait(300)["state"] == "ready" and bridge.ready, (bridge.status(), sound.status())
    assert started == [False, True]  # one training at a time: the bridge, then the sound adapter
    assert "FuseMix sound adapter trained on this machine from 300 captions" in sound.label()
    items, info = demo.sound_to_images(str(EXAMPLES / "birdsong.wav"), "fusemix", DEFAULT_GALLERY, 3, progress=quiet)
    assert "FuseMix sound adapter (FuseMix sound adapter trained on this machine" in info and "stand-in" in info
    assert "Matched captions" not in info and "answered through" not in info
    # the query is the adapter's CLAP-audio embedding, ranked against the reference CLIP's own image gallery
    adapter, _ = models.sound_adapter()
    assert adapter.config.target == "clip-text" and adapter.config.sd_model == models.model_ids()["reference"]
    enc = models.clap_audio()
    wav = demo._decode(str(EXAMPLES / "birdsong.wav"), enc.sample_rate)
    space = models.space("reference", "text", "image")
    hits = models.image_gallery("reference", DEFAULT_GALLERY, space).search(adapter.embed(enc.encode([wav]), "audio")[0], 3)
    assert [it[1].split(" · ")[0] for it in items] == [
        f"{r}. {h.item.meta.get('title') or Path(h.item.key).name}" for r, h in enumerate(hits, 1)]
    restarted = DemoModels(settings, Resolution("tiny", "tiny"))  # a restart: both come from the cache at once
    restarted.start_live_bridge()
    assert restarted.live.ready and restarted.live_sound.ready


def test_an_installed_sound_adapter_or_trained_audio_image_adapters_mean_nothing_is_trained_for_sound(suite, tmp_path):
    from demo.models import DemoModels, Resolution, Settings
    from fusemix.bridge import BridgeConfig, ConditioningBridge
    from fusemix.model import FusionConfig, FusionModel, ModalitySpec

    ids = dict(clap_model=str(suite["clap"]), sd_model=str(suite["sd"]), reference_model=str(suite["clip"]))
    ConditioningBridge(BridgeConfig(clap_model=ids["clap_model"], sd_model=ids["reference_model"], target="clip-text",
                                    in_dim=16, seq_len=1, out_dim=16, head="direct", depth=1)).save_pretrained(
        tmp_path / "a" / "sound")
    ConditioningBridge(BridgeConfig(clap_model=ids["clap_model"], sd_model=ids["sd_model"], in_dim=16, seq_len=77,
                                    out_dim=32, head="direct", depth=1)).save_pretrained(tmp_path / "a" / "bridge")
    models = DemoModels(Settings.from_env(env={}, profile="real", weights=str(tmp_path / "a"), **ids),
                        Resolution("real", "real"))
    assert [e.kind for e in models.adapters] == ["bridge", "sound"]
    assert models.bridge_entry.path.name == "bridge"  # the sound adapter is not taken for an SD bridge
    assert not models.wants_live_sound and models.start_live_bridge() is None and models.live_sound is None
    adapter, live = models.sound_adapter()
    assert adapter.config.target == "clip-text" and live is None
    FusionModel(FusionConfig({"audio": ModalitySpec("clap-audio:x", 16), "image": ModalitySpec("image:y", 8)},
                             proj_dim=4, depth=1)).save_pretrained(tmp_path / "b" / "audio-image")
    models = DemoModels(Settings.from_env(env={}, profile="real", weights=str(tmp_path / "b"), **ids),
                        Resolution("real", "real"))
    assert models.has_fusion("audio", "image") and not models.wants_live_sound  # trained two-tower adapters serve
