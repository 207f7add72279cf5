"""The demo as a Space runs it: ZeroGPU detection and its GPU configuration (without touching CUDA), the
spaces.GPU decoration of the GPU handlers, the CPU path with `spaces` installed, the MCP switch."""
from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
import torch
from demo_server import tiny_demo

from demo import zerogpu

GALLERY = "Default photos (scikit-image)"
HANDLERS = {"audio_to_image": 60, "caption_to_images": 30, "sound_to_images": 30, "image_to_captions": 30}


@pytest.fixture
def zero_gpu(monkeypatch):
    """A faked ZeroGPU Space: SPACES_ZERO_GPU set, and a stand-in `spaces` module that records what it
    decorates (the real one would contact the ZeroGPU scheduler)."""
    decorated = {}

    def GPU(duration=None):  # noqa: N802 - spaces' own name
        def deco(fn):
            decorated[fn.__name__] = duration
            return fn
        return deco

    monkeypatch.setenv(zerogpu.ENV, "true")
    monkeypatch.setitem(sys.modules, "spaces", types.SimpleNamespace(GPU=GPU))
    return decorated


def test_zerogpu_is_detected_as_the_spaces_package_does():
    import spaces.config  # the installed spaces package (requirements-dev.txt); importing it is inert off ZeroGPU

    for value in ("true", "True", "1", "t", "false", "0", "", "yes", "on"):
        assert zerogpu.active({zerogpu.ENV: value}) == spaces.config.boolean(value), value
    assert not zerogpu.active({})


def test_gpu_branch_configuration_without_cuda(zero_gpu, monkeypatch):
    """ZeroGPU: CUDA, the full VAE, fp16 and the GPU's sizes and steps are chosen before any CUDA call."""
    import demo.models as dm
    from demo.app import Demo

    settings = dm.Settings.from_env(env={}, profile="real")  # no --device: ZeroGPU decides
    assert settings.vae_id() is None and "vae" not in settings.real_ids()  # the checkpoint's own VAE, no TAESD
    models = dm.DemoModels(settings, dm.Resolution("real", "real"))
    assert models.device == torch.device("cuda")
    gen = Demo(models).gen
    assert gen["sizes"] == [512, 576, 640, 704, 768] and gen["size"] == 512
    assert (gen["steps"], gen["guidance"], gen["max_steps"]) == (2, 0.0, 8)  # sd-turbo's own defaults

    calls = []

    class Stop(Exception):
        pass

    def load(cls, model_id, **kw):  # where the pipeline would load and then move to CUDA
        calls.append((cls.__name__, model_id, kw))
        raise Stop

    monkeypatch.setattr(dm, "from_pretrained_safetensors", load)
    with pytest.raises(Stop):
        models.audio_to_image()
    assert calls == [("StableDiffusionPipeline", "stabilityai/sd-turbo", {"dtype": torch.float16})]

    monkeypatch.delenv(zerogpu.ENV)  # the same settings off ZeroGPU (no CUDA here): CPU, TAESD, float32
    cpu = dm.DemoModels(dm.Settings.from_env(env={}, profile="real"), dm.Resolution("real", "real"))
    assert cpu.device == torch.device("cpu") and cpu.settings.vae_id() == dm.DEFAULT_CPU_VAE
    calls.clear()
    with pytest.raises(Stop):
        cpu.audio_to_image()
    assert calls == [("AutoencoderTiny", dm.DEFAULT_CPU_VAE, {"dtype": torch.float32})]
    assert Demo(cpu).gen["steps"] == 1 and max(Demo(cpu).gen["sizes"]) == 512
    # an explicit device still wins on ZeroGPU
    monkeypatch.setenv(zerogpu.ENV, "1")
    assert zerogpu.device("cpu") == torch.device("cpu") and zerogpu.device(None) == torch.device("cuda")


def test_zerogpu_decorates_the_gpu_handlers_only(zero_gpu, tmp_path, monkeypatch):
    from demo.app import build_demo
    from demo.models import Settings

    monkeypatch.setenv("FUSEMIX_CACHE", str(tmp_path / "cache"))
    demo = build_demo(settings=Settings.from_env(env={}, profile="tiny", tiny_root=str(tmp_path / "tiny")))
    assert zero_gpu == HANDLERS  # bridge_status needs no GPU
    assert demo.fusemix.models.device == torch.device("cuda") and demo.fusemix.models.loaded() == []


