"""AudioToImage end to end on the tiny random stand-ins (CLAP, SD pipeline): offline, CPU, fast.

The images are meaningless (random weights); what is tested is the plumbing a real checkpoint
goes through: sizes, determinism under a seed, the conditioning tensors the pipeline checks,
steering, schedulers, refusals of bad input, and never returning a black or NaN image.
"""
from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F

from fusemix.audio import AudioError
from fusemix.bridge import BridgeConfig, ConditioningBridge, IncompatibleBridgeError
from fusemix.caption_bank import CaptionBank
from fusemix.generation import AudioToImage, GenerationError, GenerationParamError

SR = 48_000
BANK = ["a dog barking", "rain on a tin roof", "a car engine idling", "church bells ringing", "a baby crying"]


def tone(freq=440.0, seconds=1.0, sr=SR, amp=0.4):
    return (amp * np.sin(2 * np.pi * freq * np.arange(int(sr * seconds)) / sr)).astype(np.float32)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from fusemix.encoders import load_encoder
    from fusemix.tiny import save_tiny_clap, save_tiny_sd_pipeline

    root = tmp_path_factory.mktemp("a2i")
    clap, sd = root / "clap", root / "sd"
    save_tiny_clap(clap)
    save_tiny_sd_pipeline(sd)
    bank_file = root / "bank.txt"
    bank_file.write_text("# test bank\n" + "\n".join(BANK) + "\n")
    y = load_encoder("sd-text", str(sd), device="cpu").encode(BANK * 4, progress=False)
    x = F.normalize(torch.randn(len(y), 16, generator=torch.Generator().manual_seed(0)), dim=-1)
    torch.manual_seed(0)
    bridge = ConditioningBridge(BridgeConfig(clap_model=str(clap), sd_model=str(sd), in_dim=16, out_dim=32,
                                             depth=1, rank=8))
    bridge.initialize_from_data(x, y)  # statistics only: this bridge is NOT trained
    bridge.save_pretrained(root / "bridge")
    a2i = AudioToImage.from_pretrained(str(sd), str(clap), bridge=str(root / "bridge"), caption_bank=str(bank_file),
                                       device="cpu", cache_dir=str(root / "cache"), standin=True)
    return dict(a2i=a2i, root=root, clap=str(clap), sd=str(sd), bank_file=bank_file)


def pixels(result) -> np.ndarray:
    return np.asarray(result.image, dtype=np.int16)


def test_image_of_requested_size_and_default_size(world):
    a2i = world["a2i"]
    r = a2i.generate(tone(), sampling_rate=SR, seed=0)
    assert r.image.size == (64, 64) and r.image.mode == "RGB" and r.route == "bridge"
    r = a2i.generate(tone(), sampling_rate=SR, seed=0, height=96, width=128)
    assert r.image.size == (128, 96)  # PIL: (width, height)
    assert set(r.timings) >= {"clap", "condition", "pipeline", "total"}
    assert any("stand-in" in n for n in r.notes)  # the UI can say these are random models
    # the label comes from the caller that loaded the stand-ins, never from sniffing the folders
    assert AudioToImage(a2i.pipe, a2i.audio_encoder, caption_bank=a2i.caption_bank).notes() == []


def test_same_seed_same_image_other_seed_other_image(world):
    a2i = world["a2i"]
    a = a2i.generate(tone(), sampling_rate=SR, seed=7)
    b = a2i.generate(tone(), sampling_rate=SR, seed=7)
    c = a2i.generate(tone(), sampling_rate=SR, seed=8)
    assert np.array_equal(pixels(a), pixels(b))
    assert np.abs(pixels(a) - pixels(c)).mean() > 1.0


