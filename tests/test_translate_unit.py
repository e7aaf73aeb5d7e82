"""UNIT model: shapes, weight sharing, losses, gradients (the model only; trainer to come)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edgeconv.errors import EdgeconvError  # noqa: E402
from edgeconv.translate.unit import UNIT, UNITConfig, optimizers, train_step  # noqa: E402

SMALL = dict(width=8, n_down=2, n_res=4, dis_layers=3)


def _batch(n=2, size=16):
    g = torch.Generator().manual_seed(0)
    return (torch.rand(n, 3, size, size, generator=g) * 2 - 1,
            torch.rand(n, 1, size, size, generator=g) * 2 - 1)


def test_every_subnetwork_forward_shapes():
    m = UNIT(UNITConfig(**SMALL))
    x_a, x_b = _batch()
    z_a, z_b = m.enc_a(x_a), m.enc_b(x_b)
    assert z_a.shape == z_b.shape == (2, 32, 4, 4)             # width x 2^n_down, /4 spatial
    assert m.gen_a(z_b).shape == x_a.shape and m.gen_b(z_a).shape == x_b.shape
    assert m.translate_ab(x_a).shape == x_b.shape and m.translate_ba(x_b).shape == x_a.shape
    assert m.dis_a(x_a).shape == (2, 1, 2, 2) and m.dis_b(x_b).shape == (2, 1, 2, 2)
    with torch.no_grad():
        assert float(m.translate_ab(x_a).abs().max()) <= 1.0   # tanh output


@pytest.mark.parametrize("shared", [1, 2, 3, 4])
def test_shared_layers_are_the_same_parameters(shared):
    m = UNIT(UNITConfig(**SMALL, shared=shared))
    assert len(m.enc_a.shared) == len(m.gen_b.shared) == shared
    assert len(m.enc_a.private) == 4 - shared
    for i in range(shared):
        assert m.enc_a.shared[i].conv1.weight is m.enc_b.shared[i].conv1.weight
        assert m.gen_a.shared[i].conv2.weight is m.gen_b.shared[i].conv2.weight
    assert m.enc_a.front[0].weight is not m.enc_b.front[0].weight   # front ends private
    if shared < 4:
        assert m.enc_a.private[0].conv1.weight is not m.enc_b.private[0].conv1.weight
    # the optimizer sees each shared parameter once
    ids = [id(p) for p in m.generator_parameters()]
    assert len(ids) == len(set(ids))
    n_unique = sum(p.numel() for p in m.generator_parameters())
    n_naive = sum(p.numel() for mod in (m.enc_a, m.enc_b, m.gen_a, m.gen_b)
                  for p in mod.parameters())
    per_block = sum(p.numel() for p in m.enc_a.shared[0].parameters())
    assert n_naive - n_unique == 2 * shared * per_block


def test_a_shared_block_learns_from_both_domains():
    m = UNIT(UNITConfig(**SMALL))
    x_a, x_b = _batch()
    m.enc_a(x_a).sum().backward()
    g_a = m.enc_a.shared[0].conv1.weight.grad.clone()
    m.zero_grad()
    m.enc_b(x_b).sum().backward()
    assert m.enc_b.shared[0].conv1.weight.grad is not None
    assert m.enc_a.shared[0].conv1.weight.grad is m.enc_b.shared[0].conv1.weight.grad
    assert not torch.equal(g_a, m.enc_a.shared[0].conv1.weight.grad)


@pytest.mark.parametrize("cycle", [True, False])
def test_losses_and_gradients(cycle):
    torch.manual_seed(0)
    m = UNIT(UNITConfig(**SMALL, cycle=cycle))
    x_a, x_b = _batch()
    loss, parts = m.generator_loss(x_a, x_b)
    assert set(parts) == ({"recon", "kl", "gan", "cycle", "cycle_kl"} if cycle
                          else {"recon", "kl", "gan"})
    assert torch.isfinite(loss) and all(v >= 0 for v in parts.values())
    loss.backward()
    missing = [n for n, p in m.named_parameters()
               if not n.startswith("dis_") and (p.grad is None or not p.grad.abs().sum() > 0)]
    assert missing == []                                      # every enc/gen weight is trained
    m.zero_grad()
    m.discriminator_loss(x_a, x_b).backward()
    assert all(p.grad is None for n, p in m.named_parameters() if not n.startswith("dis_"))
    assert all(p.grad is not None for p in m.discriminator_parameters())


def test_train_steps_run_and_fit_the_reconstruction():
    torch.manual_seed(0)
    m = UNIT(UNITConfig(**SMALL, lr=1e-3))
    opt_g, opt_d = optimizers(m)
    assert opt_g.defaults["betas"] == (0.5, 0.999)
    x_a, x_b = _batch(n=4)
    first = train_step(m, opt_g, opt_d, x_a, x_b)
    for _ in range(30):
        last = train_step(m, opt_g, opt_d, x_a, x_b)
    assert all(v == v for v in last.values())                # finite (no NaN)
    assert last["recon"] < first["recon"]                    # the VAE streams learn


def test_paper_defaults_and_bad_configs():
    c = UNITConfig()
    assert (c.lambda_gan, c.lambda_kl, c.lambda_recon, c.lambda_cycle_kl, c.lambda_cycle) == \
        (10.0, 0.1, 100.0, 0.1, 100.0)
    assert c.lr == 1e-4 and tuple(c.betas) == (0.5, 0.999) and c.shared == 1 and c.cycle
    for bad in (dict(shared=0), dict(shared=5), dict(width=0)):
        with pytest.raises(EdgeconvError):
            UNIT(UNITConfig(**bad))


# ----------------------------------------------------------------------------- trainer
TINY = dict(unit=dict(width=4, n_down=2, n_res=2, shared=1, dis_layers=2), identities=4,
            images_per_identity=2, size=16, epochs=2, batch_size=4)


def test_domains_are_unpaired_disjoint_and_shaped():
    from edgeconv.translate.train import TranslateConfig, domain_images

    a, b = domain_images(TranslateConfig(**TINY))
    assert a.shape == (8, 3, 16, 16) and b.shape == (8, 1, 16, 16)
    assert a.min() >= -1 and a.max() <= 1 and b.min() >= -1 and b.max() <= 1
    # B holds other people: no B image is the NIR view of an A image
    from edgeconv.data.synthetic import SyntheticFaces

    nir = SyntheticFaces(8, 2, size=16, seed=0, sensor="nir")
    pair = nir.render_batch([0], [0])[0, :, :, 0].astype(np.float32) / 127.5 - 1
    assert all(not np.allclose(pair, bb[0]) for bb in b)


def test_resume_is_exact(tmp_path):
    from edgeconv.translate.train import TranslateConfig, load_translate_checkpoint, \
        translate_train

    logs = []
    full = translate_train(TranslateConfig(**TINY, output=str(tmp_path / "full")),
                           log=logs.append)
    assert full["epochs_done"] == 2 and any(ln.startswith("epoch 2/2") for ln in logs)
    part = translate_train(TranslateConfig(**TINY, output=str(tmp_path / "part")),
                           log=lambda m: None, stop_after=1)
    assert part["epochs_done"] == 1
    translate_train(resume=tmp_path / "part", log=logs.append)
    assert any("resuming from" in ln and "(epoch 1)" in ln for ln in logs)
    a = load_translate_checkpoint(tmp_path / "full" / "last.ckpt")
    b = load_translate_checkpoint(tmp_path / "part" / "last.ckpt")
    assert a["epoch"] == b["epoch"] == 2
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    with pytest.raises(EdgeconvError, match="already holds a translation run"):
        translate_train(TranslateConfig(**TINY, output=str(tmp_path / "full")))


def test_translation_checkpoint_refuses_other_files(tmp_path):
    from edgeconv.translate.train import load_translate_checkpoint

    (tmp_path / "x.ckpt").write_text("not a checkpoint")
    with pytest.raises(EdgeconvError, match="translation checkpoint"):
        load_translate_checkpoint(tmp_path / "x.ckpt")
    torch.save({"format": "something else"}, tmp_path / "y.ckpt")
    with pytest.raises(EdgeconvError, match="not an edgeconv translation checkpoint"):
        load_translate_checkpoint(tmp_path / "y.ckpt")


def test_cli_translate_train_then_translate(tmp_path):
    from edgeconv.data.images import load_image, save_image
    from edgeconv.data.synthetic import SyntheticFaces
    from tests.test_cli import run_cli

    run = tmp_path / "run"
    res = run_cli("translate-train", "-o", run, "--identities", "4", "--images-per-identity",
                  "2", "--size", "16", "--epochs", "1", "--batch-size", "4", "--width", "4")
    assert res.returncode == 0, res.stderr
    assert "epoch 1/1" in res.stdout and f"-> {run / 'last.ckpt'}" in res.stdout
    nir = SyntheticFaces(4, 1, size=16, seed=9, sensor="nir").render(0, 0)
    src = save_image(tmp_path / "probe.png", nir)
    res = run_cli("translate", run / "last.ckpt", src, "-o", tmp_path / "out")
    assert res.returncode == 0, res.stderr
    out = load_image(tmp_path / "out" / "probe_nir2rgb.png")
    assert out.shape == (16, 16, 3)
    res = run_cli("translate", run / "last.ckpt", tmp_path / "missing.png", "-o", tmp_path / "o2")
    assert res.returncode == 2 and "not found" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "o2").exists()


def test_metrics_against_known_values():
    from edgeconv.translate.metrics import l1, psnr, ssim

    a = np.random.default_rng(0).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    assert l1(a, a).tolist() == [0.0, 0.0] and np.isinf(psnr(a, a)).all()
    np.testing.assert_allclose(ssim(a, a), 1.0)
    b = np.clip(a.astype(int) + 10, 0, 255).astype(np.uint8)
    assert 0 < l1(a, b).mean() <= 10
    noisy = np.clip(a + np.random.default_rng(1).normal(0, 40, a.shape), 0, 255).astype(np.uint8)
    assert ssim(a, noisy).mean() < ssim(a, b).mean() < 1.0
    flat = np.full_like(a, 128)
    expect = 10 * np.log10(255.0 ** 2 / ((a.astype(float) - 128) ** 2).mean(axis=(1, 2, 3)))
    np.testing.assert_allclose(psnr(a, flat), expect)
    with pytest.raises(EdgeconvError):
        l1(a, a[:1])


def test_evaluate_translation_scores_truth_and_baseline():
    from edgeconv.translate.metrics import evaluate_translation

    r = evaluate_translation(lambda x: x, size=24, n=4)           # identity "translation"
    # the NIR input is already grey: copying it is exactly the grey-copy baseline
    assert r["translation"] == pytest.approx(r["baseline"])
    assert r["translation"]["l1"] > 0                             # and it is not the RGB truth
    assert set(r["translation"]) == {"l1", "psnr", "ssim"}
    # an oracle that returns the ground truth scores perfectly
    from edgeconv.data.synthetic import SyntheticFaces
    from edgeconv.translate.metrics import EVAL_IDENTITY_OFFSET

    truth = SyntheticFaces(1, 1, size=24, seed=0).render_batch(
        np.arange(4) + EVAL_IDENTITY_OFFSET, np.zeros(4, int))
    r = evaluate_translation(lambda x: truth, size=24, n=4)
    assert r["translation"]["l1"] == 0 and r["translation"]["ssim"] == pytest.approx(1.0)
    assert r["baseline"]["l1"] > 0
