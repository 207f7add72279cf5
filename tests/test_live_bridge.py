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


def test_a_killed_training_leaves_no_half_written_bridge_and_the_next_start_trains_again(suite, tmp_path, monkeypatch):
    import os
    import signal
    import time

    monkeypatch.setenv("FUSEMIX_CACHE", str(tmp_path))
    lb = live(suite).start()
    temps = lambda: list(lb.out.parent.glob(f".{lb.out.name}.*"))  # noqa: E731 - train_caption_bridge's temporary
    t0 = time.time()
    while not (lb.proc and temps()) and time.time() - t0 < 120:  # the child has begun writing
        time.sleep(0.05)
    os.kill(lb.proc.pid, signal.SIGKILL)  # killed mid-training: no clean-up runs in the child
    assert lb.wait(60)["state"] == "failed" and "could not be trained here" in lb.label()
    assert not lb.out.exists()  # nothing half-written where a bridge is looked for
    again = live(suite).start()  # the next start: not fooled by the leftovers, trains, and clears them
    assert again.wait(300)["state"] == "ready" and not temps()


def test_the_app_answers_through_gradio_client_while_both_trainings_run(suite, tmp_path, monkeypatch):
    """Bridge and Sound -> Images requests during training get the caption routes, saying so; the status
    endpoints say what trains (the second waits for the first)."""
    import sys

    from demo_server import tiny_demo
    from gradio_client import Client, handle_file

    monkeypatch.setattr(LiveBridge, "command", lambda self: [sys.executable, "-c", "import time; time.sleep(120)"])
    with tiny_demo(tmp_path, before_launch=lambda demo: demo.fusemix.models.tiny_suite()) as (demo, url, _):
        models = demo.fusemix.models
        try:
            client = Client(url, verbose=False, download_files=str(tmp_path / "downloads"))
            wav = handle_file(str(EXAMPLES / "bell.wav"))
            _, rows, info = client.predict(wav, "bridge", "", 0.0, 0, 2, 1.0, 64, api_name="/audio_to_image")
            assert len(rows["data"]) == 3 and "answered through the caption-bank baseline" in info
            assert "Training a FuseMix bridge on this machine" in info
            items, info = client.predict(wav, "fusemix", DEFAULT_GALLERY, 3, api_name="/sound_to_images")
            assert len(items) == 3 and "answered through the baseline" in info and "Matched captions" in info
            assert "waiting for the other training to finish" in info
            assert "Training a FuseMix bridge" in client.predict(api_name="/bridge_status")
            assert "Training a FuseMix sound adapter" in client.predict(api_name="/sound_adapter_status")
        finally:  # leave no child behind: the sound adapter's own child then exits at once
            monkeypatch.setattr(LiveBridge, "command", lambda self: [sys.executable, "-c", "raise SystemExit(1)"])
            models.live.proc.kill()
            assert models.live_sound.wait(60)["state"] == "failed"


def test_in_a_real_browser_the_bridge_route_answers_while_the_bridge_trains_and_each_tab_says_so(suite, tmp_path, monkeypatch):
    import sys

    playwright_sync = pytest.importorskip("playwright.sync_api")
    chromium = Path("/usr/bin/chromium")
    if not chromium.is_file():
        pytest.skip("needs Debian's chromium at /usr/bin/chromium")
    from demo_server import tiny_demo

    monkeypatch.setattr(LiveBridge, "command", lambda self: [sys.executable, "-c", "import time; time.sleep(120)"])
    with tiny_demo(tmp_path, before_launch=lambda demo: demo.fusemix.models.tiny_suite()) as (demo, url, _):
        models = demo.fusemix.models
        try:
            with playwright_sync.sync_playwright() as p:
                browser = p.chromium.launch(executable_path=str(chromium), headless=True,
                                            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
                page = browser.new_page(viewport={"width": 1280, "height": 1000})
                page.set_default_timeout(60_000)
                page.goto(url)
                page.get_by_role("button", name="Generate image").wait_for()
                page.locator("#bridge-status").get_by_text("Training a FuseMix bridge").wait_for()
                page.locator("input[type=file]").first.set_input_files(str(EXAMPLES / "bell.wav"))
                page.locator("audio, .waveform-container, [data-testid=waveform-Sound]").first.wait_for(state="attached")
                page.get_by_label("FuseMix bridge (on stand-ins)").check()
                page.get_by_role("button", name="Generate image").click()
                page.locator("#audio-image-info").get_by_text("answered through the caption-bank baseline").wait_for()
                # the gallery's <img> lays out a moment after the info line: wait for it (fails after 60 s)
                page.locator("#audio-image-results img").first.wait_for(state="visible")
                page.get_by_role("tab", name="Sound → Images").click()  # its own status line, live
                page.locator("#sound-images-status").get_by_text("Training a FuseMix sound adapter").wait_for()
                browser.close()
        finally:
            monkeypatch.setattr(LiveBridge, "command", lambda self: [sys.executable, "-c", "raise SystemExit(1)"])
            models.live.proc.kill()
            assert models.live_sound.wait(60)["state"] == "failed"
