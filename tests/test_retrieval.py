"""Cross-modal retrieval as the demo does it (an EmbeddingSpace embeds the query, a Gallery built with
the space's embedder answers it): metrics through galleries match brute force; text -> image and
emergent audio -> image (through a frozen text anchor) work far above chance on synthetic structured
data; tiny Hugging Face encoders and the CLIP reference plug in; unsupported queries are clear errors."""

import json
import math

import numpy as np
import pytest
import torch

import train
from fusemix.default_gallery import DEFAULT_IMAGES, EXCLUDED, available_images, default_captions, licence_table
from fusemix.encoders import EncoderInputError
from fusemix.gallery import Gallery, GalleryItem
from fusemix.latents import LatentPairs, save_latent_pairs
from fusemix.metrics import retrieval_metrics
from fusemix.model import FusionConfig, FusionModel, ModalitySpec
from fusemix.reference import clip_space
from fusemix.retrieval import Embedder, EmbeddingSpace, FusionEmbedder, RetrievalError

# ---------------------------------------------------------------------------------- labelled set


def ranks_by_search(gallery, queries, positives):
    """1-based rank of the best-ranked positive key for each query, read off gallery.search_batch."""
    hits = gallery.search_batch(queries, len(gallery))
    return np.array([next(r + 1 for r, h in enumerate(row) if h.item.key in pos) for row, pos in zip(hits, positives)])


def test_metrics_on_the_default_labelled_set_match_brute_force():
    captions, files = default_captions()
    images = [img.file for img in available_images()]
    assert len(images) >= 15 and len(captions) == 2 * len(images)
    g = torch.Generator().manual_seed(0)
    img_emb = torch.nn.functional.normalize(torch.randn(len(images), 16, generator=g), dim=1)
    cap_of = torch.tensor([images.index(f) for f in files])
    cap_emb = torch.nn.functional.normalize(img_emb[cap_of] + 0.9 * torch.randn(len(captions), 16, generator=g), dim=1)
    image_gallery = Gallery([GalleryItem(f, f) for f in images], img_emb, fingerprint="fake", modality="image")
    caption_gallery = Gallery([GalleryItem(str(i), str(i)) for i in range(len(captions))], cap_emb,
                              fingerprint="fake", modality="text")

    t2i = ranks_by_search(image_gallery, cap_emb, [{f} for f in files])
    i2t = ranks_by_search(caption_gallery, img_emb,
                          [{str(j) for j in range(len(captions)) if files[j] == f} for f in images])
    sim = (cap_emb @ img_emb.T).numpy()  # brute force, straight from the definition
    brute_t2i = np.array([1 + (sim[j] > sim[j, cap_of[j]]).sum() for j in range(len(captions))])
    np.testing.assert_array_equal(t2i, brute_t2i)

    ref = retrieval_metrics(img_emb, cap_emb, cap_of, prefix=("i", "t"))
    for k in (1, 5, 10):
        assert ref[f"t2i_R@{k}"] == pytest.approx((t2i <= k).mean())
        assert ref[f"i2t_R@{k}"] == pytest.approx((i2t <= k).mean())
    assert ref["t2i_median_rank"] == pytest.approx(float(np.median(t2i)))
    assert 0 < ref["t2i_R@1"] < 1  # the noise level makes this a non-trivial check


def test_default_gallery_lists_real_photographs_with_licences():
    files = {img.file for img in DEFAULT_IMAGES}
    assert {"astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png", "moon.png"} <= files
    assert not files & set(EXCLUDED)
    assert all(img.licence and img.source and len(img.captions) == 2 for img in DEFAULT_IMAGES)
    assert len(available_images()) == len(DEFAULT_IMAGES)  # all present in the pinned scikit-image
    assert licence_table().count("\n") == len(DEFAULT_IMAGES) + 1


# ---------------------------------------------------------------------------------- synthetic world
# One shared latent z per item, seen through three different random nonlinear "encoders".
Z_DIM, DIMS, N_TRAIN, N_HELD = 8, {"image": 40, "text": 24, "audio": 32}, 1000, 200
_g = torch.Generator().manual_seed(777)
ENCODERS = {m: (torch.randn(Z_DIM, d, generator=_g), torch.randn(d, d, generator=_g) / math.sqrt(d))
            for m, d in DIMS.items()}


def encode(modality, z, seed):
    a, b = ENCODERS[modality]
    x = torch.tanh(torch.tanh(z @ a) @ b * 2)
    return x + 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))


def latents_z(n, seed):
    return torch.randn(n, Z_DIM, generator=torch.Generator().manual_seed(seed))