def test_bridge_prompt_embeds_match_what_the_pipeline_checks(world):
    a2i = world["a2i"]
    pipe = a2i.pipe
    latent = a2i.encode_audio(tone(), SR)
    cond, neg, captions = a2i.condition(latent, "bridge", a2i.params())
    ref, ref_neg = pipe.encode_prompt("a dog barking", pipe.device, 1, True, negative_prompt="")
    assert cond.shape == ref.shape == neg.shape == (1, 77, 32)
    assert cond.dtype == ref.dtype == pipe.text_encoder.dtype and cond.device == ref.device
    assert captions is None
    assert torch.allclose(neg, ref_neg)  # negative = the empty prompt, as the pipeline itself would use
    pipe.check_inputs(None, 64, 64, None, negative_prompt=None, prompt_embeds=cond, negative_prompt_embeds=neg)


def test_caption_route_uses_the_best_caption_as_prompt(world):
    a2i = world["a2i"]
    r = a2i.generate(tone(), sampling_rate=SR, route="captions", seed=3, top_k=4)
    assert r.route == "captions" and len(r.captions) == 4
    assert {m.caption for m in r.captions} <= set(BANK)
    scores = [m.score for m in r.captions]
    assert scores == sorted(scores, reverse=True)
    same = a2i.generate_from_text(r.captions[0].caption, seed=3)
    assert np.array_equal(pixels(r), pixels(same))


def test_text_steering_blends_with_a_weight(world):
    a2i = world["a2i"]
    plain = a2i.generate(tone(), sampling_rate=SR, seed=1)
    zero = a2i.generate(tone(), sampling_rate=SR, seed=1, steer_prompt="an oil painting", steer_weight=0.0)
    full = a2i.generate(tone(), sampling_rate=SR, seed=1, steer_prompt="an oil painting", steer_weight=1.0)
    text = a2i.generate_from_text("an oil painting", seed=1)
    half = a2i.generate(tone(), sampling_rate=SR, seed=1, steer_prompt="an oil painting", steer_weight=0.5)
    assert np.array_equal(pixels(plain), pixels(zero))
    assert np.array_equal(pixels(full), pixels(text))
    assert not np.array_equal(pixels(half), pixels(plain)) and not np.array_equal(pixels(half), pixels(text))


def test_scheduler_choice_is_applied_and_reversible(world):
    a2i = world["a2i"]
    base = a2i.generate(tone(), sampling_rate=SR, seed=2)
    euler = a2i.generate(tone(), sampling_rate=SR, seed=2, scheduler="euler")
    assert type(a2i.pipe.scheduler).__name__ == "EulerDiscreteScheduler"
    again = a2i.generate(tone(), sampling_rate=SR, seed=2, scheduler="default")
    assert not np.array_equal(pixels(base), pixels(euler))
    assert np.array_equal(pixels(base), pixels(again))


@pytest.mark.parametrize("kw, match", [
    (dict(steps=0), r"steps must be an integer in \[1, 100\]"),
    (dict(steps=101), r"\[1, 100\]"),
    (dict(steps=2.5), "integer"),
    (dict(guidance=-0.5), r"guidance .*\[0.0, 20.0\]"),
    (dict(guidance=float("nan")), "guidance"),
    (dict(height=65), "multiple of 8"),
    (dict(width=32), r"\[64, 1024\]"),
    (dict(height=4096), r"\[64, 1024\]"),
    (dict(seed=-1), "seed"),
    (dict(scheduler="warp"), "scheduler must be one of"),
    (dict(steer_weight=0.5), "steer_prompt"),
    (dict(steer_weight=1.5, steer_prompt="x"), r"\[0.0, 1.0\]"),
    (dict(top_k=0), r"top_k .*\[1, 10\]"),
    (dict(colour="red"), "unknown generation parameter"),
])
def test_out_of_range_parameters_are_refused_with_the_range(world, kw, match):
    with pytest.raises(GenerationParamError, match=match):
        world["a2i"].generate(tone(), sampling_rate=SR, **kw)


def test_unknown_route_is_refused(world):
    with pytest.raises(GenerationParamError, match="route must be one of"):
        world["a2i"].generate(tone(), sampling_rate=SR, route="telepathy")


