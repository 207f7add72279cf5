"""fusemix's CLAP log-mel features (numpy padding, torch.stft) equal transformers'
``ClapFeatureExtractor``'s, and so do the CLAP audio encoder's features and latents.

``fusemix.encoders.clap_features`` replaces the extractor on the unfused path for speed only, so
every output is compared with the extractor's own (``return_tensors="np"``). Tolerance: max abs
difference below TOL_DB (the features are dB values in about -100..+60; measured: ~2e-6 dB, one
float32 rounding step).
"""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
from transformers import ClapFeatureExtractor

from fusemix.audio import load_audio
from fusemix.cache import LatentCache, SingleProcess, Units
from fusemix.encoders import load_encoder
from fusemix.encoders.clap import window_starts
from fusemix.encoders.clap_features import LogMel, check_supported
from fusemix.extract import RawItemLoader
from fusemix.pairs import open_folder
from fusemix.tiny import save_tiny_clap

TOL_DB = 1e-4

# Defaults (= laion/clap-htsat-unfused: 48 kHz, 1024-point FFT, hop 480, 64 mels, 10 s) and a
# small, non-default one (odd FFT size, fewer mels, 2 s window) that runs in milliseconds.
CONFIGS = {
    "default": {},
    "small": {"sampling_rate": 16000, "fft_window_size": 401, "hop_length": 160, "feature_size": 32,
              "max_length_s": 2, "frequency_max": 7000},
}


def extractor(config: str, padding: str = "repeatpad") -> ClapFeatureExtractor:
    return ClapFeatureExtractor(truncation="rand_trunc", padding=padding, **CONFIGS[config])


