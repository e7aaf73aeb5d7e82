"""UNIT model: shapes, weight sharing, losses, gradients (the model only; trainer to come)."""

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
