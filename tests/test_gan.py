"""The LIS face GAN (issue #27): LIS module, similarity constraint, early stops, exact resume,
a tiny run end to end through the CLI, precision/recall/FID, generator export parity in both
runtimes and the generator-impostor unlock trial without torch."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parent.parent
TINY = {"size": 64, "lis_modules": 3, "width": 1 / 32}


def _tiny_cfg(out, **kw):
    from edgeconv.gan.train import GanTrainConfig

    d = dict(gan=dict(TINY), identities=8, images_per_identity=4, epochs=2, reverser_epochs=1,
             batch_size=16, output=str(out))
    d.update(kw)
    return GanTrainConfig(**d)


def _quiet(*a, **k):
    pass


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    from edgeconv.gan.train import gan_train

    d = tmp_path_factory.mktemp("gan")
    torch.set_num_threads(1)
    return Path(gan_train(_tiny_cfg(d / "run"), log=_quiet)["last"])


@pytest.fixture(scope="module")
def generator_onnx(tiny_ckpt, tmp_path_factory):
    from edgeconv.export.generator import export_generator

    d = tmp_path_factory.mktemp("genx")
    export_generator(tiny_ckpt, formats="onnx", output_dir=d, echo=_quiet)
    return d / f"{tiny_ckpt.stem}_generator.onnx"


# ----------------------------------------------------------------------------- LIS
def test_lis_module_shapes_and_small_initial_residual():
    from edgeconv.gan.lis import LISModule

    torch.manual_seed(0)
    m = LISModule(256)
    z = torch.randn(64, 256)
    out = m(z)
    assert out.shape == z.shape
    rel = ((out - z).norm(dim=1) / z.norm(dim=1)).mean().item()
    assert 1e-4 < rel < 0.05                        # FC2's scale starts at 0.01


def test_tprelu_threshold_and_clamped_slope():
    from edgeconv.gan.lis import TPReLU

    t = TPReLU(2)
    with torch.no_grad():
        t.threshold.copy_(torch.tensor([1.0, -1.0]))
        t.weight.copy_(torch.tensor([2.0, -3.0]))   # used as 1 and 0
    x = torch.tensor([[0.0, -2.0], [3.0, 0.5]])
    assert torch.allclose(t(x), torch.tensor([[0.0, -1.0], [3.0, 0.5]]))


def test_similarity_constraint_weights_against_the_original_z():
    from edgeconv.gan.lis import similarity_loss, similarity_weights

    assert similarity_weights(3) == pytest.approx([0.9, 0.81, 0.729])
    z = torch.zeros(4, 8)
    zs = [z + 1, z + 2, z + 3]                       # MSEs 1, 4, 9 against the ORIGINAL z
    assert similarity_loss(zs, z).item() == pytest.approx(0.9 + 0.81 * 4 + 0.729 * 9)
    assert similarity_loss(zs[:1], z, lam=0.5).item() == pytest.approx(0.5)
    assert similarity_loss([], z).item() == 0.0


def test_early_stop_probabilities_measured_over_many_draws():
    from edgeconv.gan.lis import sample_stop, stop_distribution

    assert stop_distribution(3) == pytest.approx([1 / 8, 7 / 32, 21 / 64, 21 / 64])
    assert stop_distribution(1) == pytest.approx([1 / 2, 1 / 2])
    assert stop_distribution(0) == [1.0]
    rng = np.random.default_rng(0)
    n = 40000
    ks = np.array([sample_stop(3, rng.random) for _ in range(n)])
    freq = np.bincount(ks, minlength=4) / n
    assert np.abs(freq - stop_distribution(3)).max() < 0.01
    for i, p in enumerate((1 / 8, 1 / 4, 1 / 2)):   # stop before module i | reached it
        reached = (ks >= i).sum()
        assert abs((ks == i).sum() / reached - p) < 0.015
    torch.manual_seed(0)                             # the default draw: torch's global RNG
    assert {sample_stop(3) for _ in range(200)} == {0, 1, 2, 3}


def test_models_at_64_and_80():
    from edgeconv.gan.models import GAN, GANConfig

    for size in (64, 80):
        gan = GAN(GANConfig(size=size, lis_modules=1, width=1 / 16, reverser=True))
        z = torch.randn(2, 256)
        x = gan.G(z)
        assert x.shape == (2, 3, size, size) and 0 <= x.min() and x.max() <= 1
        assert gan.D(x).shape == (2, 1) and gan.R(x).shape == (2, 256)
        assert gan.sample(z, reverse=True).shape == x.shape
    full = GAN(GANConfig(size=80, lis_modules=0))
    assert full.G.fc.v.shape == (512 * 25, 256)      # FC 256 -> 5x5x512
    assert [m.v.shape[1] for m in full.G.up if hasattr(m, "v")] == [256, 128, 64, 3]
    assert [m.v.shape[0] for m in full.D.body if hasattr(m, "v")] == [64, 128, 256, 512]
    assert full.D.head.v.shape == (1, 512, 5, 5)


# ----------------------------------------------------------------------------- training
def test_exact_resume_is_bit_identical(tmp_path):
    """2 epochs + 1 reverser epoch straight vs 1 epoch, then resume: identical weights."""
    from edgeconv.gan.train import gan_train, load_gan_checkpoint

    torch.set_num_threads(1)
    a = gan_train(_tiny_cfg(tmp_path / "a"), log=_quiet)
    gan_train(_tiny_cfg(tmp_path / "b"), log=_quiet, stop_after=1)
    b = gan_train(resume=tmp_path / "b", log=_quiet)
    assert a["epochs_done"] == b["epochs_done"] == 3
    sa, sb = (load_gan_checkpoint(p["last"])["state_dict"] for p in (a, b))
    assert sa.keys() == sb.keys() and any(k.startswith("R.") for k in sa)
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    ha = json.loads((tmp_path / "a" / "history.json").read_text())
    hb = json.loads((tmp_path / "b" / "history.json").read_text())
    assert [h["gen"] for h in ha[:2]] == [h["gen"] for h in hb[:2]]
    assert ha[2]["phase"] == "reverser"
    assert sorted(p.name for p in (tmp_path / "b").glob("grid_e*.png")) == [
        "grid_e001.png", "grid_e002.png", "grid_e003.png"]


def test_refuses_to_overwrite_a_run(tmp_path, tiny_ckpt):
    from edgeconv.errors import EdgeconvError
    from edgeconv.gan.train import gan_train

    with pytest.raises(EdgeconvError, match="already holds a GAN run"):
        gan_train(_tiny_cfg(tiny_ckpt.parent), log=_quiet)


def test_tiny_gan_end_to_end_through_the_cli(tmp_path):
    from click.testing import CliRunner

    from edgeconv.cli import cli

    sys.path.insert(0, str(ROOT))
    from tests import _unlock_models as TM

    r = CliRunner().invoke(cli, ["gan-train", "-o", str(tmp_path / "run"), "--size", "64",
                                 "--lis-modules", "1", "--width", "0.03125", "--identities", "8",
                                 "--images-per-identity", "4", "--epochs", "1",
                                 "--batch-size", "16", "--threads", "1"])
    assert r.exit_code == 0, r.output
    assert "epoch 1/1" in r.output and "grid_e001.png" in r.output
    from PIL import Image

    grid = Image.open(tmp_path / "run" / "grid_e001.png")
    assert grid.size == (8 * 66 + 2, 8 * 66 + 2)
    r = CliRunner().invoke(cli, ["gan-export", str(tmp_path / "run" / "last.ckpt"),
                                 "--format", "onnx", "-o", str(tmp_path / "x")])
    assert r.exit_code == 0, r.output
    gen = tmp_path / "x" / "last_generator.onnx"
    face = TM.model_dir() / "face.onnx"
    r = CliRunner().invoke(cli, ["unlock-trial", str(face), "--impostors", str(gen),
                                 "--count", "12", "--users", "3", "--far", "1e-2", "--json"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.output)
    assert rep["generated"]["far_1to1"]["attempts"] == 12 * 3
    assert rep["generated"]["far_1toN"]["attempts"] == 12
    assert rep["synthetic"]["far_1to1"]["attempts"] == 12 * 3
    lo, hi = rep["generated"]["far_1to1"]["clopper_pearson_95"]
    assert 0 <= lo <= rep["generated"]["far_1to1"]["rate"] <= hi <= 1


# ----------------------------------------------------------------------------- metrics
def test_precision_recall_hand_made_cases():
    from edgeconv.gan.metrics import fid, knn_radii, precision_recall

    rng = np.random.default_rng(0)
    real = rng.normal(size=(100, 5))
    assert precision_recall(real, real.copy()) == (1.0, 1.0)
    assert precision_recall(real, real + 100.0) == (0.0, 0.0)
    # half the generated samples on the real manifold, half far away: precision 1/2;
    # the generated set covers the real one (its on-manifold half is real itself)
    fake = np.concatenate([real[:50], real[:50] + 100.0])
    p, r = precision_recall(real, fake)
    assert p == 0.5 and 0.4 < r <= 1.0
    x = np.array([[0.0], [1.0], [3.0], [6.0]])
    assert knn_radii(x, 1).tolist() == [1.0, 1.0, 2.0, 3.0]
    assert abs(fid(real, real)) < 1e-8
    assert fid(real, real + 1.0) == pytest.approx(5.0, rel=1e-6)


def test_pixel_features_and_artifact_rate():
    from edgeconv.gan.metrics import PixelFeatures, artifact_cut, artifact_rate

    imgs = np.random.default_rng(0).integers(0, 256, (5, 64, 64, 3)).astype(np.uint8)
    pf = PixelFeatures()
    th = pf.thumbnails(imgs)
    assert th.shape == (5, 16 * 16 * 3)
    assert th[0, 0] == pytest.approx(imgs[0, :4, :4, 0].mean() / 255)
    assert pf(imgs).shape == (5, 64)
    ref = np.eye(4)
    held = np.eye(4)[[0, 1, 2, 3]]
    cut = artifact_cut(held, ref, q=0.01)
    assert cut == pytest.approx(1.0)
    assert artifact_rate(np.array([[1.0, 0, 0, 0], [0.6, 0.8, 0, 0]]), ref, cut) == 0.5
    from edgeconv.gan.metrics import outlier_cut, outlier_rate

    pcut = outlier_cut(np.array([[0.0], [1.0]]), np.array([[0.0], [0.5]]), q=1.0)
    assert pcut == pytest.approx(0.5)
    assert outlier_rate(np.array([[0.2], [3.0], [0.9]]), np.array([[0.0], [0.5]]), pcut) == 1 / 3


def test_confidence_intervals_known_values():
    from edgeconv.runtime.rates import clopper_pearson, wilson

    lo, hi = clopper_pearson(5, 100)                 # scipy.stats.beta.ppf values
    assert lo == pytest.approx(0.016431879, abs=1e-6) and hi == pytest.approx(0.112834911,
                                                                               abs=1e-6)
    assert clopper_pearson(0, 100) == pytest.approx((0.0, 0.036216693), abs=1e-6)
    assert clopper_pearson(100, 100)[1] == 1.0
    lo, hi = wilson(5, 100)
    assert lo == pytest.approx(0.021543679, abs=1e-6) and hi == pytest.approx(0.111750469,
                                                                              abs=1e-6)


# ----------------------------------------------------------------------------- device side
def test_generator_metadata_validated_and_kinds_kept_apart(generator_onnx):
    from edgeconv.errors import EdgeconvError
    from edgeconv.runtime.embedder import Embedder
    from edgeconv.metadata import MetadataError, validate_metadata

    meta = json.loads((generator_onnx.parent / (generator_onnx.name + ".json")).read_text())
    assert meta["kind"] == "generator" and meta["z_dim"] == 256
    assert meta["lis_modules"] == 3 and meta["image_size"] == [64, 64]
    assert meta["output_range"] == [0.0, 1.0] and meta["macs"] > 0
    validate_metadata(meta, "g")
    for bad in ({"z_dim": 0}, {"image_size": [64]}, {"output_range": [1, 0]}):
        with pytest.raises(MetadataError):
            validate_metadata(dict(meta, **bad), "g")
    with pytest.raises(EdgeconvError, match="face generator"):
        Embedder(generator_onnx)


@pytest.mark.slow
def test_generator_export_parity_in_both_runtimes(tiny_ckpt, tmp_path):
    pytest.importorskip("litert_torch")
    from edgeconv.export.generator import export_generator
    from edgeconv.gan.train import gan_from_checkpoint, load_gan_checkpoint
    from edgeconv.runtime.generator import FaceGenerator, noise

    rep = export_generator(tiny_ckpt, output_dir=tmp_path, echo=_quiet)
    assert set(rep["parity"]) == {"onnx", "tflite"}
    for f in ("onnx", "tflite"):
        assert rep["parity"][f]["max_abs_diff"] < 1e-4
    gan = gan_from_checkpoint(load_gan_checkpoint(tiny_ckpt), tiny_ckpt)
    z = noise(5, 256, seed=3)
    with torch.no_grad():
        ref = (gan.G(torch.from_numpy(z)).double().numpy() * 255).transpose(0, 2, 3, 1)
    for suffix in (".onnx", ".tflite"):
        with FaceGenerator(tmp_path / f"{tiny_ckpt.stem}_generator{suffix}") as g:
            out = g.generate(5, seed=3)              # tflite: batch-1 file, 5 runs
            assert out.shape == (5, 64, 64, 3)
            assert np.abs(out.astype(np.float64) - ref).max() <= 0.51
    meta = json.loads((tmp_path / f"{tiny_ckpt.stem}_generator.tflite.json").read_text())
    assert meta["batch"] == 1 and meta["kind"] == "generator"
    rep = export_generator(tiny_ckpt, formats="onnx", output_dir=tmp_path, reverse=True,
                           echo=_quiet)
    assert rep["reverser"] and rep["parity"]["onnx"]["max_abs_diff"] < 1e-4


def test_bench_measures_a_generator_file(generator_onnx):
    """bench draws random inputs of the declared (N, 256) shape (N(0, 1): what z is)."""
    from edgeconv.profiling.bench import BenchSettings, measure_config

    s = BenchSettings(backends=["onnxruntime"], threads=[1], batches=[1, 4], warmup_runs=1,
                      warmup_secs=0.0, min_runs=2, min_secs=0.0)
    for batch in (1, 4):
        r = measure_config(generator_onnx, "onnxruntime", 1, batch, s)
        assert r["status"] == "ok", r["failure"]
        assert r["latency_ms"]["mean"] > 0


def test_generator_impostor_trial_is_torch_free(generator_onnx):
    sys.path.insert(0, str(ROOT))
    from tests import _unlock_models as TM

    face = TM.model_dir() / "face.onnx"
    code = textwrap.dedent(f"""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch."):
                    raise ImportError("torch imported by the device side")
        sys.meta_path.insert(0, Block())
        from edgeconv.runtime.gen_trial import generator_trial
        r = generator_trial({str(face)!r}, {str(generator_onnx)!r}, count=8, users=2,
                            far="1e-2")
        assert r["generated"]["far_1to1"]["attempts"] == 16, r
        assert "torch" not in sys.modules
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, timeout=300)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr[-2000:]
