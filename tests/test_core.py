"""Unit tests of the FuseMix building blocks: mixing, adapter, loss, metrics, latents, model files."""
import json
import math

import pytest
import torch
import torch.nn.functional as F

from fusemix.adapter import Adapter
from fusemix.checkpoint import CheckpointError
from fusemix.latents import LatentFileError, LatentPairs, load_latent_pairs, save_latent_pairs
from fusemix.loss import ContrastiveLoss, info_nce
from fusemix.metrics import retrieval_metrics
from fusemix.mixing import alpha_at, fusemix_mix, mix_partners, sample_lambda
from fusemix.model import FusionConfig, FusionModel, ModalitySpec


# ---------------------------------------------------------------- mixing
def test_mixing_uses_one_convex_combination_in_both_spaces():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(6, 5, generator=g), torch.randn(6, 3, 7, generator=g)
    partners = mix_partners(6, "permutation", g)
    lam = 0.3
    xm, ym = fusemix_mix(x, y, lam, partners)
    for i in range(6):
        j = partners[i]
        assert torch.allclose(xm[i], lam * x[i] + (1 - lam) * x[j], atol=1e-6)
        assert torch.allclose(ym[i], lam * y[i] + (1 - lam) * y[j], atol=1e-6)
    # Recover lambda from each side independently: it is the same number.
    i = int((partners != torch.arange(6)).nonzero()[0])
    j = partners[i]
    lam_x = ((xm[i] - x[j]) / (x[i] - x[j])).median()
    lam_y = ((ym[i] - y[j]) / (y[i] - y[j])).median()
    assert abs(lam_x - lam) < 1e-4 and abs(lam_y - lam) < 1e-4


def test_alpha_zero_is_identity():
    assert sample_lambda(0.0) == 1.0 and sample_lambda(-1.0) == 1.0
    x, y = torch.randn(4, 3), torch.randn(4, 2)
    xm, ym = fusemix_mix(x, y, sample_lambda(0.0), mix_partners(4))
    assert torch.equal(xm, x) and torch.equal(ym, y)


def test_lambda_follows_beta_and_is_seeded():
    g = torch.Generator().manual_seed(1)
    lams = torch.tensor([sample_lambda(0.5, g) for _ in range(4000)])
    assert lams.min() >= 0 and lams.max() <= 1
    # Beta(0.5, 0.5): mean 1/2, variance 1/8; U-shaped (more mass near the ends than the middle).
    assert abs(lams.mean() - 0.5) < 0.03 and abs(lams.var() - 0.125) < 0.01
    assert ((lams < 0.1) | (lams > 0.9)).float().mean() > ((lams > 0.4) & (lams < 0.6)).float().mean()
    a = [sample_lambda(2.0, torch.Generator().manual_seed(7)) for _ in range(2)]
    assert a[0] == a[1]


def test_half_scheme_pairs_the_two_halves():
    p = mix_partners(7, "half")
    assert p.tolist() == [3, 4, 5, 0, 1, 2, 6]
    perm = mix_partners(50, "permutation", torch.Generator().manual_seed(0))
    assert sorted(perm.tolist()) == list(range(50))
    with pytest.raises(ValueError, match="unknown mixing scheme"):
        mix_partners(4, "bogus")


def test_alpha_schedules_are_functions_of_step():
    assert alpha_at(0, 100, 1.0, "linear_decay") == 1.0 and alpha_at(100, 100, 1.0, "linear_decay") == 0.0
    assert alpha_at(50, 100, 1.0, "cosine_decay") == pytest.approx(0.5)
    assert alpha_at(3, 100, 1.0, "warmup", warmup_steps=5) == 0.0 and alpha_at(5, 100, 1.0, "warmup", 5) == 1.0


# ---------------------------------------------------------------- adapter
def test_adapter_is_a_pre_ln_residual_mlp():
    a = Adapter(16, 8, depth=2, expansion=4, dropout=0.0)
    assert len(a.blocks) == 2 and a.blocks[0].fc1.out_features == 64 and a.proj.out_features == 8
    blk = a.blocks[0]
    x = torch.randn(3, 16)
    manual = x + blk.fc2(F.gelu(blk.fc1(F.layer_norm(x, (16,), blk.norm.weight, blk.norm.bias))))
    assert torch.allclose(blk(x), manual, atol=1e-6)
    with pytest.raises(ValueError, match="width 16"):
        a(torch.randn(3, 15))


