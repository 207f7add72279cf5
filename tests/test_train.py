"""train.py end to end on synthetic latents: it learns, FuseMix helps with few pairs, resume is exact."""
import errno
import json

import pytest
import torch
from safetensors.torch import load_file

import train
from fusemix.latents import LatentPairs, save_latent_pairs
from fusemix.model import FusionModel
from synthetic import make_pairs

SMALL = ["--proj_dim", "32", "--depth", "2", "--expansion", "2", "--warmup_steps", "10", "--no-progress"]


def _write(tmp_path, pairs, name="pairs.safetensors"):
    return str(save_latent_pairs(tmp_path / name, pairs))


def test_learns_retrieval_from_chance(tmp_path):
    f = _write(tmp_path, make_pairs(1100, seed=0))
    out = tmp_path / "run"
    res = train.main(["--latents", f, "--out", str(out), "--epochs", "12", "--batch_size", "100", "--lr", "2e-3",
                      "--dropout", "0.1", "--heldout_fraction", str(100 / 1100), "--eval_every", "4", *SMALL])
    evals = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines() if '"eval"' in l]
    assert evals[-1]["i2t_R@1"] >= 0.8 and evals[-1]["t2i_R@1"] >= 0.8  # chance is 1/100
    assert res["best_metric"] >= 0.8
    assert (out / "metrics.png").stat().st_size > 10_000
    assert json.loads((out / "train_config.json").read_text())["batch_size"] == 100
    # The kept checkpoint is an inference model that loads on its own and states its encoders.
    best = out / json.loads((out / "latest.json").read_text())["checkpoint"]
    model = FusionModel.from_pretrained(best)
    assert model.config.modalities["image"].encoder == "synthetic-x"
    assert json.loads((best / "trainer_state.json").read_text())["config"]["epochs"] == 12


def test_fusemix_beats_no_mixing_with_few_pairs(tmp_path):
    """64 training pairs, adapters big enough to overfit: mixing must help on average over seeds."""
    scores = {0.0: [], 1.0: []}
    for seed in range(3):
        f = _write(tmp_path, make_pairs(264, seed=seed), f"p{seed}.safetensors")
        for alpha in scores:
            r = train.main(["--latents", f, "--out", str(tmp_path / f"r{seed}-{alpha}"), "--epochs", "200",
                            "--batch_size", "32", "--lr", "1e-3", "--dropout", "0.0", "--depth", "4",
                            "--heldout_fraction", str(200 / 264), "--eval_every", "1000", "--save_every", "1000",
                            "--mixup_alpha", str(alpha), "--seed", str(seed),
                            "--proj_dim", "32", "--warmup_steps", "10", "--no-progress"])
            scores[alpha].append(r["best_metric"])
    mean = {a: sum(v) / len(v) for a, v in scores.items()}
    assert mean[1.0] > mean[0.0] + 0.03, scores


def _weights(run):
    ckpt = run / json.loads((run / "latest.json").read_text())["checkpoint"]
    return load_file(str(ckpt / "model.safetensors")), load_file(str(ckpt / "optimizer.safetensors"))


@pytest.mark.parametrize("scheme", ["permutation", "half"])
def test_resume_is_bit_for_bit(tmp_path, scheme):
    f = _write(tmp_path, make_pairs(300, seed=1))
    common = ["--latents", f, "--epochs", "4", "--batch_size", "40", "--dropout", "0.3", "--mixup_alpha", "1.0",
              "--mix_scheme", scheme, "--heldout_fraction", "0.1", "--eval_every", "2", *SMALL]
    straight, split = tmp_path / "straight", tmp_path / "split"
    train.main(common + ["--out", str(straight)])
    first = train.main(common + ["--out", str(split), "--max_steps", "9"])  # stops mid-epoch
    assert first["step"] == 9
    train.main(common + ["--out", str(split), "--resume"])
    (wa, oa), (wb, ob) = _weights(straight), _weights(split)
    assert wa.keys() == wb.keys() and oa.keys() == ob.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    for k in oa:
        assert torch.equal(oa[k], ob[k]), k


