"""Fuzzing the audio entry point: ``fusemix.audio.load_audio`` / ``probe_audio`` may raise nothing
but ``AudioError``, and what they return is always usable (float32, mono, finite, in [-1, 1]).

Hypothesis drives four families of input: random bytes; valid WAV/FLAC/OGG/MP3/AIFF files with
random byte mutations and truncations; WAV headers with random fields (rate, channels, bits, format
tag, data length) over random data; in-memory sources (Gradio tuples, ``datasets`` dicts, bare arrays,
odd Python objects) with random dtypes, shapes, values and sample rates. Every run is bounded by
``max_examples`` and a per-example ``deadline``; by default it is derandomised (the same examples
each run). ``FUSEMIX_FUZZ_EXAMPLES=5000 FUSEMIX_FUZZ_RANDOM=1`` runs a longer, random campaign.
"""
from __future__ import annotations

import io
import os
import struct
from collections import Counter

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fusemix.audio import AudioError, load_audio, probe_audio

N = int(os.environ.get("FUSEMIX_FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=N, deadline=3000, derandomize=os.environ.get("FUSEMIX_FUZZ_RANDOM") != "1",
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large], database=None)
STATS: Counter = Counter()


def _check(out: np.ndarray, target_sr: int = 48000) -> None:
    assert isinstance(out, np.ndarray) and out.dtype == np.float32 and out.ndim == 1, (type(out), out.dtype, out.shape)
    assert out.size > 0 and np.isfinite(out).all() and np.abs(out).max(initial=0) <= 1.0


def run(source, target_sr: int = 48000, **kw) -> str:
    """Call both entry points; only AudioError may come out. Returns 'ok' or 'AudioError'."""
    try:
        probe_audio(source, source_sr=kw.get("source_sr"))
    except AudioError:
        pass
    if hasattr(source, "seek"):
        source.seek(0)
    try:
        out = load_audio(source, target_sr, **kw)
    except AudioError as e:
        assert str(e).strip(), "an AudioError must say what is wrong"
        STATS["AudioError"] += 1
        return "AudioError"
    _check(out, target_sr)
    STATS["decoded"] += 1
    return "ok"


def _encode(x: np.ndarray, sr: int, fmt: str, subtype: str | None) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


_t = np.arange(8000) / 8000
_x = (0.4 * np.sin(2 * np.pi * 330 * _t)).astype(np.float32)
SEEDS = {
    "wav16": _encode(_x, 8000, "WAV", "PCM_16"),
    "wavfloat": _encode(np.stack([_x, -_x], 1), 8000, "WAV", "FLOAT"),
    "wav8": _encode(_x, 8000, "WAV", "PCM_U8"),
    "flac": _encode(_x, 8000, "FLAC", "PCM_16"),
    "ogg": _encode(_x, 8000, "OGG", "VORBIS"),
    "mp3": _encode(_x, 8000, "MP3", "MPEG_LAYER_III"),
    "aiff": _encode(_x, 8000, "AIFF", "PCM_24"),
}


# --------------------------------------------------------------------------------------- encoded bytes
@FUZZ
@given(st.binary(min_size=0, max_size=4096))
def test_random_bytes(data):
    run(data)


@FUZZ
@given(st.sampled_from(sorted(SEEDS)), st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=12),
       st.one_of(st.none(), st.integers(0, 20_000)), st.sampled_from(["bytes", "file", "dict"]))
def test_mutated_valid_files(kind, flips, cut, how):
    data = bytearray(SEEDS[kind])
    for pos, byte in flips:
        data[pos % len(data)] = byte
    if cut is not None:
        data = data[:cut]
    source = {"bytes": bytes(data), "file": io.BytesIO(bytes(data)), "dict": {"bytes": bytes(data), "path": None}}[how]
    run(source)


@FUZZ
@given(fmt_tag=st.sampled_from([0, 1, 2, 3, 6, 7, 0x55, 0xFFFE, 0xFFFF]), channels=st.integers(0, 300),
       rate=st.one_of(st.integers(0, 2_000_000), st.sampled_from([1, 999, 1000, 8000, 768_000, 768_001, 2**32 - 1])),
       bits=st.sampled_from([0, 1, 4, 8, 12, 16, 24, 32, 64, 65535]), data_len=st.integers(0, 2**32 - 1),
       payload=st.binary(max_size=3000), target_sr=st.sampled_from([16000, 48000]))