def test_head_blocks_act_after_the_projection_and_older_checkpoints_load_without_them(tmp_path):
    a = Adapter(16, 8, depth=0, expansion=2, dropout=0.0, head_depth=1).eval()
    assert len(a.blocks) == 0 and a.head[0].fc1.in_features == 8 and a.head[0].fc1.out_features == 16
    x = torch.randn(3, 16)
    assert torch.allclose(a(x), a.head[0](a.proj(a.norm(x))), atol=1e-6)
    # a model saved before head_depth existed (no such key, no head weights) loads as it was saved
    old = FusionModel(FusionConfig({"image": ModalitySpec("e", 16), "text": ModalitySpec("t", 12)}, 8, 1, 2, 0.0)).eval()
    old.save_pretrained(tmp_path / "old")
    cfg = json.loads((tmp_path / "old" / "config.json").read_text())
    del cfg["head_depth"]
    (tmp_path / "old" / "config.json").write_text(json.dumps(cfg))
    back = FusionModel.from_pretrained(tmp_path / "old")
    assert back.config.head_depth == 0 and torch.allclose(back.embed("image", x), old.embed("image", x), atol=1e-6)


def test_contrastive_loss_is_infonce_and_counts_any_caption_of_an_item():
    from fusemix.metrics import contrastive_loss

    g = torch.Generator().manual_seed(0)
    za = F.normalize(torch.randn(6, 8, generator=g), dim=-1)
    zb = F.normalize(za + 0.3 * torch.randn(6, 8, generator=g), dim=-1)
    assert contrastive_loss(za, zb, temperature=0.1) == pytest.approx(info_nce(za, zb, 0.1).item(), rel=1e-5)
    assert contrastive_loss(za, zb[torch.tensor([1, 0, 2, 3, 4, 5])], temperature=0.1) > contrastive_loss(za, zb, temperature=0.1)
    # two captions for item 0: the item side counts either; the caption side is each caption's own item
    zb2, of = torch.cat([zb, za[:1]]), torch.tensor([0, 1, 2, 3, 4, 5, 0])
    la, lb = za @ zb2.T / 0.1, zb2 @ za.T / 0.1
    own = of.unsqueeze(0) == torch.arange(6).unsqueeze(1)
    item = (la.logsumexp(1) - la.masked_fill(~own, float("-inf")).logsumexp(1)).mean()
    caption = F.cross_entropy(lb, of)
    assert contrastive_loss(za, zb2, of, 0.1, chunk=4) == pytest.approx(0.5 * float(item + caption), rel=1e-5)
    with pytest.raises(ValueError, match="each caption's item"):
        contrastive_loss(za, zb2, torch.tensor([0, 1]))


# ---------------------------------------------------------------- loss
def test_infonce_symmetric_and_minimal_when_aligned():
    g = torch.Generator().manual_seed(0)
    za = F.normalize(torch.randn(32, 16, generator=g), dim=-1)
    zb = F.normalize(torch.randn(32, 16, generator=g), dim=-1)
    t = 0.07
    assert info_nce(za, zb, t) == pytest.approx(info_nce(zb, za, t).item(), rel=1e-6)
    aligned = info_nce(za, za, t).item()
    assert aligned < 0.05  # near its minimum of 0 with sharp temperature
    assert info_nce(za, zb, t).item() > math.log(32) * 0.5
    # A direct check against the definition, both directions.
    logits = za @ zb.t() / t
    ref = 0.5 * (-(logits.log_softmax(1).diag().mean()) - logits.log_softmax(0).diag().mean())
    assert info_nce(za, zb, t).item() == pytest.approx(ref.item(), rel=1e-5)


def test_temperature_initialised_and_clamped():
    loss = ContrastiveLoss()
    assert loss.temperature.item() == pytest.approx(0.07, rel=1e-6)
    with torch.no_grad():
        loss.log_temperature.fill_(10.0)
    assert loss.temperature.item() == pytest.approx(0.5)
    with torch.no_grad():
        loss.log_temperature.fill_(-20.0)
    assert loss.temperature.item() == pytest.approx(0.001)
    with pytest.raises(ValueError):
        ContrastiveLoss(init_temperature=0.9)


