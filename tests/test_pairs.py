"""Pair sources: manifests, audio/image folders, in-memory datasets, fingerprints, bad rows."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import soundfile as sf

from fusemix.pairs import (DatasetSource, ManifestSource, PairSourceError, open_folder,
                           open_source)


def _wav(path, seconds=0.1, sr=16000, freq=440.0):
    t = np.arange(int(seconds * sr)) / sr
    sf.write(path, (0.3 * np.sin(2 * np.pi * freq * t)).astype("float32"), sr)


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def audio_dir(tmp_path):
    for name in ("a.wav", "b.wav", "c.wav"):
        _wav(tmp_path / name)
    return tmp_path


def test_csv_rows_sharing_an_item_form_one_caption_group_in_order(audio_dir):
    m = _write(audio_dir / "m.csv", "file_name,caption\nb.wav,  b one \na.wav,a one\nb.wav,b two\nb.wav,b three\n")
    src = ManifestSource(m)
    assert src.ids == ["b.wav", "a.wav"]
    assert src.captions == [("b one", "b two", "b three"), ("a one",)]
    assert src.num_captions == 4 and src.skipped == [] and src.modality == "audio"
    assert len(src) == 2 and src.item(0) == str(audio_dir / "b.wav")


def test_jsonl_list_column_and_bad_lines_are_counted_not_fatal(audio_dir):
    lines = [json.dumps({"file_name": "a.wav", "caption": ["x", "y"]}), "{not json", "",
             json.dumps([1, 2]), json.dumps({"file_name": "c.wav", "caption": "z"})]
    src = ManifestSource(_write(audio_dir / "m.jsonl", "\n".join(lines) + "\n"))
    assert src.ids == ["a.wav", "c.wav"] and src.captions == [("x", "y"), ("z",)]
    reasons = [s.reason for s in src.skipped]
    assert len(reasons) == 2 and "invalid JSON" in reasons[0] and "JSON object" in reasons[1]


def test_missing_file_is_skipped_once_and_the_rest_is_kept(audio_dir):
    m = _write(audio_dir / "m.csv", "file_name,caption\ngone.wav,one\na.wav,fine\ngone.wav,two\n,no path\n")
    src = ManifestSource(m)
    assert src.ids == ["a.wav"]
    missing = [s for s in src.skipped if s.reason.startswith("missing file")]
    assert [s.item_id for s in missing] == ["gone.wav"]
    assert any("empty 'file_name'" in s.reason for s in src.skipped)
    assert len(src.skipped) == 2


def test_empty_captions_are_dropped_and_an_item_without_any_is_left_out(audio_dir):
    m = _write(audio_dir / "m.csv", "file_name,caption\na.wav,   \na.wav,real\nb.wav,\n")
    src = ManifestSource(m)
    assert src.ids == ["a.wav"] and src.captions == [("real",)]
    assert any(s.item_id == "b.wav" and "no non-empty caption" in s.reason for s in src.skipped)
    assert sum(": empty caption" in s.reason for s in src.skipped) == 2 and len(src.skipped) == 3


def test_several_caption_columns_and_an_id_column(audio_dir):
    m = _write(audio_dir / "m.csv", "id,file_name,c0,c1\nk1,a.wav,one,two\nk2,b.wav,three,\n")
    src = ManifestSource(m, caption_column=["c0", "c1"], id_column="id")
    assert src.ids == ["k1", "k2"] and src.captions == [("one", "two"), ("three",)]


def test_one_id_naming_two_files_is_an_error(audio_dir):
    m = _write(audio_dir / "m.csv", "id,file_name,caption\nk,a.wav,x\nk,b.wav,y\n")
    with pytest.raises(PairSourceError, match="two different items"):
        ManifestSource(m, id_column="id")


def test_missing_column_and_bad_paths_are_clear_errors(audio_dir):
    m = _write(audio_dir / "m.csv", "file_name,text\na.wav,x\n")
    with pytest.raises(PairSourceError, match=r"missing column\(s\) \['caption'\]"):
        ManifestSource(m)
    with pytest.raises(PairSourceError, match="does not exist"):
        ManifestSource(audio_dir / "nope.csv")
    with pytest.raises(PairSourceError, match="unknown manifest format"):
        ManifestSource(_write(audio_dir / "m.txt", "x"))
    with pytest.raises(PairSourceError, match="neither"):
        open_source(audio_dir / "nope")


def test_audiofolder_metadata_csv_is_read(audio_dir):
    _write(audio_dir / "metadata.csv", "file_name,caption\na.wav,first\nc.wav,third\n")
    src = open_source(audio_dir)
    assert isinstance(src, ManifestSource) and src.ids == ["a.wav", "c.wav"] and src.modality == "audio"
    assert src.item(1) == str(audio_dir / "c.wav")


def test_imagefolder_split_subfolder_and_ambiguous_metadata(tmp_path):
    from PIL import Image

    (tmp_path / "train").mkdir()
    Image.new("RGB", (4, 4), "red").save(tmp_path / "train" / "r.png")
    _write(tmp_path / "train" / "metadata.jsonl", json.dumps({"file_name": "r.png", "text": "red"}) + "\n")
    with pytest.raises(PairSourceError, match="split"):
        open_folder(tmp_path, caption_column="text")
    src = open_folder(tmp_path, caption_column="text", split="train")
    assert src.ids == ["r.png"] and src.modality == "image"
    _write(tmp_path / "train" / "metadata.csv", "file_name,text\nr.png,red\n")
    with pytest.raises(PairSourceError, match="both"):
        open_folder(tmp_path, caption_column="text", split="train")


def test_fingerprint_is_deterministic_and_tracks_files_and_captions(audio_dir):
    m = _write(audio_dir / "m.csv", "file_name,caption\na.wav,x\nb.wav,y\n")
    fp = ManifestSource(m).fingerprint()
    assert ManifestSource(m).fingerprint() == fp
    cap_fp = ManifestSource(m).captions_fingerprint()

    _wav(audio_dir / "b.wav", seconds=0.2)  # new content, new size
    changed = ManifestSource(m)
    assert changed.fingerprint() != fp
    assert changed.captions_fingerprint() == cap_fp  # caption latents stay reusable

    _write(m, "file_name,caption\na.wav,x\nb.wav,y changed\n")
    assert ManifestSource(m).captions_fingerprint() != cap_fp


def test_content_hash_ignores_mtime_but_default_does_not(audio_dir):
    m = _write(audio_dir / "m.csv", "file_name,caption\na.wav,x\n")
    by_stat, by_content = ManifestSource(m).fingerprint(), ManifestSource(m, content_hash=True).fingerprint()
    st = os.stat(audio_dir / "a.wav")
    os.utime(audio_dir / "a.wav", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert ManifestSource(m).fingerprint() != by_stat
    assert ManifestSource(m, content_hash=True).fingerprint() == by_content


def test_in_memory_dataset_with_undecoded_audio_and_caption_lists(audio_dir):
    import datasets

    ds = datasets.Dataset.from_dict(
        {"audio": [str(audio_dir / "a.wav"), str(audio_dir / "b.wav"), str(audio_dir / "c.wav")],
         "captions": [["one", "uno"], ["", " "], ["three"]], "key": ["A", "B", "C"]},
    ).cast_column("audio", datasets.Audio())
    src = DatasetSource(ds, item_column="audio", caption_column="captions", id_column="key")
    assert src.modality == "audio" and src.ids == ["A", "C"] and src.captions == [("one", "uno"), ("three",)]
    item = src.item(1)
    assert isinstance(item, dict) and item["path"].endswith("c.wav")  # undecoded: no torchcodec needed
    again = DatasetSource(ds, item_column="audio", caption_column="captions", id_column="key")
    assert again.fingerprint() == src.fingerprint()
    other = DatasetSource(ds.map(lambda r: {"captions": [c + "!" for c in r["captions"]]}),
                          item_column="audio", caption_column="captions", id_column="key")
    assert other.fingerprint() != src.fingerprint()
    assert any(s.item_id == "B" and "no non-empty caption" in s.reason for s in src.skipped)


def test_dataset_source_errors():
    import datasets

    ds = datasets.Dataset.from_dict({"image": ["x"], "caption": ["c"], "k": ["same"]})
    with pytest.raises(PairSourceError, match="lacks column"):
        DatasetSource(ds, item_column="audio")
    dup = datasets.Dataset.from_dict({"image": ["x", "y"], "caption": ["c", "d"], "k": ["s", "s"]})
    with pytest.raises(PairSourceError, match="duplicate id"):
        DatasetSource(dup, item_column="image", id_column="k")
    with pytest.raises(PairSourceError, match="item_column"):
        open_source(ds)
    assert open_source(ds, item_column="image").ids == ["0"]


def test_an_unreachable_hub_dataset_is_a_clear_error():
    from fusemix.pairs import hub_source

    with pytest.raises(PairSourceError, match="could not load dataset 'someone/not-here'"):
        hub_source("someone/not-here", item_column="audio")
