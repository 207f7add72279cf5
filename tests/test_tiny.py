"""The tiny random stand-ins load through the real from_pretrained paths and behave like the real thing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from fusemix.tiny import (
    STANDIN_FILE,
    build_tiny_suite,
    is_standin,
    save_tiny_clap,
    save_tiny_sd_pipeline,
    save_tiny_sentence_encoder,
)


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    return build_tiny_suite(tmp_path_factory.mktemp("tiny"))


def test_suite_is_complete_and_marked(suite):
    assert set(suite) == {"clap", "sd", "image", "sentence"}
    for path in suite.values():
        assert is_standin(path)
        assert "RANDOM STAND-IN" in (path / STANDIN_FILE).read_text()
    assert not is_standin(suite["clap"].parent)


def test_suite_is_reused_and_incomplete_dirs_rebuilt(suite):
    root = suite["clap"].parent
    weights = suite["clap"] / "model.safetensors"
    before = weights.stat().st_mtime_ns
    (suite["sentence"] / STANDIN_FILE).unlink()  # simulate a build killed before completion
    again = build_tiny_suite(root)
    assert weights.stat().st_mtime_ns == before  # complete model not rebuilt
    assert is_standin(again["sentence"])  # incomplete one rebuilt


def test_builds_are_deterministic_under_seed(tmp_path):
    state = torch.random.get_rng_state()
    a = load_file(save_tiny_sentence_encoder(tmp_path / "a", seed=3) / "model.safetensors")
    b = load_file(save_tiny_sentence_encoder(tmp_path / "b", seed=3) / "model.safetensors")
    c = load_file(save_tiny_sentence_encoder(tmp_path / "c", seed=4) / "model.safetensors")
    assert torch.equal(torch.random.get_rng_state(), state)  # global RNG left alone
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_refuses_to_overwrite_and_rejects_bad_seed(tmp_path, suite):
    with pytest.raises(FileExistsError):
        save_tiny_clap(suite["clap"])
    with pytest.raises(ValueError, match="seed"):
        save_tiny_clap(tmp_path / "x", seed=-1)
    assert not (tmp_path / "x").exists()


def test_clap_processor_is_unfused_and_tokenizes_any_text(suite):
    from transformers import ClapModel, ClapProcessor

    proc = ClapProcessor.from_pretrained(suite["clap"])
    assert proc.feature_extractor.truncation == "rand_trunc"
    assert proc.feature_extractor.sampling_rate == 48000
    text = "A dog barks; café, naïve, 東京 — 42%!"
    ids = proc.tokenizer(text)["input_ids"]
    assert proc.tokenizer.unk_token_id not in ids
    assert proc.tokenizer.decode(ids, skip_special_tokens=True) == text
    model = ClapModel.from_pretrained(suite["clap"]).eval()
    audio = np.random.default_rng(0).standard_normal((2, 48000)).astype(np.float32) * 0.1
    feats = proc.feature_extractor(list(audio), sampling_rate=48000, return_tensors="pt")
    with torch.inference_mode():
        emb = model.get_audio_features(**feats).pooler_output
    assert emb.shape == (2, model.config.projection_dim)


def test_sd_pipeline_generates_and_round_trips(suite, tmp_path):
    from diffusers import StableDiffusionPipeline

    def run(pipe):
        pipe.set_progress_bar_config(disable=True)
        gen = torch.Generator().manual_seed(0)
        return pipe("a red bird", num_inference_steps=2, generator=gen, output_type="np").images

    pipe = StableDiffusionPipeline.from_pretrained(suite["sd"])
    assert pipe.tokenizer.model_max_length == 77
    assert pipe.safety_checker is None
    first = run(pipe)
    assert first.shape == (1, 64, 64, 3)
    assert first.std() > 0  # not a constant image
    pipe.save_pretrained(tmp_path / "resaved")
    again = run(StableDiffusionPipeline.from_pretrained(tmp_path / "resaved"))
    np.testing.assert_array_equal(first, again)
    rebuilt = run(StableDiffusionPipeline.from_pretrained(save_tiny_sd_pipeline(tmp_path / "rebuilt")))
    np.testing.assert_array_equal(first, rebuilt)


def test_image_encoder_uses_pil_processor(suite):
    from PIL import Image
    from transformers import AutoImageProcessor, AutoModel

    proc = AutoImageProcessor.from_pretrained(suite["image"])
    assert "Pil" in type(proc).__name__
    model = AutoModel.from_pretrained(suite["image"]).eval()
    pixels = proc(images=[Image.new("RGB", (50, 40), (200, 10, 10))], return_tensors="pt")
    with torch.inference_mode():
        out = model(**pixels).last_hidden_state
    assert out.shape[-1] == model.config.hidden_size