# ---------------------------------------------------------------- metrics
def _brute_force(za, zb, b_to_a, k):
    sim = za @ zb.t()
    i2t = []
    for i in range(za.shape[0]):
        order = sorted(range(zb.shape[0]), key=lambda j: -sim[i, j].item())
        first = min(order.index(j) for j in range(zb.shape[0]) if b_to_a[j] == i)
        i2t.append(first < k)
    t2i = []
    for j in range(zb.shape[0]):
        order = sorted(range(za.shape[0]), key=lambda i: -sim[i, j].item())
        t2i.append(order.index(int(b_to_a[j])) < k)
    return sum(i2t) / len(i2t), sum(t2i) / len(t2i)


@pytest.mark.parametrize("captions", [1, 5])
def test_metrics_match_brute_force(captions):
    g = torch.Generator().manual_seed(captions)
    n = 40
    za = F.normalize(torch.randn(n, 8, generator=g), dim=-1)
    b_to_a = torch.arange(n).repeat_interleave(captions)
    zb = F.normalize(za[b_to_a] + 0.9 * torch.randn(len(b_to_a), 8, generator=g), dim=-1)
    m = retrieval_metrics(za, zb, b_to_a if captions > 1 else None, prefix=("i", "t"))
    for k in (1, 5, 10):
        i2t, t2i = _brute_force(za, zb, b_to_a, k)
        assert m[f"i2t_R@{k}"] == pytest.approx(i2t) and m[f"t2i_R@{k}"] == pytest.approx(t2i)
    assert 0 < m["i2t_R@1"] < 1  # the data is neither trivial nor hopeless, so the check means something
    assert m["i2t_R@10"] >= m["i2t_R@5"] >= m["i2t_R@1"]


def test_metrics_perfect_and_multi_positive_rank():
    za = torch.eye(3)
    zb = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.9, 0.1, 0.0]])
    b_to_a = torch.tensor([1, 0, 2, 2])  # item 2 has a good caption (row 2) and a misleading one (row 3)
    m = retrieval_metrics(za, F.normalize(zb, dim=-1), b_to_a, prefix=("i", "t"))
    assert m["i2t_R@1"] == 1.0  # each item's best caption ranks first
    assert m["t2i_R@1"] == pytest.approx(0.75)  # caption 3 points to item 0
    with pytest.raises(ValueError, match="b_to_a"):
        retrieval_metrics(za, zb, torch.tensor([0, 1, 2, 5]))


# ---------------------------------------------------------------- latent files
def test_latent_file_round_trip_and_split_keeps_groups(tmp_path):
    p = LatentPairs(torch.randn(10, 4), torch.randn(30, 3), torch.arange(10).repeat_interleave(3), "audio", "text", "a", "b")
    save_latent_pairs(tmp_path / "p.safetensors", p)
    q = load_latent_pairs(tmp_path / "p.safetensors")
    assert torch.equal(q.x, p.x) and torch.equal(q.y, p.y) and q.x_modality == "audio" and q.y_encoder == "b"
    train, held = q.split(0.3, seed=0)
    assert held.x.shape[0] == 3 and held.y.shape[0] == 9 and train.y.shape[0] == 21
    for part in (train, held):  # every caption still describes its own item after renumbering
        for j in range(part.y.shape[0]):
            orig = [i for i in range(10) if torch.equal(part.x[part.y_item[j]], p.x[i])][0]
            assert any(torch.equal(part.y[j], p.y[k]) for k in range(orig * 3, orig * 3 + 3))


