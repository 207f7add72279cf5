#!/usr/bin/env python
"""Regenerate the demo's example sounds: all made here, none recorded or downloaded.

    python tools/make_examples.py

Writes 16 kHz mono 16-bit WAV files of a few seconds into demo/examples/. Tones and noise are
synthesized with numpy under a fixed seed (the files are identical on every run); the speech clip
is spoken by espeak-ng (Debian package ``espeak-ng``) and skipped with a note when it is absent.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16_000
OUT = Path(__file__).resolve().parents[1] / "demo" / "examples"
SPEECH_TEXT = "A dog is barking in the park, and birds are singing."


def _t(seconds: float) -> np.ndarray:
    return np.arange(int(seconds * SR)) / SR


def _fade(x: np.ndarray, ms: float = 20.0) -> np.ndarray:
    n = min(int(SR * ms / 1000), len(x) // 2)
    ramp = np.linspace(0.0, 1.0, n)
    x = x.copy()
    x[:n] *= ramp
    x[-n:] *= ramp[::-1]
    return x


def siren(rng: np.random.Generator) -> np.ndarray:
    """A two-tone emergency-vehicle wail sweeping between 600 and 1300 Hz."""
    t = _t(3.0)
    freq = 950 + 350 * np.sin(2 * np.pi * 0.5 * t)
    phase = 2 * np.pi * np.cumsum(freq) / SR
    return 0.5 * np.sin(phase) + 0.15 * np.sin(2 * phase)


def rain(rng: np.random.Generator) -> np.ndarray:
    """Soft broadband noise with random droplet clicks."""
    n = int(3.0 * SR)
    noise = rng.standard_normal(n)
    smooth = np.convolve(noise, np.ones(8) / 8, mode="same") * 0.25
    drops = np.zeros(n)
    for start in rng.integers(0, n - 400, size=120):
        decay = np.exp(-np.arange(400) / 40.0)
        drops[start:start + 400] += rng.uniform(0.1, 0.4) * decay * rng.standard_normal(400)
    return smooth + drops


def bell(rng: np.random.Generator) -> np.ndarray:
    """A struck bell: inharmonic partials with exponential decay, struck twice."""
    t = _t(3.0)
    partials = [(440.0, 1.0, 1.2), (440 * 2.76, 0.5, 0.8), (440 * 5.4, 0.25, 0.5), (440 * 8.93, 0.12, 0.3)]
    out = np.zeros_like(t)
    for onset in (0.0, 1.5):
        tt = np.clip(t - onset, 0, None)
        on = (t >= onset).astype(float)
        for f, a, tau in partials:
            out += on * a * np.exp(-tt / tau) * np.sin(2 * np.pi * f * tt)
    return out


def engine(rng: np.random.Generator) -> np.ndarray:
    """A low idling engine: a sawtooth near 45 Hz with firing pulses and rumble."""
    t = _t(3.0)
    f0 = 45 + 3 * np.sin(2 * np.pi * 0.7 * t)
    phase = np.cumsum(f0) / SR
    saw = 2 * (phase - np.floor(phase + 0.5))
    pulses = (np.sin(2 * np.pi * np.cumsum(2 * f0) / SR) > 0.8).astype(float)
    rumble = np.convolve(rng.standard_normal(len(t)), np.ones(64) / 64, mode="same")
    return 0.45 * saw + 0.2 * pulses + 0.8 * rumble


def birdsong(rng: np.random.Generator) -> np.ndarray:
    """Short rising chirps between 2.5 and 5 kHz, in bursts."""
    n = int(3.0 * SR)
    out = np.zeros(n)
    start = int(0.1 * SR)
    while start < n - SR // 5:
        dur = rng.uniform(0.06, 0.14)
        tt = np.arange(int(dur * SR)) / SR
        f_lo, f_hi = rng.uniform(2500, 3500), rng.uniform(4000, 5000)
        freq = f_lo + (f_hi - f_lo) * tt / dur
        chirp = np.sin(2 * np.pi * np.cumsum(freq) / SR) * np.sin(np.pi * tt / dur)
        out[start:start + len(chirp)] += 0.6 * chirp
        start += int(rng.uniform(0.12, 0.45) * SR)
    return out


SYNTHS = {"siren": siren, "rain": rain, "bell": bell, "engine": engine, "birdsong": birdsong}


def to_pcm16(x: np.ndarray) -> np.ndarray:
    """Fade in/out, normalise the peak to -2 dBFS, quantise to int16."""
    x = _fade(np.asarray(x, dtype=np.float64))
    x = 0.8 * x / max(float(np.max(np.abs(x))), 1e-9)
    return (x * 32767).astype(np.int16)


def synthesize_all(seed: int = 0) -> dict[str, np.ndarray]:
    """Every synthesized clip as int16 samples at ``SR`` (the speech clip is not included)."""
    rng = np.random.default_rng(seed)
    return {name: to_pcm16(fn(rng)) for name, fn in SYNTHS.items()}


def _write(name: str, x: np.ndarray) -> Path:
    path = OUT / f"{name}.wav"
    pcm = x if x.dtype == np.int16 else to_pcm16(x)
    sf.write(path, pcm, SR, subtype="PCM_16")
    return path


def speech() -> Path | None:
    exe = shutil.which("espeak-ng")
    if exe is None:
        print("espeak-ng not found: speech example not regenerated (apt-get install espeak-ng)", file=sys.stderr)
        return None
    import soxr

    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "speech.wav"
        subprocess.run([exe, "-v", "en-us", "-s", "150", "-w", str(raw), SPEECH_TEXT], check=True,
                       capture_output=True)
        x, sr = sf.read(raw, dtype="float64", always_2d=True)
    x = x.mean(axis=1)
    if sr != SR:
        x = soxr.resample(x, sr, SR)
    return _write("speech", x[: int(4.5 * SR)])


def main() -> None:
    for name, pcm in synthesize_all().items():
        print(_write(name, pcm))
    path = speech()
    if path:
        print(path)


if __name__ == "__main__":
    main()