def clips(fe: ClapFeatureExtractor) -> dict[str, np.ndarray]:
    """Clips that need each kind of padding, plus edge cases of content."""
    n, sr = fe.nb_max_samples, fe.sampling_rate
    rng = np.random.default_rng(0)
    t = np.arange(n) / sr
    return {
        "short": (0.1 * rng.standard_normal(n // 7)).astype(np.float32),
        "exact": (0.1 * rng.standard_normal(n)).astype(np.float32),
        "odd": rng.uniform(-1, 1, n // 3 + 1).astype(np.float32),
        "silence": np.zeros(n // 2, dtype=np.float32),
        "loud_sine": np.sin(2 * np.pi * 997 * t[: n - 1]).astype(np.float32),
    }


def assert_same(got: dict, ref) -> None:
    ref_x, ref_longer = ref["input_features"], ref["is_longer"]
    assert got["input_features"].dtype == ref_x.dtype == np.float32
    assert got["input_features"].shape == ref_x.shape
    assert np.abs(got["input_features"] - ref_x).max() < TOL_DB
    assert got["is_longer"].dtype == ref_longer.dtype and np.array_equal(got["is_longer"], ref_longer)


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("padding", ["repeatpad", "repeat", "pad"])
@pytest.mark.parametrize("name", ["short", "exact", "odd", "silence", "loud_sine"])
def test_features_equal_the_extractor(config, padding, name):
    fe = extractor(config, padding)
    clip = clips(fe)[name]
    assert_same(LogMel(fe).features([clip]), fe([clip], sampling_rate=fe.sampling_rate, return_tensors="np"))


@pytest.mark.parametrize("config", CONFIGS)
def test_several_windows_in_one_call(config):
    fe = extractor(config)
    windows = list(clips(fe).values())
    assert_same(LogMel(fe).features(windows), fe(windows, sampling_rate=fe.sampling_rate, return_tensors="np"))


class OwnExtractor(ClapFeatureExtractor):
    """A subclass may change how features are computed: not reproduced."""


@pytest.mark.parametrize("change", [
    {"truncation": "fusion"},
    {"padding": "longest"},
    {"hop_length": 0},
])
def test_unsupported_configs_are_refused(change):
    fe = extractor("small")
    for key, value in change.items():
        setattr(fe, key, value)
    with pytest.raises(ValueError):
        check_supported(fe)
    with pytest.raises(ValueError):
        LogMel(fe)


def test_unsupported_extractors_and_windows_are_refused():
    with pytest.raises(ValueError):
        check_supported(OwnExtractor(truncation="rand_trunc"))
    fe = extractor("small")
    fe.mel_filters_slaney = fe.mel_filters_slaney[:-1]  # no longer fits the FFT size
    with pytest.raises(ValueError):
        check_supported(fe)
    fe = extractor("small")
    too_long = np.zeros(fe.nb_max_samples + 1, np.float32)  # would need the extractor's random crop
    for bad in (np.zeros(0, np.float32), too_long, np.zeros((1000, 2), np.float32)):
        with pytest.raises(ValueError):
            LogMel(fe).features([bad])


# --------------------------------------------------------------------------- ClapAudioEncoder


@pytest.fixture(scope="module")
def tiny_clap(tmp_path_factory):
    return save_tiny_clap(tmp_path_factory.mktemp("tiny-clap-features") / "clap")


def reference(enc, item) -> tuple[dict, torch.Tensor]:
    """The extractor's features for the windows the encoder picks, and the model's latent of them."""
    fe = enc.bundle.feature_extractor
    wav = load_audio(item, enc.sample_rate, source_sr=enc.sample_rate)
    windows = [wav[s:s + enc.window] for s in window_starts(len(wav), enc.window, enc.long_clip, enc.max_windows)]
    feats = fe(windows, sampling_rate=fe.sampling_rate, return_tensors="np")
    with torch.inference_mode():
        out = enc.bundle.model.get_audio_features(input_features=torch.from_numpy(feats["input_features"]),
                                                  is_longer=torch.zeros(len(windows), 1, dtype=torch.bool))
    return feats, torch.nn.functional.normalize(out.pooler_output.mean(0), dim=-1)


@pytest.mark.parametrize("long_clip", ["center", "mean"])
def test_encoder_features_and_latents_equal_the_extractors(tiny_clap, tmp_path, long_clip):
    enc = load_encoder("clap-audio", tiny_clap, device="cpu", long_clip=long_clip, max_windows=3)
    rng = np.random.default_rng(1)
    wav_file = tmp_path / "stereo.wav"
    sf.write(wav_file, 0.1 * rng.standard_normal((44100 * 3, 2)), 44100)
    items = [(0.1 * rng.standard_normal(enc.sample_rate * 2)).astype(np.float32),
             (0.1 * rng.standard_normal(enc.window * 2 + 12345)).astype(np.float32),
             wav_file]
    refs = [reference(enc, item) for item in items]
    for item, (feats, _), n in zip(items, refs, [1, 1 if long_clip == "center" else 3, 1]):
        got = enc.prepare(item)
        assert got.keys() == feats.keys() and len(got["input_features"]) == n
        assert_same(got, feats)
    torch.testing.assert_close(enc.encode(items), torch.stack([lat for _, lat in refs]), atol=1e-5, rtol=0)


def test_encoder_keeps_the_extractor_when_not_reproducible(tiny_clap, monkeypatch):
    enc = load_encoder("clap-audio", tiny_clap, device="cpu")
    fe = enc.bundle.feature_extractor
    monkeypatch.setattr(fe, "padding", "longest")
    fallback = load_encoder("clap-audio", tiny_clap, device="cpu")
    wav = 0.1 * np.random.default_rng(2).standard_normal(enc.sample_rate).astype(np.float32)
    out = fallback.prepare(wav)
    assert out["input_features"].shape == (1, 1, 1001, 64) and out["is_longer"].shape == (1, 1)
    assert_same(out, fe([wav], sampling_rate=fe.sampling_rate, return_tensors="np"))


def clip_folder(root, specs, seed):
    """16-bit WAVs of (seconds, rate, channels) with a manifest, as a pair source."""
    rng = np.random.default_rng(seed)
    root.mkdir()
    for i, (seconds, sr, ch) in enumerate(specs):
        sf.write(root / f"c{i}.wav", 0.2 * rng.standard_normal((int(sr * seconds), ch)), sr, subtype="PCM_16")
    (root / "metadata.csv").write_text("file_name,caption\n" + "".join(f"c{i}.wav,clip {i}\n" for i in range(len(specs))))
    return open_folder(root)


def cached_latents(enc, source, root, workers):
    units = Units(list(source.ids), source.items_fingerprint(), RawItemLoader(source), "audio")
    cache = LatentCache(root, units, enc, shard_size=2)
    cache.build(batch_size=2, num_workers=workers, progress=False, state=SingleProcess())
    return cache.load()


def test_decoding_workers_give_the_latents_of_direct_encoding(tiny_clap, tmp_path):
    """Clips at several rates and channel counts, long and short, through the latent cache with
    decoding workers and without: the same latents as ``encode`` on the files."""
    source = clip_folder(tmp_path / "clips", [(0.5, 44100, 2), (3.0, 48000, 1), (12.0, 44100, 1), (1.0, 16000, 1),
                                              (2.5, 44100, 2)], seed=3)
    enc = load_encoder("clap-audio", tiny_clap, device="cpu", long_clip="mean", max_windows=2)
    alone, workers = cached_latents(enc, source, tmp_path / "c0", 0), cached_latents(enc, source, tmp_path / "c2", 2)
    assert workers.index.tolist() == list(range(5)) and not workers.failed
    assert torch.equal(workers.latents, alone.latents)
    direct = enc.encode([tmp_path / "clips" / f"c{i}.wav" for i in range(5)])
    torch.testing.assert_close(workers.latents, direct, atol=1e-6, rtol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (benchmarks/gpu_check.sh)")
def test_cuda_model_with_workers_gives_the_cpu_latents(tiny_clap, tmp_path):
    source = clip_folder(tmp_path / "clips", [(0.5, 44100, 2), (3.0, 48000, 1), (12.0, 44100, 2), (1.0, 16000, 1)],
                         seed=4)
    gpu = load_encoder("clap-audio", tiny_clap, device="cuda", dtype=torch.float32)
    cpu = load_encoder("clap-audio", tiny_clap, device="cpu")
    got, ref = cached_latents(gpu, source, tmp_path / "gpu", 2), cached_latents(cpu, source, tmp_path / "cpu", 0)
    assert not got.failed and torch.equal(got.index, ref.index)
    torch.testing.assert_close(got.latents, ref.latents, atol=1e-3, rtol=0)  # TF32 convolutions on CUDA
