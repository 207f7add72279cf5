"""train_bridge.py: a captions-only bridge in one command, on the tiny stand-ins (offline)."""
import json

import pytest

import train
import train_bridge as tb
from fusemix.bridge import ConditioningBridge
from fusemix.tiny import build_tiny_suite

FAST = ["--epochs", "4", "--eval_every", "2", "--save_every", "2"]


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    return build_tiny_suite(tmp_path_factory.mktemp("tiny") / "models", extras=("clip",))


@pytest.fixture
def job(suite):
    return tb.make_job(str(suite["clap"]), str(suite["sd"]), max_captions=200, train_args=FAST)


def test_one_command_trains_a_bridge_with_a_model_card(suite, tmp_path, monkeypatch):
    monkeypatch.setenv("FUSEMIX_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "bridge"
    rc = tb.main(["--clap", str(suite["clap"]), "--sd", str(suite["sd"]), "--out", str(out),
                  "--max_captions", "200", "--audio", "demo/examples", *FAST])
    assert rc == 0
    bridge = ConditioningBridge.from_pretrained(out, clap_model=str(suite["clap"]), sd_model=str(suite["sd"]))
    assert bridge.config.train_modality == "text" and bool(bridge.initialized)
    assert int(bridge.modality_counts[0]) == 6  # the audio mean of the six shipped example clips
    card = (out / "README.md").read_text()
    for needle in ("| captions | 200 |", "corpus sha256", "held-out caption R@1", "among 10 |", "6 unlabelled clips",
                   "| hardware | CPU "):
        assert needle in card, needle
    assert bridge.config.extra["captions"] == 200
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".bridge")]  # no temporary left behind


def test_without_clips_the_card_says_audio_is_not_corrected(job, tmp_path, monkeypatch):
    monkeypatch.setenv("FUSEMIX_CACHE", str(tmp_path / "cache"))
    out = tb.train_caption_bridge(job, tmp_path / "b")
    bridge = ConditioningBridge.from_pretrained(out)
    assert int(bridge.modality_counts[0]) == 0
    assert "not corrected" in (out / "README.md").read_text()


def test_cached_bridge_is_reused_and_a_corrupt_one_rebuilt(job, tmp_path, monkeypatch):
    monkeypatch.setenv("FUSEMIX_CACHE", str(tmp_path / "cache"))
    calls = []
    real = train.main
    monkeypatch.setattr(train, "main", lambda argv: calls.append(argv) or real(argv))
    path = tb.ensure_bridge(job)
    assert path.parent.parent == tmp_path / "cache" and len(calls) == 1
    assert tb.ensure_bridge(job) == path and len(calls) == 1  # reused, not retrained
    (path / "model.safetensors").write_bytes(b"\0" * 100)  # corrupt
    tb.ensure_bridge(job)
    assert len(calls) == 2
    ConditioningBridge.from_pretrained(path)  # loads again


def test_a_failed_training_leaves_the_previous_bridge_and_no_partial_one(job, tmp_path, monkeypatch):
    monkeypatch.setenv("FUSEMIX_CACHE", str(tmp_path / "cache"))
    out = tb.train_caption_bridge(job, tmp_path / "b")
    before = (out / "model.safetensors").read_bytes()

    def killed(argv):
        raise KeyboardInterrupt  # a kill mid-training

    monkeypatch.setattr(train, "main", killed)
    with pytest.raises(KeyboardInterrupt):
        tb.train_caption_bridge(job, out)
    assert (out / "model.safetensors").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b", "cache"]


def test_job_key_follows_corpus_models_and_settings(suite, tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(f"a sound number {i}" for i in range(40)))
    a = tb.make_job("clap", "sd", corpus)
    assert tb.make_job("clap", "sd", corpus).key == a.key
    assert tb.make_job("clap2", "sd", corpus).key != a.key
    assert tb.make_job("clap", "sd", corpus, train_args=["--epochs", "9"]).key != a.key
    corpus.write_text("\n".join(f"a sound number {i}" for i in range(41)))
    assert tb.make_job("clap", "sd", corpus).key != a.key
    with pytest.raises(ValueError, match="at least 20"):
        tb.make_job("clap", "sd", corpus, max_captions=5)


def test_one_command_trains_the_sound_adapter_into_the_reference_clips_text_space(suite, tmp_path, monkeypatch):
    import torch

    from fusemix.encoders import load_encoder
    from fusemix.reference import ReferenceScorer

    caps = ["a dog barks twice", "rain on a tin roof", "a kettle " * 60]  # the last one is cut at 77 tokens
    enc = load_encoder("clip-text", str(suite["clip"]))  # the target: exactly the reference scorer's text space
    assert torch.allclose(enc.encode(caps), ReferenceScorer.from_pretrained(str(suite["clip"])).embed_texts(caps),
                          atol=1e-5) and enc.n_truncated == 1
    monkeypatch.setenv("FUSEMIX_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "sound"
    assert tb.main(["--clap", str(suite["clap"]), "--clip", str(suite["clip"]), "--out", str(out),
                    "--max_captions", "100", "--audio", "demo/examples", *FAST]) == 0
    adapter = ConditioningBridge.from_pretrained(out, clap_model=str(suite["clap"]), sd_model=str(suite["clip"]))
    c = adapter.config
    assert (c.target, c.seq_len, c.out_dim, c.train_modality) == ("clip-text", 1, enc.dim, "text")
    card = (out / "README.md").read_text()
    assert "# FuseMix sound adapter" in card and "| CLIP text tower |" in card and "| captions | 100 |" in card
    sd_job = tb.make_job(str(suite["clap"]), str(suite["clip"]), max_captions=100, train_args=FAST)
    assert tb.make_job(str(suite["clap"]), str(suite["clip"]), max_captions=100, train_args=FAST,
                       target="clip-text").key != sd_job.key  # one cache entry per target
    with pytest.raises(SystemExit):  # one target per command
        tb.main(["--clap", "c", "--sd", "s", "--clip", "c2"])
    with pytest.raises(ValueError, match="target must be one of"):
        tb.make_job(str(suite["clap"]), str(suite["clip"]), target="image")
