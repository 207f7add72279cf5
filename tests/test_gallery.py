"""Gallery: embed once, reuse the cache, update incrementally, skip and count bad or unsafe files."""

import json
import os
import warnings

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from fusemix.gallery import Gallery, GalleryError, content_hash

FP = "test-embedder-v1"


class CountingEmbedder:
    """Deterministic image embedding (a 4x4 thumbnail) that records how many items it saw."""

    def __init__(self, reject=()):
        self.items_seen = 0
        self.calls = 0
        self.reject = set(reject)

    def __call__(self, items):
        self.calls += 1
        self.items_seen += len(items)
        rows = []
        for im in items:
            if im.size in self.reject:
                raise ValueError(f"cannot embed an image of size {im.size}")
            a = np.asarray(im.convert("RGB").resize((4, 4)), dtype=np.float32).reshape(-1) / 255.0
            rows.append(torch.from_numpy(a - 0.5 + 0.01 * np.arange(a.size, dtype=np.float32)))
        return torch.stack(rows)


def write_image(path, seed, size=(16, 12)):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "photos"
    (root / "sub").mkdir(parents=True)
    for i in range(4):
        write_image(root / f"img{i}.png", i)
    write_image(root / "sub" / "deep.jpg", 10)
    return root


def build(root, emb, cache, **kw):
    return Gallery.from_folder(root, emb, FP, modality="image", cache_dir=cache, **kw)


def test_second_build_reuses_the_cache(folder, tmp_path):
    cache = tmp_path / "cache"
    emb = CountingEmbedder()
    g1 = build(folder, emb, cache)
    assert len(g1) == 5 and emb.items_seen == 5
    assert sorted(g1.keys) == ["img0.png", "img1.png", "img2.png", "img3.png", "sub/deep.jpg"]
    emb2 = CountingEmbedder()
    g2 = build(folder, emb2, cache)
    assert emb2.items_seen == 0 and g2.report.reused == 5
    assert torch.equal(g1.embeddings, g2.embeddings)
    files = sorted(p.name for p in cache.iterdir())
    assert len(files) == 2 and files[0].endswith(".json") and files[1].endswith(".safetensors")  # no temp files
    manifest = json.loads((cache / files[0]).read_text())
    assert manifest["fingerprint"] == FP and manifest["count"] == 5
    assert {e["sha256"] for e in manifest["items"]} == {it.sha256 for it in g1.items}


def test_changed_new_removed_and_renamed_files(folder, tmp_path):
    cache = tmp_path / "cache"
    g = build(folder, CountingEmbedder(), cache)
    old = g.embedding("img1.png").clone()
    write_image(folder / "img1.png", 99)  # new content
    write_image(folder / "img4.png", 4)  # new file
    (folder / "img2.png").unlink()  # removed
    os.rename(folder / "img3.png", folder / "renamed.png")  # same content, new name
    emb = CountingEmbedder()
    g2 = build(folder, emb, cache)
    assert emb.items_seen == 2  # img1 (changed) and img4 (new); renamed.png reuses img3's embedding
    r = g2.report
    assert (r.embedded, r.changed, r.removed, r.reused) == (2, 1, 2, 3)
    assert "img2.png" not in g2.keys and "renamed.png" in g2.keys
    assert not torch.allclose(g2.embedding("img1.png"), old)


def test_refresh_updates_in_place(folder, tmp_path):
    emb = CountingEmbedder()
    g = build(folder, emb, tmp_path / "cache")
    write_image(folder / "img9.png", 9)
    (folder / "img0.png").unlink()
    seen = emb.items_seen
    report = g.refresh()
    assert emb.items_seen == seen + 1
    assert report.removed == 1 and "img9.png" in g.keys and "img0.png" not in g.keys
    assert g.search(g.embedding("img9.png"), 1)[0].item.key == "img9.png"