def latest(run):
    return run / json.loads((run / "latest.json").read_text())["checkpoint"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Image-text adapters trained with train.py, then an audio adapter against the frozen text one.

    Image-text items and audio-text items are disjoint: no audio-image pair is ever seen.
    """
    root = tmp_path_factory.mktemp("world")
    z_it, z_at, z_held = latents_z(N_TRAIN, 1), latents_z(N_TRAIN, 2), latents_z(N_HELD, 3)
    save_latent_pairs(root / "it.safetensors", LatentPairs(encode("image", z_it, 11), encode("text", z_it, 12), None,
                                                           "image", "text", "syn-image", "syn-text"))
    save_latent_pairs(root / "at.safetensors", LatentPairs(encode("audio", z_at, 21), encode("text", z_at, 22), None,
                                                           "audio", "text", "syn-audio", "syn-text"))
    common = ["--proj_dim", "32", "--depth", "2", "--expansion", "2", "--dropout", "0.1", "--epochs", "30",
              "--batch_size", "200", "--lr", "3e-3", "--warmup_steps", "10", "--heldout_fraction", "0",
              "--eval_every", "1000", "--save_every", "1000", "--no-progress", "--device", "cpu"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matmuls: threads only add contention on a shared 2-core machine
    try:
        train.main(["--latents", str(root / "it.safetensors"), "--out", str(root / "it")] + common)
        train.main(["--latents", str(root / "at.safetensors"), "--out", str(root / "at"),
                    "--init_from", str(latest(root / "it")), "--freeze", "text"] + common)
    finally:
        torch.set_num_threads(threads)
    held = {m: encode(m, z_held, 30 + i) for i, m in enumerate(DIMS)}
    return {"image_text": FusionModel.from_pretrained(latest(root / "it")),
            "model": FusionModel.from_pretrained(latest(root / "at")), "held": held}


def latent_space(model, name="synthetic", tag="v1"):
    """Embedders whose 'items' are latent vectors of the synthetic encoders (labelled stand-ins)."""
    def embedder(m):
        return Embedder(m, lambda items: model.embed(m, torch.stack(list(items))), f"syn-{m}-{tag}")
    return EmbeddingSpace(name, [embedder(m) for m in model.modalities], standin=True)


@pytest.fixture(scope="module")
def galleries(world):
    """The held-out items of every modality, each a gallery embedded by the trained model's space."""
    space, held = latent_space(world["model"]), world["held"]
    keys = [str(i) for i in range(N_HELD)]
    return space, {m: Gallery.from_items(list(held[m]), space.embedder(m), modality=m, keys=keys, progress=False)
                   for m in DIMS}


def search(space, gallery, modality, items, k):
    return gallery.search_batch(space.embed(modality, list(items)), k)


def via_captions(space, galleries, modality, item, k):
    """The two-hop baseline: the best caption of the text gallery, then images by its stored embedding."""
    hop = galleries["text"].search(space.embed(modality, [item])[0], 1)
    return galleries["image"].search(galleries["text"].embedding(hop[0].item.key), k)


def r_at(results, k):
    """Share of queries i whose top-k hits contain key str(i)."""
    return float(np.mean([str(i) in {h.item.key for h in hits[:k]} for i, hits in enumerate(results)]))


def test_text_anchor_stays_frozen(world):
    before, after = world["image_text"].adapters["text"].state_dict(), world["model"].adapters["text"].state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert sorted(world["model"].modalities) == ["audio", "image", "text"]


def test_text_to_image_far_above_chance(galleries, world):
    space, g = galleries
    res = search(space, g["image"], "text", world["held"]["text"], k=5)
    chance = 1 / N_HELD
    assert r_at(res, 1) > 40 * chance, r_at(res, 1)  # measured ~0.7 at this size
    assert r_at(res, 5) > 0.6


def test_emergent_audio_to_image_against_chance_and_caption_route(galleries, world):
    space, g = galleries
    audio = list(world["held"]["audio"])
    direct = search(space, g["image"], "audio", audio, k=5)
    route = [via_captions(space, g, "audio", a, k=5) for a in audio]
    chance = 1 / N_HELD
    d1, d5, v1, v5 = r_at(direct, 1), r_at(direct, 5), r_at(route, 1), r_at(route, 5)
    print(f"\naudio->image over {N_HELD} held-out items: emergent R@1 {d1:.3f} R@5 {d5:.3f}; "
          f"via retrieved captions R@1 {v1:.3f} R@5 {v5:.3f}; chance R@1 {chance:.3f}")
    assert d1 > 40 * chance and v1 > 20 * chance
    assert d5 >= 0.8 * v5  # the direct route loses nothing against the two-hop route


def test_unsupported_queries_are_clear_errors(galleries, world):
    space, g = galleries
    with pytest.raises(RetrievalError, match=r"cannot embed 'video' queries; it supports \[.*'audio'"):
        space.embed("video", [world["held"]["audio"][0]])
    with pytest.raises(RetrievalError, match="items must be a list"):
        space.embed("text", world["held"]["text"][0])
    with pytest.raises(ValueError, match="k must be"):  # SearchInputError
        g["image"].search(space.embed("text", [world["held"]["text"][0]])[0], k=0)
    hits = search(space, g["image"], "image", [world["held"]["image"][7]], k=10_000)[0]  # image -> image, k clamped
    assert len(hits) == N_HELD and hits[0].item.key == "7"
    only_text = FusionModel(FusionConfig({"text": ModalitySpec("syn-text", DIMS["text"])}, proj_dim=32, depth=1))
    with pytest.raises(RetrievalError, match="cannot embed 'audio'"):
        latent_space(only_text, "text-only").embed("audio", [world["held"]["audio"][0]])
    # another model's weights name another space: a gallery embedded by it is never taken for this one's
    assert latent_space(world["model"], tag="v2").embedder("image").fingerprint != g["image"].fingerprint


# ---------------------------------------------------------------------------------- tiny HF encoders
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from fusemix.encoders import load_encoder
    from fusemix.tiny import save_tiny_image_encoder, save_tiny_sentence_encoder

    root = tmp_path_factory.mktemp("tiny")
    enc = {"image": load_encoder("image", save_tiny_image_encoder(root / "image")),
           "text": load_encoder("sentence", save_tiny_sentence_encoder(root / "sentence"))}
    torch.manual_seed(0)
    model = FusionModel(FusionConfig({m: ModalitySpec(e.model_id, e.dim) for m, e in enc.items()},
                                     proj_dim=16, depth=1, expansion=2, dropout=0.0)).eval()
    return enc, model, root


def test_tiny_hf_encoders_search_the_default_gallery(tiny, tmp_path):
    from fusemix.default_gallery import build_default_gallery, default_gallery_dir

    enc, model, _ = tiny
    space = EmbeddingSpace.from_fusion(model, enc, standin=True)
    emb = space.embedder("image")
    g = build_default_gallery(emb, cache_dir=tmp_path)
    assert len(g) == len(DEFAULT_IMAGES) and g["coffee.png"].meta["licence"]
    hits = g.search(space.embed("text", ["a cup of coffee"])[0], k=3)
    assert len(hits) == 3 and hits[0].score >= hits[1].score >= hits[2].score
    assert all(isinstance(h.item.key, str) and h.item.path for h in hits)
    own = g.search(space.embed("image", [str(default_gallery_dir() / "rocket.jpg")])[0], k=1)[0]  # image -> image
    assert own.item.key == "rocket.jpg" and own.score == pytest.approx(1.0, abs=1e-4)
    captions, _ = default_captions()
    texts = Gallery.from_items(captions, space.embedder("text"), modality="text", progress=False)
    chelsea = space.embed("image", [str(default_gallery_dir() / "chelsea.png")])[0]
    assert len(texts.search(chelsea, k=4)) == 4  # image -> text
    with pytest.raises(RetrievalError, match="cannot embed 'audio'"):
        space.embed("audio", [np.zeros(16000, np.float32)])
    again = build_default_gallery(emb, emb.fingerprint, cache_dir=tmp_path)
    assert again.report.embedded == 0 and again.report.reused == len(DEFAULT_IMAGES)


def test_fusion_embedder_refuses_mismatched_encoders(tiny):
    enc, model, _ = tiny
    with pytest.raises(RetrievalError, match="has no 'audio' adapter"):
        FusionEmbedder(enc["image"], model, "audio")
    wrong = FusionModel(FusionConfig({"text": ModalitySpec(enc["text"].model_id, enc["text"].dim + 1)}, proj_dim=8, depth=1))
    with pytest.raises(RetrievalError, match=r"reads 33-d latents"):
        FusionEmbedder(enc["text"], wrong)
    renamed = FusionModel(FusionConfig({"text": ModalitySpec("BAAI/bge-small-en-v1.5", enc["text"].dim)}, proj_dim=8,
                                       depth=1))
    with pytest.raises(RetrievalError, match="trained on latents of BAAI/bge-small-en-v1.5"):
        FusionEmbedder(enc["text"], renamed)
    assert FusionEmbedder(enc["text"], renamed, strict_encoder=False).modality == "text"
    as_spec = FusionModel(FusionConfig({"text": ModalitySpec(f"sentence:{enc['text'].model_id}", enc["text"].dim)},
                                       proj_dim=8, depth=1))  # train.py records encoders as KIND:MODEL_ID
    assert FusionEmbedder(enc["text"], as_spec).modality == "text"


def test_clip_reference_space_plugs_in(tmp_path):
    from fusemix.default_gallery import default_gallery_dir
    from fusemix.tiny import save_tiny_clip

    save_tiny_clip(tmp_path / "clip")
    space = clip_space(str(tmp_path / "clip"), standin=True)
    assert space.modalities == ["image", "text"] and space.standin  # the caller says it loaded a stand-in
    assert not clip_space(str(tmp_path / "clip")).standin  # never guessed from the folder
    files = ["astronaut.png", "coffee.png", "rocket.jpg"]
    g = Gallery.from_folder(default_gallery_dir(), space.embedder("image"), modality="image", files=files,
                            cache_dir=False, progress=False)
    hits = g.search(space.embed("text", ["a rocket at dusk"])[0], k=5)
    assert sorted(h.item.key for h in hits) == sorted(files)
    with pytest.raises(EncoderInputError, match="empty or whitespace"):  # the reference scorer's own check
        space.embed("text", ["  "])
    # the same model and features as the demo's reference scorer
    from fusemix.reference import ReferenceScorer

    scorer = ReferenceScorer.from_pretrained(tmp_path / "clip")
    torch.testing.assert_close(space.embed("text", ["a rocket"]), scorer.embed_texts(["a rocket"]))