def test_on_zerogpu_the_start_up_training_runs_in_process_inside_a_gpu_call(zero_gpu, tmp_path, monkeypatch):
    """No GPU outside a decorated call on ZeroGPU: the live bridge and sound adapter train in this process,
    through one ``spaces.GPU(duration=180)`` function, not in a child process; the result is cached as usual."""
    import demo.models as dm

    monkeypatch.setenv("FUSEMIX_CACHE", str(tmp_path / "cache"))
    models = dm.DemoModels(dm.Settings.from_env(env={}, profile="tiny", tiny_root=str(tmp_path / "tiny")),
                           dm.Resolution("tiny", "tiny"))
    bridge = models.start_live_bridge()
    assert bridge.wait(300)["state"] == "ready", bridge.status()
    assert models.live_sound.wait(300)["state"] == "ready", models.live_sound.status()
    assert zero_gpu == {"call": zerogpu.DURATIONS["training"]}  # decorated once, shared by both trainings
    assert bridge.proc is None and models.live_sound.proc is None  # no child process was started
    assert (bridge.path / "model.safetensors").is_file() and "trained on this machine" in bridge.label()


def test_zerogpu_without_a_usable_spaces_package_runs_undecorated(monkeypatch, caplog):
    monkeypatch.setenv(zerogpu.ENV, "true")
    monkeypatch.setitem(sys.modules, "spaces", None)  # import spaces -> ImportError

    def f():
        return 1
    assert zerogpu.gpu(60)(f) is f
    assert "ZeroGPU without spaces.GPU" in caplog.text


@pytest.mark.parametrize("duration", [0, -5, 2.5, True, "60", None])
def test_gpu_duration_must_be_whole_seconds(duration):
    with pytest.raises(ValueError, match="duration"):
        zerogpu.gpu(duration)


def test_mcp_switch_from_the_flag_and_the_environment():
    from demo.app import launch_kwargs, parse_args
    from demo.models import Settings

    assert parse_args(["--mcp"]).mcp is True and parse_args([]).mcp is None
    assert Settings.from_env(env={"FUSEMIX_MCP": "1"}).mcp is True
    assert Settings.from_env(env={}, mcp=True).mcp is True
    assert launch_kwargs(Settings.from_env(env={"FUSEMIX_MCP": "true"}))["mcp_server"] is True
    assert launch_kwargs(Settings.from_env(env={}))["mcp_server"] is None  # Gradio's GRADIO_MCP_SERVER decides


# --------------------------------------------------------------------------- the CPU path with spaces installed


@pytest.fixture(scope="module")
def cpu_server(tmp_path_factory):
    """The tiny app with `spaces` importable and ZeroGPU off, its models preloaded as ZeroGPU would."""
    import spaces  # noqa: F401 - installed (requirements-dev.txt), as on a Space

    mp = pytest.MonkeyPatch()
    mp.delenv(zerogpu.ENV, raising=False)
    preloaded = []
    try:
        with tiny_demo(tmp_path_factory.getbasetemp(), live_bridge=False,
                       before_launch=lambda d: preloaded.extend(d.fusemix.models.preload())) as (demo, url, _):
            yield demo, url, preloaded
    finally:
        mp.undo()


def test_preload_loads_every_model_before_launch(cpu_server):
    _, _, preloaded = cpu_server
    assert {"sd_pipeline", "clap_audio", "reference", "_fusion_space"} <= set(preloaded)
    assert "caption_bank" not in preloaded and "gallery" not in preloaded  # these compute: inside a GPU call


def test_decorated_handlers_answer_on_the_cpu_path(cpu_server, tmp_path):
    from gradio_client import Client, handle_file
    from PIL import Image

    from fusemix.default_gallery import default_gallery_dir

    demo, url, _ = cpu_server
    assert demo.fusemix.models.device == torch.device("cpu")
    c = Client(url, verbose=False, download_files=str(tmp_path))
    bell = handle_file(str(Path(__file__).resolve().parents[1] / "demo" / "examples" / "bell.wav"))
    img, _, info = c.predict(bell, "captions", "", 0.3, 0, 2, 1.0, 64, api_name="/audio_to_image")
    with Image.open(img) as im:
        assert im.size == (64, 64)
    assert "on cpu" in info
    items, _ = c.predict("a cat", GALLERY, "fusemix", 2, api_name="/caption_to_images")
    assert len(items) == 2
    items, _ = c.predict(bell, "fusemix", GALLERY, 2, api_name="/sound_to_images")
    assert len(items) == 2
    table, _ = c.predict(handle_file(str(default_gallery_dir() / "chelsea.png")), "reference", 3,
                         api_name="/image_to_captions")
    assert len(table["data"]) == 3