def test_symlinks_outside_the_root_are_not_followed(folder, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    write_image(outside / "secret.png", 123)
    os.symlink(outside / "secret.png", folder / "link.png")
    os.symlink(outside, folder / "linkdir")
    os.symlink(folder / "img0.png", folder / "inside_link.png")  # inside the root: a duplicate
    emb = CountingEmbedder()
    g = build(folder, emb, False)
    assert "link.png" not in g.keys and not any(k.startswith("linkdir") for k in g.keys)
    assert sorted(g.report.skipped["symlink_outside_root"]) == ["link.png", "linkdir/"]
    assert g.report.skipped_counts["duplicate"] == 1
    assert emb.items_seen == 5
    assert all(str(outside) not in (it.path or "") for it in g.items)


def test_bad_files_are_skipped_and_counted(folder, tmp_path):
    good = (folder / "img0.png").read_bytes()
    (folder / "truncated.png").write_bytes(good[: len(good) // 2])
    (folder / "garbage.jpg").write_bytes(os.urandom(300))
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.txt").write_text("not an image")
    (folder / "zz_copy.png").write_bytes(good)  # the first key in sorted order wins
    (folder / ".hidden.png").write_bytes(good)
    os.mkfifo(folder / "pipe.png")  # opening it would block forever
    g = build(folder, CountingEmbedder(), False)
    counts = g.report.skipped_counts
    assert counts == {"unreadable": 3, "not_media": 2, "duplicate": 1}, g.report.skipped
    assert len(g) == 5
    assert g.report.skipped["duplicate"] == ["zz_copy.png: same content as img0.png"]
    assert "5 items" in str(g.report)


def test_embedder_rejecting_one_item_does_not_sink_the_batch(folder, tmp_path):
    write_image(folder / "odd.png", 7, size=(5, 5))
    g = build(folder, CountingEmbedder(reject={(5, 5)}), False)
    assert len(g) == 5 and g.report.skipped_counts == {"rejected": 1}
    with pytest.raises(ValueError, match="cannot embed"):
        build(folder, CountingEmbedder(reject={(16, 12), (5, 5)}), False)


def test_empty_and_missing_folders_are_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(GalleryError, match="no usable image files"):
        build(tmp_path / "empty", CountingEmbedder(), False)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "a.txt").write_text("x")
    with pytest.raises(GalleryError, match="1 not_media"):
        build(tmp_path / "junk", CountingEmbedder(), False)
    with pytest.raises(GalleryError, match="not found"):
        build(tmp_path / "nope", CountingEmbedder(), False)
    with pytest.raises(GalleryError, match="audio or image"):
        Gallery.from_folder(tmp_path, CountingEmbedder(), FP, modality="video")


def test_other_fingerprint_or_broken_cache_is_not_reused(folder, tmp_path):
    cache = tmp_path / "cache"
    build(folder, CountingEmbedder(), cache)
    emb = CountingEmbedder()
    Gallery.from_folder(folder, emb, "another-model", cache_dir=cache)
    assert emb.items_seen == 5
    for p in cache.glob("*.json"):
        p.write_text("{not json")
    emb = CountingEmbedder()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        g = build(folder, emb, cache)
    assert emb.items_seen == 5 and len(g) == 5
    assert any("unusable gallery cache" in str(w.message) for w in caught)
    emb = CountingEmbedder()
    build(folder, emb, cache)  # the rebuilt cache is good again
    assert emb.items_seen == 0


def test_search_results_and_k(folder):
    g = build(folder, CountingEmbedder(), False)
    hits = g.search(g.embedding("img2.png"), 3)
    assert [len(h) for h in hits] == [2, 2, 2]
    item, score = hits[0]
    assert item.key == "img2.png" and score == pytest.approx(1.0, abs=1e-5)
    assert hits[0].score >= hits[1].score >= hits[2].score
    assert len(g.search(g.embedding("img2.png"), 1000)) == 5  # clamped
    batch = g.search_batch(torch.stack([g.embedding("img1.png"), g.embedding("sub/deep.jpg")]), 1)
    assert [h[0].item.key for h in batch] == ["img1.png", "sub/deep.jpg"]
    with pytest.raises(GalleryError, match=r"shape \[Q, 48\]"):
        g.search_batch(torch.ones(2, 3), 1)
    with pytest.raises(ValueError, match="k must be"):
        g.search(g.embedding("img1.png"), 0)
    with pytest.raises(GalleryError, match="finite and non-zero"):
        g.search(torch.zeros(48), 1)


def test_files_and_meta_select_and_label(folder):
    g = Gallery.from_folder(folder, CountingEmbedder(), FP, cache_dir=False, files=["img0.png", "img3.png", "gone.png"],
                            meta={"img0.png": {"caption": "noise zero"}})
    assert g.keys == ["img0.png", "img3.png"]
    assert g["img0.png"].meta == {"caption": "noise zero"}
    assert g.report.skipped["unreadable"] == ["gone.png: not found"]


def test_item_gallery_of_captions(tmp_path):
    calls = []

    def embed_text(items):
        calls.append(len(items))
        return torch.stack([torch.tensor([len(t), t.count("a"), t.count("e"), 1.0]) for t in items])

    caps = ["a cat", "a red car", "the sea", "a cat", "green trees"]
    g = Gallery.from_items(caps, embed_text, "text-fp", modality="text", cache_dir=tmp_path, name="caps")
    assert len(g) == 4 and g.report.skipped_counts == {"duplicate": 1}
    assert sum(calls) == 4
    g2 = Gallery.from_items(caps + ["a blue boat"], embed_text, "text-fp", modality="text", cache_dir=tmp_path,
                            name="caps")
    assert sum(calls) == 5 and g2.report.reused == 4
    with pytest.raises(GalleryError, match="0 items"):
        Gallery.from_items([], embed_text, "text-fp", modality="text")
    with pytest.raises(GalleryError, match="unique"):
        Gallery.from_items(["a", "b"], embed_text, "text-fp", modality="text", keys=["x", "x"])
    with pytest.raises(GalleryError, match="fingerprint must be a non-empty string"):
        Gallery.from_items(["a"], embed_text, modality="text")
    embed_text.fingerprint = "text-fp"  # an embedder object may carry its own fingerprint
    assert Gallery.from_items(["a"], embed_text, modality="text").fingerprint == "text-fp"
    assert content_hash("a cat") == content_hash("a cat") != content_hash("a cat ")
    clip = {"array": np.zeros(4, np.float32), "sampling_rate": 16000}  # a datasets audio row
    assert content_hash(clip) == content_hash(dict(reversed(list(clip.items()))))
    assert content_hash(clip) != content_hash({**clip, "sampling_rate": 8000})


def test_audio_folder(tmp_path):
    root = tmp_path / "sounds"
    root.mkdir()
    sr = 8000
    t = np.arange(sr // 2) / sr
    for i, f in enumerate([220, 440, 880]):
        sf.write(root / f"tone{i}.wav", 0.3 * np.sin(2 * np.pi * f * t), sr)
    (root / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    seen = []

    def embed_audio(items):
        seen.extend(items)
        return torch.stack([torch.tensor([np.abs(np.diff(np.sign(a))).sum(), a.std(), 1.0], dtype=torch.float32)
                            for _, a in items])

    g = Gallery.from_folder(root, embed_audio, "audio-fp", modality="audio", cache_dir=False)
    assert len(g) == 3 and g.report.skipped_counts == {"unreadable": 1}
    assert all(s == sr and a.dtype == np.float32 for s, a in seen)
    assert g.search(g.embedding("tone2.wav"), 1)[0].item.key == "tone2.wav"