def test_fuzzed_wav_headers(fmt_tag, channels, rate, bits, data_len, payload, target_sr):
    block = (channels * bits // 8) & 0xFFFF
    header = (b"RIFF" + struct.pack("<I", (36 + data_len) & 0xFFFFFFFF) + b"WAVEfmt "
              + struct.pack("<IHHIIHH", 16, fmt_tag, channels & 0xFFFF, rate & 0xFFFFFFFF,
                            (rate * block) & 0xFFFFFFFF, block, bits)
              + b"data" + struct.pack("<I", data_len))
    run(header + payload, target_sr)


# --------------------------------------------------------------------------------------- in-memory sources
DTYPES = st.sampled_from([np.float16, np.float32, np.float64, np.int8, np.int16, np.int32, np.int64, np.uint8,
                          np.uint16, np.uint32, np.uint64, np.bool_, np.complex64, np.longdouble])
SHAPES = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=2000).filter(
    lambda s: int(np.prod(s)) <= 200_000)
RATES = st.one_of(st.integers(-10, 1_000_000), st.floats(allow_nan=True, allow_infinity=True),
                  st.sampled_from([None, True, "48000", 44100.0, 44100.5, 2**63, np.int32(16000), np.float64(8000)]))


@FUZZ
@given(hnp.arrays(DTYPES, SHAPES, elements=None), RATES, st.sampled_from(["tuple", "dict", "array", "list"]),
       st.sampled_from([8000, 16000, 48000]))
def test_arrays_of_odd_dtypes_shapes_and_rates(arr, rate, how, target_sr):
    if how == "tuple":
        source, kw = (rate, arr), {}
    elif how == "dict":
        source, kw = {"array": arr, "sampling_rate": rate}, {}
    elif how == "array":
        source, kw = arr, {"source_sr": rate}
    else:
        source, kw = arr.tolist(), {"source_sr": rate}
    run(source, target_sr, **kw)


@FUZZ
@given(st.one_of(st.none(), st.integers(), st.floats(), st.text(max_size=50), st.lists(st.integers(), max_size=5),
                 st.tuples(st.integers(), st.integers()), st.tuples(), st.dictionaries(st.text(max_size=8), st.integers(), max_size=3),
                 st.builds(object), st.sampled_from([b"", bytearray(b"RIFF"), memoryview(b"fLaC"), ".", "/", "/dev/null",
                                                     "/proc/self/mem", "/etc/passwd", "a\x00b.wav", "\ud800.wav"])))
def test_odd_python_objects_as_sources(obj):
    run(obj)


@pytest.mark.parametrize("kind", sorted(SEEDS))
def test_intact_seeds_decode_to_their_tone_and_cut_ones_are_refused(kind):
    """What the fuzzers mutate starts valid: every seed decodes to the 330 Hz tone it holds (the stereo
    seed holds x and -x, which mix to silence), and the same file cut to 12 bytes is an AudioError."""
    out = load_audio(SEEDS[kind], 8000)  # not through run(): STATS counts the fuzzers' inputs only
    _check(out)
    assert abs(out.size - _x.size) <= 100
    if kind == "wavfloat":
        assert np.abs(out).max() < 1e-6
    else:
        assert np.corrcoef(out[:_x.size], _x[:out.size])[0, 1] > 0.99
    with pytest.raises(AudioError, match=r"\w"):
        load_audio(SEEDS[kind][:12], 8000)


def test_fuzzers_reach_both_outcomes(capsys):
    """Runs last in this file: the fuzzers must have produced decoded audio *and* clear AudioErrors (a
    campaign that only ever hits one path tests little); ``run`` already failed on any other exception."""
    if not STATS:
        pytest.skip("no fuzzer ran in this session")
    with capsys.disabled():
        print(f"\naudio fuzz: {sum(STATS.values())} inputs through load_audio and probe_audio: "
              f"{STATS['decoded']} decoded to valid samples, {STATS['AudioError']} clear AudioErrors")
    assert STATS["decoded"] > 0 and STATS["AudioError"] > 0, dict(STATS)
