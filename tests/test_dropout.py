"""The adapter's fused GELU-dropout: a cheap mask must still be dropout (rate, scale, gradient, randomness)."""
import math

import pytest
import torch
import torch.nn.functional as F

from fusemix.adapter import Adapter
from fusemix.dropout import GeluDropout, gelu_dropout, keep_levels, scaled_mask


def keep_mask(shape, p, generator=None):
    """Where the fused dropout keeps an element: the non-zero entries of its multiplier."""
    return scaled_mask(shape, p, torch.float32, generator=generator) != 0


@pytest.mark.parametrize("p", [0.1, 0.6, 0.9])
def test_keep_rate_matches_p_in_every_slice_of_a_random_word(p):
    torch.manual_seed(0)
    n = 1 << 22
    mask = keep_mask((n,), p)
    keep = 1 - p
    sigma = math.sqrt(keep * (1 - keep) / (n // 4))
    # Each 64-bit word feeds four neighbours: a slice with a stuck or missing bit (e.g. the sign
    # bit of a non-full-range draw) would shift that slice's rate by far more than 6 sigma.
    for k in range(4):
        assert abs(mask[k::4].float().mean().item() - keep) < 6 * sigma, k
    assert abs(keep_levels(p) / 65536 - keep) <= 0.5 / 65536


def test_neighbours_are_independent():
    torch.manual_seed(1)
    mask = keep_mask((1 << 22,), 0.6).float()
    both = (mask[:-1] * mask[1:]).mean().item()
    keep = mask.mean().item()
    assert abs(both - keep * keep) < 0.002  # 0.16 if independent; 0.4 if neighbours were copies


SCALE = 65536 / keep_levels(0.6)


def test_output_is_zero_or_scaled_gelu_and_unbiased():
    torch.manual_seed(2)
    h = torch.randn(512, 1024)
    y = gelu_dropout(h, 0.6)
    kept = y != 0  # gelu(h) == 0 only at h == 0
    torch.testing.assert_close(y[kept], F.gelu(h)[kept] * SCALE)
    assert abs(kept.float().mean().item() - 0.4) < 0.005
    big = torch.rand(512, 1024) + 0.5
    assert abs(gelu_dropout(big, 0.6).mean().item() / F.gelu(big).mean().item() - 1) < 0.01


def test_gradient_is_gelu_gradient_times_mask():
    torch.manual_seed(3)
    h = torch.randn(64, 300, requires_grad=True)
    y = gelu_dropout(h, 0.6)
    g = torch.randn_like(y)
    y.backward(g)
    ref = h.detach().clone().requires_grad_()
    (F.gelu(ref) * ((y != 0) * SCALE)).backward(g)
    torch.testing.assert_close(h.grad, ref.grad)


def test_matches_torch_gelu_dropout_in_distribution():
    """Per element, the same mean and drop rate as nn.Sequential(GELU, Dropout) over many draws."""
    torch.manual_seed(4)
    n = 4096
    h = torch.randn(1, 256).expand(n, 256).contiguous()
    ours = gelu_dropout(h, 0.6)
    theirs = torch.nn.Sequential(torch.nn.GELU(), torch.nn.Dropout(0.6))(h)
    # Both means estimate gelu(h); each draw has std |gelu(h)| * sqrt(0.6 * 0.4) / 0.4.
    sigma = math.sqrt(2 / n) * F.gelu(h[0]).abs() * math.sqrt(0.24) / 0.4
    assert ((ours.mean(0) - theirs.mean(0)).abs() <= 5 * sigma + 1e-6).all()
    rate_sigma = math.sqrt(2 * 0.24 / n)
    assert ((ours == 0).float().mean(0) - (theirs == 0).float().mean(0)).abs().max() < 5 * rate_sigma


def test_bf16_input_keeps_its_dtype():
    torch.manual_seed(5)
    h = torch.full((32, 64), 3.0, dtype=torch.bfloat16)
    y = gelu_dropout(h, 0.5)
    assert y.dtype == torch.bfloat16
    assert set(y.unique().tolist()) <= {0.0, (F.gelu(h) * 2).unique().item()}


def test_seeded_masks_repeat_and_unseeded_differ():
    torch.manual_seed(6)
    a = keep_mask((1000,), 0.6)
    b = keep_mask((1000,), 0.6)
    torch.manual_seed(6)
    assert torch.equal(keep_mask((1000,), 0.6), a)
    assert not torch.equal(a, b)
    state = torch.get_rng_state()
    c = keep_mask((7, 9), 0.3)
    torch.set_rng_state(state)  # what --resume restores
    assert torch.equal(keep_mask((7, 9), 0.3), c)


def test_a_large_mask_depends_on_the_seed_not_on_the_thread_count():
    """Above 1 MB of random words the draw is split into chunks filled in parallel (dropout.py)."""
    from fusemix.dropout import _CHUNK_WORDS

    shape = (4 * (3 * _CHUNK_WORDS + 5),)  # three full chunks and a ragged one
    threads = torch.get_num_threads()
    try:
        masks = []
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            masks.append(keep_mask(shape, 0.6, generator=torch.Generator().manual_seed(11)))
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(masks[0], masks[1]) and torch.equal(masks[0], masks[2])
    gen = torch.Generator().manual_seed(11)
    keep_mask(shape, 0.6, generator=gen)
    assert not torch.equal(keep_mask(shape, 0.6, generator=gen), masks[0])  # the generator moved on
    chunks = masks[0].float().split(4 * _CHUNK_WORDS)
    assert len(chunks) == 4
    for a in chunks[:3]:  # every chunk has its own stream: no chunk repeats another
        assert abs(a.mean().item() - 0.4) < 0.01
        for b in chunks[:3]:
            if a is not b:
                assert abs((a * b).mean().item() - 0.16) < 0.01  # 0.4 if two chunks were the same draw


def test_eval_and_zero_p_are_plain_gelu_and_bad_p_is_refused():
    x = torch.randn(8, 8)
    torch.testing.assert_close(gelu_dropout(x, 0.6, training=False), F.gelu(x))
    torch.testing.assert_close(gelu_dropout(x, 0.0), F.gelu(x))
    module = GeluDropout(0.6).eval()
    torch.testing.assert_close(module(x), F.gelu(x))
    for p in (-0.1, 1.0, 1.5):
        with pytest.raises(ValueError, match="dropout probability"):
            GeluDropout(p)
        with pytest.raises(ValueError, match="dropout probability"):
            gelu_dropout(x, p)


def test_adapter_drops_in_train_mode_only():
    torch.manual_seed(7)
    adapter = Adapter(16, 8, depth=2, dropout=0.6)
    x = torch.randn(4, 16)
    adapter.train()
    assert not torch.equal(adapter(x), adapter(x))
    adapter.eval()
    assert torch.equal(adapter(x), adapter(x))
    assert list(adapter.state_dict()) == list(Adapter(16, 8, depth=2, dropout=0.0).state_dict())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_scaled_mask_is_zero_or_the_exact_inverse_keep_rate_in_any_dtype(dtype):
    shape = (33, 70)
    mask = keep_mask(shape, 0.6, generator=torch.Generator().manual_seed(8))
    scaled = scaled_mask(shape, 0.6, dtype, generator=torch.Generator().manual_seed(8))
    assert scaled.dtype == dtype and 0 < mask.sum() < mask.numel()
    torch.testing.assert_close(scaled, (mask * SCALE).to(dtype))  # the same draw in every dtype


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (benchmarks/gpu_check.sh)")
def test_cuda_path_is_dropout_of_gelu_with_its_gradient():
    """On CUDA the module is F.gelu + F.dropout: zero or gelu/keep, rate p, gradient through the same mask."""
    torch.manual_seed(4)
    h = torch.randn(1024, 2048, device="cuda", requires_grad=True)
    y = GeluDropout(0.6).train()(h)
    kept = y != 0
    assert y.device.type == "cuda"
    torch.testing.assert_close(y[kept], F.gelu(h.detach())[kept] / 0.4)
    assert abs(kept.float().mean().item() - 0.4) < 0.005
    g = torch.randn_like(y)
    y.backward(g)
    ref = h.detach().clone().requires_grad_()
    (F.gelu(ref) * (kept / 0.4)).backward(g)
    torch.testing.assert_close(h.grad, ref.grad)
