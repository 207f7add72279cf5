"""The Gradio demo on the tiny profile: every endpoint through gradio_client, bad input, the README's
main command from a fresh clone without network, profile fallback, adapters on disk, the reference
scorer and the shipped example sounds."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from demo_server import free_port, tiny_demo

ROOT = Path(__file__).resolve().parents[1]
GALLERY = "Default photos (scikit-image)"
EXAMPLES = ROOT / "demo" / "examples"


@pytest.fixture(scope="module")
def shared_env(tmp_path_factory):
    """Caches (galleries, caption bank, stand-ins) in this session's tmp dir, never in ~/.cache."""
    base = tmp_path_factory.getbasetemp()
    mp = pytest.MonkeyPatch()
    mp.setenv("FUSEMIX_CACHE", str(base / "fusemix-cache"))
    yield {"tiny_root": base / "fusemix-demo-tiny", "cache": base / "fusemix-cache"}
    mp.undo()


@pytest.fixture(scope="module")
def user_gallery(tmp_path_factory):
    """A folder given with --gallery: three images, one corrupt JPEG, one text file."""
    from PIL import Image

    d = tmp_path_factory.mktemp("my_photos")
    for name, colour in [("red.png", "red"), ("green.jpg", "green"), ("sub/blue.png", "blue")]:
        (d / name).parent.mkdir(exist_ok=True)
        Image.new("RGB", (48, 40), colour).save(d / name)
    (d / "broken.jpg").write_bytes(b"\xff\xd8\xff" + b"\0" * 50)
    (d / "notes.txt").write_text("not an image")
    return d


@pytest.fixture(scope="module")
def server(shared_env, user_gallery):
    def loads_nothing(demo):
        assert demo.fusemix.models.loaded() == []  # building the app loads nothing

    with tiny_demo(shared_env["tiny_root"].parent, before_launch=loads_nothing, gallery=str(user_gallery)) as (
            demo, url, _):
        yield demo, url


@pytest.fixture(scope="module")
def client(server, tmp_path_factory):
    from gradio_client import Client

    return Client(server[1], verbose=False, download_files=str(tmp_path_factory.mktemp("downloads")))


def audio_args(path, route="captions", steer="", weight=0.3, seed=0, steps=2, guidance=1.0, size=64):
    from gradio_client import handle_file

    return [handle_file(str(path)), route, steer, weight, seed, steps, guidance, size]


def good_audio_call(client):
    from PIL import Image

    img_path, caps, info = client.predict(*audio_args(EXAMPLES / "bell.wav"), api_name="/audio_to_image")
    with Image.open(img_path) as im:
        assert im.size == (64, 64)
    return caps, info


# --------------------------------------------------------------------------- every endpoint


def test_audio_to_image_caption_route_shows_matched_captions(client):
    caps, info = good_audio_call(client)
    rows = caps["data"]
    assert len(rows) == 3 and all(isinstance(c, str) and c for c, _ in rows)
    scores = [s for _, s in rows]
    assert scores == sorted(scores, reverse=True)
    assert "Untrained stand-ins" in info and "caption-bank baseline" in info