def test_bad_audio_is_refused_before_any_generation(world, tmp_path):
    a2i = world["a2i"]
    with pytest.raises(AudioError, match="silent"):
        a2i.generate(np.zeros(SR, np.float32), sampling_rate=SR)
    bad = tone()
    bad[100] = np.nan
    with pytest.raises(AudioError, match="NaN"):
        a2i.generate(bad, sampling_rate=SR)
    with pytest.raises(AudioError, match="shorter"):
        a2i.generate(tone(seconds=0.05), sampling_rate=SR)
    eleven_minutes = np.full(8000 * 660, 0.1, np.float32)  # cheap at 8 kHz; refused from its length alone
    with pytest.raises(AudioError, match="limit"):
        a2i.generate(eleven_minutes, sampling_rate=8000)
    fake = tmp_path / "song.wav"
    fake.write_bytes(b"this is not audio at all" * 100)
    with pytest.raises(AudioError, match="not a decodable audio file"):
        a2i.generate(str(fake))


def test_awkward_but_valid_audio_is_accepted(world, tmp_path):
    a2i = world["a2i"]
    six = np.stack([tone(300 + 50 * i, sr=8000) for i in range(6)], axis=1)  # 8 kHz, 6 channels
    path = tmp_path / "six.wav"
    sf.write(path, six, 8000)
    assert a2i.generate(str(path), seed=0).image.size == (64, 64)
    gradio = (8000, (six[:, 0] * 32767).astype(np.int16))  # what gr.Audio(type="numpy") hands over
    assert a2i.generate(gradio, seed=0).image.size == (64, 64)
    clipped = np.clip(tone(amp=3.0), -1, 1)
    buf = io.BytesIO()
    sf.write(buf, clipped, SR, format="WAV")
    assert a2i.generate(buf.getvalue(), seed=0).image.size == (64, 64)


@pytest.mark.parametrize("value, match", [(-1.0, "all-black"), (float("nan"), "NaN")])
def test_black_or_nan_output_is_an_error_not_a_result(world, monkeypatch, value, match):
    a2i = world["a2i"]
    vae = a2i.pipe.vae

    def decode(z, return_dict=True, generator=None):
        out = torch.full((z.shape[0], 3, z.shape[2] * 2, z.shape[3] * 2), value, dtype=z.dtype)
        return (out,) if not return_dict else type("O", (), {"sample": out})()

    monkeypatch.setattr(vae, "decode", decode)
    with pytest.raises(GenerationError, match=match):
        a2i.generate(tone(), sampling_rate=SR, seed=0)


def test_incompatible_parts_are_refused(world):
    a2i = world["a2i"]
    other_width = ConditioningBridge(BridgeConfig(clap_model=world["clap"], sd_model=world["sd"], in_dim=16,
                                                  out_dim=768, depth=0, rank=2))
    with pytest.raises(IncompatibleBridgeError, match="768-d"):
        AudioToImage(a2i.pipe, a2i.audio_encoder, bridge=other_width)
    other_sd = ConditioningBridge(BridgeConfig(clap_model=world["clap"], sd_model="runwayml/stable-diffusion-v1-5",
                                               in_dim=16, out_dim=32, depth=0, rank=2))
    with pytest.raises(IncompatibleBridgeError, match="text encoder"):
        AudioToImage(a2i.pipe, a2i.audio_encoder, bridge=other_sd)
    bank = CaptionBank(BANK, torch.randn(len(BANK), 16), "laion/some-other-clap")
    with pytest.raises(IncompatibleBridgeError, match="one CLAP model"):
        AudioToImage(a2i.pipe, a2i.audio_encoder, caption_bank=bank)
    with pytest.raises(ValueError, match="bridge, a caption bank"):
        AudioToImage(a2i.pipe, a2i.audio_encoder)


def test_caption_bank_only_instance_serves_the_caption_route(world):
    a2i = world["a2i"]
    only = AudioToImage(a2i.pipe, a2i.audio_encoder, caption_bank=a2i.caption_bank, standin=True)
    assert only.routes == ("captions",)
    r = only.generate(tone(), sampling_rate=SR, seed=0)
    assert r.route == "captions" and r.captions
    with pytest.raises(GenerationParamError, match="route must be one of"):
        only.generate(tone(), sampling_rate=SR, route="bridge")