def test_failed_checkpoint_write_keeps_previous(tmp_path, monkeypatch):
    f = _write(tmp_path, make_pairs(200, seed=2))
    out = tmp_path / "run"
    common = ["--latents", f, "--out", str(out), "--epochs", "4", "--batch_size", "50", "--heldout_fraction", "0",
              "--save_every", "1", *SMALL]
    train.main(common + ["--max_steps", "4"])
    before = json.loads((out / "latest.json").read_text())
    saved = _weights(out)[0]

    import fusemix.io

    def disk_full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fusemix.io, "save_file", disk_full)
    with pytest.raises(OSError, match="No space left"):
        train.main(common + ["--resume"])
    assert json.loads((out / "latest.json").read_text()) == before
    after = _weights(out)[0]
    assert all(torch.equal(saved[k], after[k]) for k in saved)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no half-written leftovers


@pytest.mark.parametrize("args,match", [
    (["--batch_size", "500"], "between 2 and the"),
    (["--mix_scheme", "zigzag"], "mix_scheme"),
    (["--model", "three_tower"], "two_tower or bridge"),
    (["--freeze", "audio"], "no such adapter"),
])
def test_bad_config_fails_before_writing(tmp_path, args, match):
    f = _write(tmp_path, make_pairs(100))
    out = tmp_path / "run"
    with pytest.raises(ValueError, match=match):
        train.main(["--latents", f, "--out", str(out), "--epochs", "1", "--batch_size", "20", *SMALL, *args])
    assert not (out / "latest.json").exists()


def test_nan_latents_refused(tmp_path):
    p = make_pairs(50)
    x = p.x.clone()
    x[3, 0] = float("nan")
    path = tmp_path / "nan.safetensors"
    from safetensors.torch import save_file

    save_file({"x": x, "y": p.y}, str(path))
    with pytest.raises(ValueError, match="NaN"):
        train.main(["--latents", str(path), "--out", str(tmp_path / "run"), *SMALL])


def test_anchor_training_keeps_frozen_adapter(tmp_path):
    """A third modality trained against a frozen text adapter lands in the same space."""
    base = tmp_path / "image_text"
    f = _write(tmp_path, make_pairs(300, seed=3))
    train.main(["--latents", f, "--out", str(base), "--epochs", "2", "--batch_size", "50", "--heldout_fraction", "0", *SMALL])
    ckpt = base / json.loads((base / "latest.json").read_text())["checkpoint"]
    audio = make_pairs(300, seed=4, x_dim=20, modalities=("audio", "text"))
    g = _write(tmp_path, audio, "audio.safetensors")
    run = tmp_path / "audio_text"
    train.main(["--latents", g, "--out", str(run), "--epochs", "2", "--batch_size", "50", "--heldout_fraction", "0",
                "--init_from", str(ckpt), "--freeze", "text", *SMALL])
    before, after = FusionModel.from_pretrained(ckpt), FusionModel.from_pretrained(run / json.loads((run / "latest.json").read_text())["checkpoint"])
    assert set(after.modalities) == {"image", "text", "audio"}
    t = torch.randn(4, 24)
    assert torch.equal(before.embed("text", t), after.embed("text", t))  # the anchor did not move
    x = torch.randn(4, 32)
    assert torch.equal(before.embed("image", x), after.embed("image", x))  # untouched: not in this latent file


def test_rerun_without_checkpoint_logs_each_step_once(tmp_path):
    """A run killed before its first checkpoint leaves log rows; the rerun must not log those steps twice."""
    f = _write(tmp_path, make_pairs(100, seed=6))
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.jsonl").write_text('{"kind": "train", "step": 1, "loss": 9.0}\n{"kind": "train", "step": 2, "lo')
    train.main(["--latents", f, "--out", str(out), "--epochs", "1", "--batch_size", "20", "--log_every", "1",
                "--heldout_fraction", "0", "--resume", *SMALL])
    steps = [json.loads(l)["step"] for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5]
    assert json.loads((out / "metrics.jsonl").read_text().splitlines()[0])["loss"] != 9.0