def wait_for_bridge(client, timeout=240.0) -> str:
    """The live bridge's status (the /bridge_status endpoint) once it is trained."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        status = client.predict(api_name="/bridge_status")
        if "trained on this machine" in status or "could not be trained" in status:
            return status
        time.sleep(1.0)
    raise AssertionError(f"the live bridge did not finish in {timeout} s: {status}")


def test_audio_to_image_bridge_route_with_steering_and_seed(client):
    from PIL import Image

    status = wait_for_bridge(client)
    assert "FuseMix bridge trained on this machine from 300 captions" in status and "held-out R@1" in status

    a = client.predict(*audio_args(EXAMPLES / "siren.wav", route="bridge", steer="an oil painting", seed=3, size=96),
                       api_name="/audio_to_image")
    b = client.predict(*audio_args(EXAMPLES / "siren.wav", route="bridge", steer="an oil painting", seed=3, size=96),
                       api_name="/audio_to_image")
    c = client.predict(*audio_args(EXAMPLES / "siren.wav", route="bridge", steer="an oil painting", seed=4, size=96),
                       api_name="/audio_to_image")
    arrays = []
    for img_path, caps, info in (a, b, c):
        with Image.open(img_path) as im:
            assert im.size == (96, 96)
            arrays.append(np.asarray(im.convert("RGB")))
        assert caps["data"] == []  # the bridge route matches no captions
        assert "conditioning bridge (FuseMix bridge trained on this machine" in info and "stand-in" in info
        assert "oil painting" in info and "caption-bank baseline" not in info
    assert np.array_equal(arrays[0], arrays[1])  # same seed, same image
    assert not np.array_equal(arrays[0], arrays[2])


@pytest.mark.parametrize("scorer", ["reference", "fusemix"])
def test_caption_to_images_returns_ranked_gallery(client, scorer):
    items, info = client.predict("a cat with green eyes", GALLERY, scorer, 4, api_name="/caption_to_images")
    assert len(items) == 4
    labels = [it["caption"] for it in items]
    assert [lab.split(".")[0] for lab in labels] == ["1", "2", "3", "4"]
    scores = [float(lab.rsplit("·", 1)[1]) for lab in labels]
    assert scores == sorted(scores, reverse=True)
    assert all(Path(it["image"]).is_file() for it in items)
    assert "Untrained stand-ins" in info
    assert ("reference CLIP" if scorer == "reference" else "FuseMix adapters") in info


def test_gallery_folder_given_at_launch(client, user_gallery):
    name = f"Folder: {user_gallery.name}"
    items, info = client.predict("a red square", name, "reference", 10, api_name="/caption_to_images")
    assert len(items) == 3  # k is clamped to the gallery; the corrupt file is skipped
    assert {it["caption"].split(". ", 1)[1].split(" ·")[0] for it in items} == {"red.png", "green.jpg", "blue.png"}
    assert "3 images; 1 file(s) skipped: 1 unreadable" in info  # the corrupt JPEG; notes.txt is not counted
    items, _ = client.predict("a red square", name, "fusemix", 2, api_name="/caption_to_images")
    assert len(items) == 2


def test_unicode_caption_is_accepted(client):
    items, _ = client.predict("  café 🐱 猫 — a cat\n", GALLERY, "reference", 2, api_name="/caption_to_images")
    assert len(items) == 2


@pytest.mark.parametrize("route", ["fusemix", "baseline"])
def test_sound_to_images(client, route):
    from gradio_client import handle_file

    items, info = client.predict(handle_file(str(EXAMPLES / "birdsong.wav")), route, GALLERY, 3,
                                 api_name="/sound_to_images")
    assert len(items) == 3 and all(Path(it["image"]).is_file() for it in items)
    assert "Untrained stand-ins" in info
    if route == "baseline":
        assert "Matched captions" in info


@pytest.mark.parametrize("scorer", ["reference", "fusemix"])
def test_image_to_captions(client, scorer):
    from gradio_client import handle_file

    from fusemix.default_gallery import default_gallery_dir

    table, info = client.predict(handle_file(str(default_gallery_dir() / "chelsea.png")), scorer, 5,
                                 api_name="/image_to_captions")
    assert table["headers"] == ["rank", "caption", "score", "from"]
    rows = table["data"]
    assert [r[0] for r in rows] == [1, 2, 3, 4, 5]
    assert all(isinstance(r[1], str) and r[1] for r in rows)
    assert [r[2] for r in rows] == sorted((r[2] for r in rows), reverse=True)
    assert "Untrained stand-ins" in info


# --------------------------------------------------------------------------- bad input


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    (d / "text.wav").write_text("this is not audio at all")
    (d / "empty.wav").write_bytes(b"")
    sf.write(d / "long.wav", np.zeros(16000 * 40, np.int16), 16000)  # 40 s > 30 s limit
    sf.write(d / "silent.wav", np.zeros(16000 * 2, np.int16), 16000)
    sf.write(d / "blip.wav", np.ones(100, np.int16) * 1000, 16000)  # 6 ms
    (d / "truncated.wav").write_bytes((EXAMPLES / "bell.wav").read_bytes()[:30])
    (d / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    return d


BAD_AUDIO = [
    ("text.wav", {}, "not audio"),
    ("empty.wav", {}, "empty"),
    ("long.wav", {}, "limit is 30 s"),
    ("silent.wav", {}, "silent"),
    ("blip.wav", {}, "at least 0.1 s"),
    ("truncated.wav", {}, "not audio"),
    ("@bell", {"steps": 1000}, "maximum"),
    ("@bell", {"steps": 0}, "minimum"),
    ("@bell", {"guidance": -1.0}, "minimum"),
    ("@bell", {"seed": -5}, "minimum"),
    ("@bell", {"size": 65}, "not in the list of choices"),
    ("@bell", {"weight": 2.0}, "maximum"),
    ("@bell", {"route": "teleport"}, "not in the list of choices"),
    ("@bell", {"steer": "oil\x00painting"}, "control characters"),
    ("@bell", {"steer": "x" * 100_000}, "limit is 300"),
]


@pytest.mark.parametrize("name,kw,message", BAD_AUDIO, ids=[f"{n}-{list(k)}" for n, k, _ in BAD_AUDIO])
def test_bad_audio_to_image_inputs_are_errors(client, bad_files, name, kw, message):
    from gradio_client.exceptions import AppError

    path = EXAMPLES / "bell.wav" if name == "@bell" else bad_files / name
    with pytest.raises(AppError, match=message):
        client.predict(*audio_args(path, **kw), api_name="/audio_to_image")


BAD_CAPTIONS = [
    ("a" * 100_000, "100,000 characters"),
    ("", "empty"),
    (" \n\t ", "empty"),
    ("a cat\x00\x07", "control characters"),
    ("a cat\x1b[31m", "control characters"),
]


@pytest.mark.parametrize("caption,message", BAD_CAPTIONS, ids=["100k", "empty", "blank", "nul", "escape"])
def test_bad_captions_are_errors(client, caption, message):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match=message):
        client.predict(caption, GALLERY, "reference", 3, api_name="/caption_to_images")


@pytest.mark.parametrize("args,message", [
    (("a cat", GALLERY, "reference", 0), "minimum"),
    (("a cat", GALLERY, "reference", 10_000), "maximum"),
    (("a cat", "../../etc", "reference", 3), "not in the list of choices"),
    (("a cat", GALLERY, "oracle", 3), "not in the list of choices"),
])
def test_bad_search_settings_are_errors(client, args, message):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match=message):
        client.predict(*args, api_name="/caption_to_images")


def test_bad_files_for_the_other_tabs(client, bad_files):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="not an image"):
        client.predict(handle_file(str(bad_files / "text.wav")), "reference", 3, api_name="/image_to_captions")
    with pytest.raises(AppError, match="not an image"):
        client.predict(handle_file(str(bad_files / "photo.png")), "reference", 3, api_name="/image_to_captions")
    with pytest.raises(AppError, match="not audio"):
        client.predict(handle_file(str(bad_files / "text.wav")), "baseline", GALLERY, 3, api_name="/sound_to_images")
    with pytest.raises(AppError, match="limit is 30 s"):
        client.predict(handle_file(str(bad_files / "long.wav")), "fusemix", GALLERY, 3, api_name="/sound_to_images")


def test_server_keeps_serving_after_errors(client, bad_files):
    from gradio_client.exceptions import AppError

    for _ in range(2):
        with pytest.raises(AppError):
            client.predict(*audio_args(bad_files / "text.wav"), api_name="/audio_to_image")
        with pytest.raises(AppError):
            client.predict("x\x00", GALLERY, "reference", 3, api_name="/caption_to_images")
    good_audio_call(client)
    items, _ = client.predict("a rocket", GALLERY, "reference", 2, api_name="/caption_to_images")
    assert len(items) == 2


def test_server_refuses_oversized_uploads(server):
    import httpx

    _, url = server
    big = b"\0" * (11 * 1024 * 1024)  # over the 10 MB limit
    r = httpx.post(url.rstrip("/") + "/gradio_api/upload", files={"files": ("big.wav", big, "audio/wav")},
                   timeout=60)
    assert r.status_code == 413
    r = httpx.post(url.rstrip("/") + "/gradio_api/upload", files={"files": ("ok.wav", b"RIFF", "audio/wav")},
                   timeout=60)
    assert r.status_code == 200


# --------------------------------------------------------------------------- app structure


def _components(demo):
    return demo.config["components"]


def test_named_endpoints(client):
    api = client.view_api(print_info=False, return_format="dict")
    assert {"/audio_to_image", "/caption_to_images", "/sound_to_images", "/image_to_captions"} <= set(
        api["named_endpoints"])


def test_every_tab_carries_the_standin_banner(server):
    import httpx

    config = httpx.get(server[1].rstrip("/") + "/config", timeout=10).json()  # what the page is built from
    comps = {c["id"]: c for c in config["components"]}

    def ids(node):
        yield node["id"]
        for child in node.get("children", []):
            yield from ids(child)

    def tabs(node):
        if comps.get(node["id"], {}).get("type") == "tabitem":
            yield node
        for child in node.get("children", []):
            yield from tabs(child)

    found = {comps[t["id"]]["props"]["label"]: t for t in tabs(config["layout"])}
    assert {"Audio → Image", "Caption → Images", "Sound → Images", "Image → Captions", "About"} <= set(found)
    for label, tab in found.items():
        banners = [comps[i] for i in ids(tab) if "standin-banner" in (comps.get(i, {}).get("props", {})
                                                                       .get("elem_classes") or [])]
        assert banners and all("Untrained stand-ins" in b["props"]["value"] for b in banners), label


def test_generation_runs_one_at_a_time_beside_searches_and_the_queue_is_bounded(shared_env, monkeypatch, tmp_path):
    """Generation's concurrency limit (1), search in its own group, and Gradio's queue bound, seen from
    clients: generations are held open until the test lets them go."""
    import threading

    from gradio_client import Client

    from demo.models import Limits
    from fusemix.generation import AudioToImage

    release, lock, active, peak = threading.Event(), threading.Lock(), [0], [0]
    real = AudioToImage.generate

    def held_generate(self, *a, **k):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        try:
            assert release.wait(60)
            return real(self, *a, **k)
        finally:
            with lock:
                active[0] -= 1

    monkeypatch.setattr(AudioToImage, "generate", held_generate)
    with tiny_demo(shared_env["tiny_root"].parent, limits=Limits(queue_size=2)) as (_, url, _):
        c = Client(url, verbose=False, download_files=str(tmp_path))
        release.set()
        c.predict(*audio_args(EXAMPLES / "bell.wav"), api_name="/audio_to_image")  # models load once
        c.predict("a cat", GALLERY, "reference", 2, api_name="/caption_to_images")
        release.clear()
        first = c.submit(*audio_args(EXAMPLES / "bell.wav"), api_name="/audio_to_image")
        deadline = time.monotonic() + 60
        while active[0] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        items, _ = c.predict("a rocket", GALLERY, "reference", 2, api_name="/caption_to_images")
        assert len(items) == 2 and active[0] == 1  # a search is answered while a generation runs
        more = [c.submit(*audio_args(EXAMPLES / "bell.wav"), api_name="/audio_to_image") for _ in range(4)]
        while sum(j.done() for j in more) < 2 and time.monotonic() < deadline:  # 2 wait, 2 are turned away
            time.sleep(0.05)
        release.set()
        outcomes = []
        for job in [first, *more]:
            try:
                job.result(timeout=120)
                outcomes.append("ok")
            except Exception as exc:  # noqa: BLE001
                outcomes.append(str(exc))
    assert peak[0] == 1, "two generations ran at once"
    assert outcomes.count("ok") == 3 and sum("queue is full" in o.lower() for o in outcomes) == 2, outcomes


def _real_demo(tmp_path, weights=None):
    from demo.app import build_demo
    from demo.models import Resolution, Settings

    settings = Settings.from_env(env={}, profile="real", weights=str(weights or tmp_path / "no-weights"),
                                 tiny_root=str(tmp_path / "tiny"))
    return build_demo(settings=settings, resolution=Resolution("real", "real"))


def _radio_values(demo, label):
    for c in _components(demo):
        if c.get("type") == "radio" and c["props"].get("label") == label:
            yield [v for _, v in c["props"]["choices"]]


def _markdown_text(demo) -> str:
    return "\n".join(str(c["props"].get("value")) for c in _components(demo) if c.get("type") == "markdown")


def test_real_profile_without_adapters_says_so_and_offers_baselines(tmp_path):
    demo = _real_demo(tmp_path)
    text = _markdown_text(demo)
    assert "Untrained stand-ins" not in text  # no banner on the real profile
    assert "the app trains one here from captions alone" in text  # the live bridge, not started before launch
    assert "from CLAP into CLIP's text space, trained on this machine from captions alone" in text  # Sound -> Images
    assert "No trained FuseMix text and image adapters are installed" in text
    assert list(_radio_values(demo, "Route")) == [["bridge", "captions"], ["fusemix", "baseline"]]
    assert list(_radio_values(demo, "Scorer")) == [["reference"], ["reference"]]
    assert demo.fusemix.models.loaded() == []
    assert not (tmp_path / "tiny").exists()  # nothing built or downloaded


def test_real_profile_offers_trained_adapters_first_and_ignores_standins(tmp_path):
    from fusemix.model import FusionConfig, FusionModel, ModalitySpec
    from fusemix.tiny import STANDIN_FILE

    weights = tmp_path / "weights"
    cfg = FusionConfig({"image": ModalitySpec("image:facebook/dinov2-small", 8),
                        "text": ModalitySpec("sentence:BAAI/bge-small-en-v1.5", 8)}, proj_dim=4, depth=1)
    FusionModel(cfg).save_pretrained(weights / "image-text")
    FusionModel(FusionConfig({"audio": ModalitySpec("x", 4), "image": ModalitySpec("y", 4)}, proj_dim=4,
                             depth=1)).save_pretrained(weights / "standin")
    (weights / "standin" / STANDIN_FILE).write_text("random")
    demo = _real_demo(tmp_path, weights)
    models = demo.fusemix.models
    assert [e.path.name for e in models.adapters] == ["image-text"]
    assert any("stand-in" in p for p in models.adapter_problems)
    assert list(_radio_values(demo, "Scorer")) == [["fusemix", "reference"], ["fusemix", "reference"]]
    # live bridge; no trained audio adapter, so Sound -> Images trains its own (the stand-in is ignored)
    assert list(_radio_values(demo, "Route")) == [["bridge", "captions"], ["fusemix", "baseline"]]


def test_incompatible_bridge_leaves_the_caption_route_working(shared_env, tmp_path):
    from demo.app import Demo
    from demo.models import AdapterEntry, DemoInputError, DemoModels, Resolution, Settings
    from fusemix.bridge import BridgeConfig, ConditioningBridge

    settings = Settings.from_env(env={}, profile="tiny", tiny_root=str(shared_env["tiny_root"]))
    models = DemoModels(settings, Resolution("tiny", "tiny"))
    suite = models.tiny_suite()
    ConditioningBridge(BridgeConfig(clap_model="someone/another-clap", sd_model=str(suite["sd"]), in_dim=16,
                                    seq_len=77, out_dim=32, head="direct")).save_pretrained(tmp_path / "bridge")
    models.adapters = [AdapterEntry("bridge", tmp_path / "bridge", {}, True)]
    demo = Demo(models)
    no_progress = lambda *a, **k: None  # noqa: E731
    args = (str(EXAMPLES / "bell.wav"), "bridge", "", 0.0, 0, 2, 1.0, 64)
    with pytest.raises(DemoInputError, match="bridge cannot be used.*another-clap"):
        demo.audio_to_image(*args, progress=no_progress)
    image, rows, info = demo.audio_to_image(*(args[:1] + ("captions",) + args[2:]), progress=no_progress)
    assert image.size == (64, 64) and len(rows) == 3
    assert any("not used" in p for p in models.adapter_problems)


@pytest.mark.parametrize("child, note", [("import time; time.sleep(60)", "Training a FuseMix bridge on this machine"),
                                         ("import sys; sys.exit('no memory left')", "could not be trained here")])
def test_bridge_requests_while_the_live_bridge_trains_or_failed_get_the_caption_route(shared_env, monkeypatch,
                                                                                      tmp_path, child, note):
    from demo.app import Demo
    from train_bridge import LiveBridge
    from demo.models import DemoModels, Resolution, Settings

    monkeypatch.setattr(LiveBridge, "command", lambda self: [sys.executable, "-c", child])
    monkeypatch.setenv("FUSEMIX_CACHE", str(tmp_path))  # no cached bridge from the other tests
    settings = Settings.from_env(env={}, profile="tiny", tiny_root=str(shared_env["tiny_root"]))
    models = DemoModels(settings, Resolution("tiny", "tiny"))
    live = models.start_live_bridge()
    if "exit" in child:
        live.wait(60)
    demo = Demo(models)
    image, rows, info = demo.audio_to_image(str(EXAMPLES / "bell.wav"), "bridge", "", 0.0, 0, 2, 1.0, 64,
                                            progress=lambda *a, **k: None)
    assert image.size == (64, 64) and len(rows) == 3  # served, by the caption route
    assert "answered through the caption-bank baseline" in info and note in info


def test_real_profile_loaders_on_local_checkpoints(shared_env, tmp_path):
    """The real profile's own loading code, on local folders (what a user with downloaded checkpoints
    runs): the folders hold the tiny stand-ins, and a tiny AutoencoderTiny stands where TAESD goes, so
    the CPU VAE swap runs too. Stand-in checkpoints are still named as such in the output."""
    from diffusers import AutoencoderTiny

    from demo.app import Demo
    from demo.models import DemoModels, Settings, resolve_profile
    from fusemix.tiny import build_tiny_suite

    suite = build_tiny_suite(shared_env["tiny_root"] / "models", extras=("clip",))
    AutoencoderTiny(encoder_block_out_channels=(8, 8, 8), decoder_block_out_channels=(8, 8, 8),
                    num_encoder_blocks=(1, 1, 1), num_decoder_blocks=(1, 1, 1)).save_pretrained(tmp_path / "taesd")
    settings = Settings.from_env(env={}, profile="real", clap_model=str(suite["clap"]), sd_model=str(suite["sd"]),
                                 reference_model=str(suite["clip"]), vae=str(tmp_path / "taesd"),
                                 weights=str(tmp_path / "no-weights"), device="cpu")
    resolution = resolve_profile(settings)
    assert (resolution.profile, resolution.standin) == ("real", False)  # local folders with their key files
    demo = Demo(DemoModels(settings, resolution))
    no_progress = lambda *a, **k: None  # noqa: E731
    image, rows, info = demo.audio_to_image(str(EXAMPLES / "engine.wav"), "captions", "", 0.0, 0, 1, 0.0, 256,
                                            progress=no_progress)
    assert isinstance(demo.models.audio_to_image().pipe.vae, AutoencoderTiny)
    assert image.size == (256, 256) and len(rows) == 3
    assert "Untrained stand-ins" not in info and "tiny RANDOM stand-in" in info
    items, info = demo.caption_to_images("a rocket", GALLERY, "reference", 3, progress=no_progress)
    assert len(items) == 3 and "reference CLIP" in info


# --------------------------------------------------------------------------- profile resolution


def test_fallback_and_strict():
    from demo.models import ProfileUnavailable, Settings, resolve_profile

    def no_hub(ids, timeout):
        return [f"{m} unreachable" for m in ids.values()]

    res = resolve_profile(Settings.from_env(env={}), probe=no_hub)
    assert (res.requested, res.profile, res.standin, res.fell_back) == ("real", "tiny", True, True)
    assert "laion/clap-htsat-unfused unreachable" in res.reason
    with pytest.raises(ProfileUnavailable, match="strict"):
        resolve_profile(Settings.from_env(env={}, strict=True), probe=no_hub)
    ok = resolve_profile(Settings.from_env(env={}), probe=lambda ids, timeout: [])
    assert (ok.profile, ok.standin) == ("real", False)
    assert resolve_profile(Settings.from_env(env={}, profile="tiny"), probe=no_hub).fell_back is False


def test_probe_offline_names_every_missing_checkpoint(tmp_path, monkeypatch):
    from demo.models import probe_checkpoints

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    local = tmp_path / "local-clip"
    local.mkdir()
    (local / "config.json").write_text("{}")
    problems = probe_checkpoints({"clap": "nobody/clap", "sd": "nobody/sd", "reference": str(local)})
    assert len(problems) == 2 and all("HF_HUB_OFFLINE" in p for p in problems)
    assert probe_checkpoints({"reference": str(local)}) == []
    assert "without model_index.json" in probe_checkpoints({"sd": str(local)})[0]


def test_settings_from_env_and_validation(tmp_path):
    from demo.models import Settings

    env = {"FUSEMIX_PROFILE": "tiny", "FUSEMIX_STRICT": "1", "FUSEMIX_PORT": "7999",
           "FUSEMIX_GALLERY": str(tmp_path), "FUSEMIX_MAX_AUDIO_SECONDS": "12.5", "FUSEMIX_QUEUE_SIZE": "3"}
    s = Settings.from_env(env=env)
    assert (s.profile, s.strict, s.port, s.gallery) == ("tiny", True, 7999, str(tmp_path))
    assert (s.limits.max_audio_seconds, s.limits.queue_size) == (12.5, 3)
    assert Settings.from_env(env=env, profile="real").profile == "real"  # arguments win over env
    with pytest.raises(ValueError, match="profile"):
        Settings.from_env(env={"FUSEMIX_PROFILE": "huge"})
    with pytest.raises(ValueError, match="not a folder"):
        Settings.from_env(env={}, gallery=str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="port"):
        Settings.from_env(env={"FUSEMIX_PORT": "http"})


def test_vae_choice():
    from demo.models import DEFAULT_CPU_VAE, Settings

    cpu = Settings.from_env(env={}, device="cpu")
    assert cpu.vae_id() == DEFAULT_CPU_VAE and cpu.real_ids()["vae"] == DEFAULT_CPU_VAE  # TAESD on CPU
    assert Settings.from_env(env={}, device="cuda", vae="auto").vae_id() is None  # the checkpoint's own on GPU
    assert "vae" not in Settings.from_env(env={"FUSEMIX_VAE": "full"}, device="cpu").real_ids()
    assert Settings.from_env(env={}, vae="me/my-taesd").vae_id() == "me/my-taesd"


def test_adapter_encoder_specs():
    from demo.models import DemoInputError, encoder_of

    assert encoder_of("sentence:BAAI/bge-small-en-v1.5", "text") == ("sentence", "BAAI/bge-small-en-v1.5")
    assert encoder_of("laion/clap-htsat-unfused", "audio") == ("clap-audio", "laion/clap-htsat-unfused")
    assert encoder_of("facebook/dinov2-small", "image") == ("image", "facebook/dinov2-small")
    with pytest.raises(DemoInputError, match="cannot tell which encoder.*'video'"):
        encoder_of("someone/video-model", "video")


# --------------------------------------------------------------------------- input checks (units)


def test_clean_caption():
    from demo.app import clean_caption
    from demo.models import DemoInputError

    assert clean_caption("  a\tcat \n on  a mat ", 300) == "a cat on a mat"
    assert clean_caption("cafe\u0301 🐱", 300) == "café 🐱"  # NFC
    for bad, msg in [(None, "empty"), (123, "text"), ("x" * 301, "301 characters"), ("a\x7fb", r"U\+007F"),
                     ("\ud800", r"U\+D800")]:
        with pytest.raises(DemoInputError, match=msg):
            clean_caption(bad, 300)


def test_check_number():
    from demo.app import check_number
    from demo.models import DemoInputError

    assert check_number(3.0, "Steps", 1, 4, integer=True) == 3
    for bad in (None, True, "x", float("nan"), float("inf"), 5, 2.5):
        with pytest.raises(DemoInputError):
            check_number(bad, "Steps", 1, 4, integer=True)


# --------------------------------------------------------------------------- reference scorer, examples


def test_reference_scorer_on_tiny_clip(shared_env):
    from PIL import Image

    from fusemix.encoders.base import EncoderInputError
    from fusemix.reference import ReferenceScorer
    from fusemix.tiny import build_tiny_suite

    suite = build_tiny_suite(shared_env["tiny_root"] / "models", extras=("clip",))
    ref = ReferenceScorer.from_pretrained(suite["clip"], device="cpu", standin=True)
    assert ref.standin and ref.dim == 16
    t = ref.embed_texts(["a cat", "a dog " * 60])
    assert t.shape == (2, 16) and np.allclose(t.norm(dim=-1).numpy(), 1, atol=1e-5)
    assert ref.n_truncated == 1
    imgs = [Image.new("RGB", (40, 30), "red"), np.zeros((20, 20, 3), np.uint8)]
    s = ref.score("a cat", imgs)
    assert s.shape == (2,) and bool(((s >= -1) & (s <= 1)).all())
    assert ref.fingerprint == ReferenceScorer.from_pretrained(suite["clip"], device="cpu").fingerprint
    space = ref.space()
    assert set(space.modalities) == {"image", "text"} and space.standin
    with pytest.raises(EncoderInputError):
        ref.embed_texts([" "])
    with pytest.raises(EncoderInputError):
        ref.embed_images([b"not an image"])


def test_example_sounds_are_small_and_regenerable():
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import make_examples
    finally:
        sys.path.remove(str(ROOT / "tools"))
    assert make_examples.OUT == EXAMPLES  # the generator writes where the demo reads
    wavs = sorted(EXAMPLES.glob("*.wav"))
    assert len(wavs) >= 5
    assert sum(w.stat().st_size for w in wavs) < 1_000_000
    for w in wavs:
        info = sf.info(w)
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        assert 1.0 <= info.duration <= 6.0
    for name, pcm in make_examples.synthesize_all().items():  # the shipped files are what the script makes
        data, _ = sf.read(EXAMPLES / f"{name}.wav", dtype="int16")
        assert np.array_equal(data, pcm), name


# --------------------------------------------------------------------------- the README's main command


def _source_tree(tmp_path: Path) -> Path:
    """A fresh `git clone` of the repo when the demo is committed, else a copy of the working tree's
    tracked and untracked-but-not-ignored files (what a commit would hold)."""
    dest = tmp_path / "clone"
    committed = subprocess.run(["git", "ls-files", "--error-unmatch", "demo/app.py"], cwd=ROOT,
                               capture_output=True).returncode == 0
    if committed:
        subprocess.run(["git", "clone", "-q", str(ROOT), str(dest)], check=True)
        return dest
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for f in filter(None, files):
        src = ROOT / f
        if src.is_file():
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / f)
    return dest


def _site_packages() -> str:
    import gradio

    return str(Path(gradio.__file__).resolve().parents[1])


def _wait_for(url: str, proc, seconds: float) -> None:
    import httpx

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the app exited with code {proc.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"the app did not answer on {url} within {seconds} s")


@pytest.mark.slow
def test_main_command_offline_from_a_fresh_clone(tmp_path):
    """`python demo/app.py` as a Space runs it: from a clone, fusemix NOT installed (python -S drops the
    venv's editable install; PYTHONPATH gives only the third-party packages), no network."""
    import httpx

    src = _source_tree(tmp_path)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FUSEMIX_", "GRADIO_"))}
    env.update(PYTHONPATH=_site_packages(), HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"),
               HF_HUB_CACHE=str(tmp_path / "hf" / "hub"), FUSEMIX_CACHE=str(tmp_path / "cache"),
               GRADIO_ANALYTICS_ENABLED="False", FUSEMIX_HOST="127.0.0.1", FUSEMIX_PORT=str(port))
    out, err = (tmp_path / "stdout.txt").open("w"), (tmp_path / "stderr.txt").open("w")
    proc = subprocess.Popen([sys.executable, "-S", "demo/app.py"], cwd=src, env=env, stdout=out, stderr=err,
                            start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}/"
        _wait_for(url, proc, 150)
        config = httpx.get(url + "config", timeout=10).json()
        text = json.dumps(config)
        assert "Untrained stand-ins" in text and "The real models cannot be loaded here" in text
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        out.close()
        err.close()
    stdout, stderr = (tmp_path / "stdout.txt").read_text(), (tmp_path / "stderr.txt").read_text()
    assert f"fusemix 0.1.0 from {(src / 'fusemix').resolve()}" in stdout, stdout + stderr
    assert "Starting on the TINY profile" in stderr
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.safetensors"))  # lazy


def test_strict_refuses_to_fall_back(tmp_path, monkeypatch, capsys):
    from demo.app import main

    for k in [k for k in os.environ if k.startswith("FUSEMIX_")]:
        monkeypatch.delenv(k)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(SystemExit) as exc:  # ids that no cache holds, so this never depends on the machine
        main(["--strict", "--sd-model", "nobody/no-sd", "--clap-model", "nobody/no-clap",
              "--reference-model", "nobody/no-clip"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "cannot be loaded" in err and "--strict" in err
