"""The caption bank: the bundled file, its embedding cache, and nearest-caption search."""
from __future__ import annotations

import hashlib

import pytest
import torch
import torch.nn.functional as F

from fusemix.caption_bank import CaptionBank, CaptionBankError, default_bank_path, load_captions, sample_captions


class FakeTextEncoder:
    """Deterministic stand-in for a CLAP text tower: a vector seeded by each caption's hash."""

    def __init__(self, model_id="fake/clap", dim=8):
        self.model_id, self.dim, self.calls = model_id, dim, 0

    def encode(self, texts, **_):
        self.calls += 1
        rows = []
        for t in texts:
            seed = int(hashlib.sha256(t.encode()).hexdigest()[:8], 16)
            rows.append(torch.randn(self.dim, generator=torch.Generator().manual_seed(seed)))
        return F.normalize(torch.stack(rows), dim=-1)


def test_bundled_bank_is_the_sound_corpus_large_varied_and_clean():
    caps = load_captions()
    raw = [ln.strip() for ln in default_bank_path().read_text().splitlines()]
    assert default_bank_path().name == "sound_captions.txt" and len(caps) >= 3000
    assert len(caps) == len({c.lower() for c in caps})  # no duplicates, even up to case
    assert all(c and len(c) <= 120 and not c.startswith("#") for c in caps)
    text = " ".join(caps)
    for word in ("dog", "bird", "car", "train", "rain", "thunder", "piano", "guitar", "door", "baby",
                 "crowd", "wind", "siren", "kettle", "waves"):
        assert word in text, word
    assert len(raw) > len(caps)  # comment lines exist and are skipped


def test_load_captions_errors_and_cleanup(tmp_path):
    with pytest.raises(CaptionBankError, match="does not exist"):
        load_captions(tmp_path / "missing.txt")
    empty = tmp_path / "empty.txt"
    empty.write_text("# only a comment\n\n   \n")
    with pytest.raises(CaptionBankError, match="holds no captions"):
        load_captions(empty)
    binary = tmp_path / "bin.txt"
    binary.write_bytes(b"\xff\xfe\x00\x81 not utf8")
    with pytest.raises(CaptionBankError, match="UTF-8"):
        load_captions(binary)
    messy = tmp_path / "messy.txt"
    messy.write_text("  a   dog barking \n# c\na dog barking\nrain\n")
    assert load_captions(messy) == ["a dog barking", "rain"]
    long = tmp_path / "long.txt"
    long.write_text("x" * 400 + "\n")
    with pytest.raises(CaptionBankError, match="longer than"):
        load_captions(long)


def test_embeddings_are_cached_per_model_and_bank_file(tmp_path):
    bank_file = tmp_path / "bank.txt"
    bank_file.write_text("a dog barking\nrain on a roof\na car horn\n")
    cache = tmp_path / "cache"
    enc = FakeTextEncoder()
    first = CaptionBank.build(enc, bank_file, cache)
    assert enc.calls == 1 and len(list(cache.glob("*.safetensors"))) == 1
    second = CaptionBank.build(enc, bank_file, cache)
    assert enc.calls == 1  # served from the cache
    assert torch.equal(first.embeddings, second.embeddings) and second.captions == first.captions
    CaptionBank.build(FakeTextEncoder("fake/other-clap"), bank_file, cache)  # another model: new entry
    assert len(list(cache.glob("*.safetensors"))) == 2
    bank_file.write_text("a dog barking\nrain on a roof\na car horn\nthunder\n")  # edited bank: re-embed
    enc2 = FakeTextEncoder()
    edited = CaptionBank.build(enc2, bank_file, cache)
    assert enc2.calls == 1 and len(edited) == 4
    assert not [p for p in cache.iterdir() if p.name.endswith(".tmp")]  # atomic writes leave nothing behind


def test_corrupt_cache_is_rebuilt_not_trusted(tmp_path):
    bank_file = tmp_path / "bank.txt"
    bank_file.write_text("a dog barking\nrain on a roof\n")
    cache = tmp_path / "cache"
    enc = FakeTextEncoder()
    CaptionBank.build(enc, bank_file, cache)
    (cache_file,) = cache.glob("*.safetensors")
    cache_file.write_bytes(b"garbage")
    bank = CaptionBank.build(enc, bank_file, cache)
    assert enc.calls == 2 and bank.embeddings.shape == (2, 8)