def test_tf32_flag_is_saved_and_changes_nothing_on_cpu(tmp_path):
    """--tf32 is a CUDA setting: on CPU the run is bit-identical, and no global precision is touched."""
    f = _write(tmp_path, make_pairs(120, seed=4))
    common = ["--latents", f, "--epochs", "1", "--batch_size", "40", "--heldout_fraction", "0", "--device", "cpu",
              *SMALL]
    before = (torch.get_float32_matmul_precision(), torch.backends.cuda.matmul.fp32_precision)
    train.main(common + ["--out", str(tmp_path / "plain")])
    train.main(common + ["--out", str(tmp_path / "tf32"), "--tf32"])
    assert (torch.get_float32_matmul_precision(), torch.backends.cuda.matmul.fp32_precision) == before
    assert json.loads((tmp_path / "tf32" / "train_config.json").read_text())["tf32"] is True
    assert json.loads((tmp_path / "plain" / "train_config.json").read_text())["tf32"] is False
    (wa, _), (wb, _) = _weights(tmp_path / "plain"), _weights(tmp_path / "tf32")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.mark.parametrize("native", [False, True])
def test_bf16_warns_where_it_is_emulated(tmp_path, monkeypatch, capsys, native):
    """--bf16 on a CPU without bf16 units says, once and on stderr, that it is many times slower."""
    monkeypatch.setattr(train, "bf16_is_native", lambda device: native)
    f = _write(tmp_path, make_pairs(80, seed=5))
    train.main(["--latents", f, "--out", str(tmp_path / "run"), "--epochs", "1", "--batch_size", "40",
                "--heldout_fraction", "0", "--device", "cpu", "--bf16", *SMALL])
    err = capsys.readouterr().err
    if native:
        assert "bf16" not in err
    else:
        assert err.count("many times slower than fp32") == 1 and "drop --bf16" in err


def test_training_steps_are_immune_to_another_thread_reseeding_the_global_rng(tmp_path, monkeypatch):
    """An app trains beside background jobs (stand-in builds, bridge fits) that seed torch's global RNG;
    the dropout masks of a step must not depend on them, or a resumed run would not match a straight one."""
    import threading

    lat = tmp_path / "pairs.safetensors"
    save_latent_pairs(lat, make_pairs(200, seed=2))
    args = ["--latents", str(lat), "--epochs", "3", "--batch_size", "50", "--heldout_fraction", "0",
            "--dropout", "0.3", *SMALL]

    def final(out):
        train.main([*args, "--out", str(out)])
        ckpt = json.loads((out / "latest.json").read_text())["checkpoint"]
        return load_file(str(out / ckpt / "model.safetensors"))

    quiet = final(tmp_path / "quiet")
    stop = threading.Event()

    def reseed():
        while not stop.is_set():
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                torch.rand(8)

    build = train.build_model
    busy = threading.Thread(target=reseed, daemon=True)
    monkeypatch.setattr(train, "build_model", lambda *a, **k: (build(*a, **k), busy.start())[0])  # after init
    try:
        noisy = final(tmp_path / "noisy")
    finally:
        stop.set()
        busy.join()
    assert quiet.keys() == noisy.keys() and all(torch.equal(quiet[k], noisy[k]) for k in quiet)


def test_the_kept_checkpoint_has_the_lowest_held_out_infonce_where_r1_saturates(tmp_path):
    """A small held-out slice ranks every partner first for most of a run: R@1 ties and cannot choose
    (keeping the first of equals had kept a barely trained model). The held-out InfoNCE at a fixed
    temperature still separates the checkpoints, and the one it scores best is the one kept."""
    from fusemix.train_state import kept_checkpoint

    out = tmp_path / "run"
    train.main(["--latents", _write(tmp_path, make_pairs(240, seed=0, noise=0.01)), "--out", str(out),
                "--heldout_fraction", "0.1", "--epochs", "150", "--no-progress"])
    evals = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if '"eval"' in line]
    top = max(e["mean_R@1"] for e in evals)
    tied = [e for e in evals if e["mean_R@1"] == top]
    assert len(tied) >= 2, evals  # the situation this is about: several evaluations share the best R@1
    assert len({e["infonce"] for e in tied}) == len(tied)  # ... which the loss tells apart
    best = min(e["infonce"] for e in evals)
    kept = kept_checkpoint(out)
    assert kept.name == f"ckpt-{max(e['step'] for e in evals if e['infonce'] == best):09d}"
    assert FusionModel.from_pretrained(kept).config.modalities  # and it is a loadable model