@pytest.mark.parametrize("make,match", [
    (lambda: LatentPairs(torch.randn(4, 3), torch.randn(5, 3)), "row-aligned"),
    (lambda: LatentPairs(torch.full((4, 3), float("nan")), torch.randn(4, 3)), "NaN"),
    (lambda: LatentPairs(torch.randn(4), torch.randn(4, 3)), "rank"),
    (lambda: LatentPairs(torch.randint(0, 5, (4, 3)), torch.randn(4, 3)), "floating"),
    (lambda: LatentPairs(torch.randn(0, 3), torch.randn(0, 3)), "empty"),
    (lambda: LatentPairs(torch.randn(4, 3), torch.randn(5, 3), torch.tensor([0, 1, 2, 3, 4])), "y_item"),
])
def test_bad_latents_rejected(make, match):
    with pytest.raises(LatentFileError, match=match):
        make()


def test_unreadable_latent_files(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file at all")
    with pytest.raises(LatentFileError, match="not a readable"):
        load_latent_pairs(bad)
    with pytest.raises(LatentFileError, match="does not exist"):
        load_latent_pairs(tmp_path / "missing.safetensors")


# ---------------------------------------------------------------- model files
def _model(seed=0, **kw):
    torch.manual_seed(seed)
    cfg = FusionConfig({"image": ModalitySpec("img-enc", 12), "text": ModalitySpec("txt-enc", 10)},
                       proj_dim=6, depth=2, expansion=2, dropout=0.1, **kw)
    return FusionModel(cfg).eval()


def test_model_round_trip_identical_outputs(tmp_path):
    m = _model()
    x = torch.randn(5, 12)
    m.save_pretrained(tmp_path / "m")
    m2 = FusionModel.from_pretrained(tmp_path / "m")
    assert torch.equal(m.embed("image", x), m2.embed("image", x))
    assert torch.allclose(m2.embed("image", x).norm(dim=-1), torch.ones(5))
    assert m2.config.modalities["text"].encoder == "txt-enc"


def test_model_errors_name_shapes(tmp_path):
    m = _model()
    with pytest.raises(ValueError, match=r"\[B, 12\].*\(5, 13\)"):
        m.embed("image", torch.randn(5, 13))
    with pytest.raises(ValueError, match="no 'audio' adapter"):
        m.embed("audio", torch.randn(5, 12))
    m.save_pretrained(tmp_path / "m")
    cfg = (tmp_path / "m" / "config.json")
    cfg.write_text(cfg.read_text().replace('"dim": 12', '"dim": 14'))  # config disagrees with the weights
    with pytest.raises(CheckpointError, match=r"has shape \(\d+,( \d+)?\) but the model .* expects \(\d+,( \d+)?\): the config and the weights disagree"):
        FusionModel.from_pretrained(tmp_path / "m")
    m.save_pretrained(tmp_path / "ok")
    with pytest.raises(CheckpointError, match="768-d"):
        FusionModel.from_pretrained(tmp_path / "ok", expect={"image": ModalitySpec("other", 768)})
    w = tmp_path / "ok" / "model.safetensors"
    w.write_bytes(w.read_bytes()[:100])  # truncated
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        FusionModel.from_pretrained(tmp_path / "ok")


# ---------------------------------------------------------------- optimiser
def test_no_weight_decay_on_biases_norms_and_temperature():
    from fusemix.optim import param_groups

    m = _model()
    decay, no_decay = param_groups(m, 0.1)
    names = {id(p): n for n, p in m.named_parameters()}
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim == 2 for p in decay["params"])
    nd = {names[id(p)] for p in no_decay["params"]}
    assert "loss_fn.log_temperature" in nd and any(n.endswith("norm.weight") for n in nd)
    assert any(n.endswith("fc1.bias") for n in nd)


def test_lr_warmup_then_cosine_to_floor():
    from fusemix.optim import lr_at

    lrs = [lr_at(s, 1000, 1e-3, 100, 1e-3) for s in range(1000)]
    assert lrs[0] == pytest.approx(1e-5) and lrs[99] == pytest.approx(1e-3)
    assert all(a <= b for a, b in zip(lrs[:100], lrs[1:100]))  # rising during warm-up
    assert all(a >= b for a, b in zip(lrs[100:], lrs[101:]))  # then falling
    assert lr_at(550, 1000, 1e-3, 100, 1e-3) == pytest.approx(1e-6 + (1e-3 - 1e-6) * 0.5, rel=1e-6)
    assert lr_at(1000, 1000, 1e-3, 100, 1e-3) == pytest.approx(1e-6)