def test_search_ranks_by_cosine_and_validates():
    enc = FakeTextEncoder()
    caps = ["a dog barking", "rain on a roof", "a car horn", "a baby crying"]
    bank = CaptionBank(caps, enc.encode(caps), enc.model_id)
    query = bank.embeddings[2] * 5.0  # scale does not matter
    (matches,) = bank.search(query, k=3)
    assert matches[0].caption == "a car horn" and matches[0].score == pytest.approx(1.0, abs=1e-5)
    assert [m.score for m in matches] == sorted([m.score for m in matches], reverse=True)
    both = bank.search(torch.stack([bank.embeddings[0], bank.embeddings[3]]), k=1)
    assert [m[0].caption for m in both] == ["a dog barking", "a baby crying"]
    with pytest.raises(CaptionBankError, match=r"\[B, 8\]"):
        bank.search(torch.zeros(1, 16))
    with pytest.raises(CaptionBankError, match="between 1 and the bank size 4"):
        bank.search(query, k=5)
    with pytest.raises(CaptionBankError, match="NaN"):
        bank.search(torch.full((8,), float("nan")))
    with pytest.raises(CaptionBankError, match="one embedding row per caption"):
        CaptionBank(caps, torch.zeros(3, 8), "x")


def test_a_sample_of_the_bundled_bank_through_the_tiny_clap_text_tower(tmp_path):
    from fusemix.encoders import load_encoder
    from fusemix.tiny import save_tiny_clap

    save_tiny_clap(tmp_path / "clap")
    enc = load_encoder("clap-text", str(tmp_path / "clap"), device="cpu")
    bank = CaptionBank.build(enc, cache_dir=tmp_path / "cache", sample=300)
    assert bank.captions == sample_captions(load_captions(), 300) and bank.dim == enc.dim == 16
    assert torch.allclose(bank.embeddings.norm(dim=-1), torch.ones(len(bank)), atol=1e-5)
    # a caption's own CLAP text embedding finds that caption first
    (m,) = bank.search(enc.encode([bank.captions[17]], progress=False), k=1)
    assert m[0].caption == bank.captions[17]
    calls = []
    enc.encode = lambda *a, **k: calls.append(1)  # a cache hit must not encode anything
    again = CaptionBank.build(enc, cache_dir=tmp_path / "cache", sample=300)
    assert not calls and torch.allclose(again.embeddings, bank.embeddings, atol=1e-6)


def test_sample_captions_is_seeded_sorted_and_bounded():
    caps = [f"caption {i:03d}" for i in range(100)]
    a = sample_captions(caps, 10)
    assert a == sample_captions(caps, 10) == sorted(a) and len(set(a)) == 10 and set(a) <= set(caps)
    assert sample_captions(caps, 10, seed=1) != a
    assert sample_captions(caps, None) == caps == sample_captions(caps, 100)


def test_a_cold_start_serves_a_sample_while_the_whole_bank_embeds_in_the_background(tmp_path):
    import threading

    bank_file = tmp_path / "bank.txt"
    bank_file.write_text("".join(f"sound number {i}\n" for i in range(50)))
    gate = threading.Event()

    class Slow(FakeTextEncoder):
        def encode(self, texts, **kw):
            if len(texts) > 10:  # the whole bank: held until the test lets it go
                assert gate.wait(30)
            return super().encode(texts, **kw)

    enc = Slow()
    bank = CaptionBank.build_in_background(enc, bank_file, tmp_path / "cache", starter=10)
    assert len(bank) == 10 and bank.pending == 40 and not bank.complete.is_set()
    assert bank.search(bank.embeddings[3], k=1)[0][0].caption == bank.captions[3]  # the sample serves meanwhile
    gate.set()
    assert bank.complete.wait(30) and len(bank) == 50 and bank.pending == 0
    assert bank.captions == load_captions(bank_file)
    calls = enc.calls
    again = CaptionBank.build_in_background(enc, bank_file, tmp_path / "cache", starter=10)  # a restart: cached
    assert len(again) == 50 and again.complete.is_set() and enc.calls == calls

    class Broken(FakeTextEncoder):
        def encode(self, texts, **kw):
            if len(texts) > 10:
                raise RuntimeError("out of memory")
            return super().encode(texts, **kw)

    other = CaptionBank.build_in_background(Broken("fake/broken"), bank_file, tmp_path / "cache", starter=10)
    assert other.complete.wait(30) and len(other) == 10  # a failed background build leaves the sample serving
