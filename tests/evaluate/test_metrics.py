"""Tests of sd_course/evaluate/metrics.py and sd_course/evaluate/evaluation.py: the math by hand, the metric on real digits, evaluate / compare / the evaluator.

    python -m pytest tests/evaluate/test_metrics.py -q -x

Real files throughout: the shipped classifier, the package's 2,000 MNIST digits, PNG folders, tiny untrained
pipelines saved to disk. Real MNIST (../shared/data/mnist) is used where present and skipped with a reason where not.
"""

import json
import math
from pathlib import Path

import pytest
import torch
from PIL import Image

from sd_course.core.provenance import file_sha256
from sd_course import __version__
from sd_course.app import cli
from sd_course.core.data import load_images
from sd_course.core.errors import InputError
from sd_course.evaluate import evaluation, metrics
from sd_course.evaluate.classifier import (
    DEFAULT_CLASSIFIER_DIR,
    load_classifier,
)

FID = f"fid_{metrics.FEATURE_NAME}"
MNIST = Path(__file__).resolve().parents[3] / "shared" / "data" / "mnist"
needs_mnist = pytest.mark.skipif(not (MNIST / "test.parquet").is_file(),
                                 reason=f"real MNIST not found at {MNIST} (only the package's 2k digits are used)")
BUILTIN = "builtin:mnist-2k:train"


@pytest.fixture(scope="module")
def classifier():
    return load_classifier()


@pytest.fixture(scope="module")
def digits():
    """The package's 2,000 real MNIST digits, split at random (seeded) into two disjoint halves of 1,000.

    (Not even/odd rows: in MNIST's training set the odd rows hold systematically thicker digits -- 14% more ink in
    the first 10,000 -- and the two halves of an even/odd split are 50 FID apart here, 6x a random split. A reminder
    that a reference set must be a fair sample of the data.)
    """
    images, labels = load_images(BUILTIN, show_progress=False)
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))
    a, b = order[:1000], order[1000:]
    return images[a], images[b], labels[a]


def random_rotation(d: int, seed: int = 0) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    return q


# ------------------------------------------------------------------------------------------------------------------
# 1. The math, against cases computed by hand
# ------------------------------------------------------------------------------------------------------------------


def test_frechet_distance_of_diagonal_gaussians_by_hand():
    # |mu1 - mu2|^2 = 1 + 0 + 4 = 5; sum (sqrt(a) - sqrt(b))^2 = (1 - 2)^2 + (2 - 1)^2 + (3 - 3)^2 = 2; FID = 7
    mu1, mu2 = torch.tensor([0.0, 1.0, 2.0]), torch.tensor([1.0, 1.0, 0.0])
    s1, s2 = torch.diag(torch.tensor([1.0, 4.0, 9.0])), torch.diag(torch.tensor([4.0, 1.0, 9.0]))
    assert metrics.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(7.0, abs=1e-9)
    assert metrics.frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-9)
    # FID is invariant under a rotation of the feature space: both covariances become non-diagonal, same answer.
    q = random_rotation(3)
    fid = metrics.frechet_distance(q @ mu1.double(), q @ s1.double() @ q.T, q @ mu2.double(), q @ s2.double() @ q.T)
    assert fid == pytest.approx(7.0, abs=1e-9)


def test_frechet_distance_of_non_commuting_covariances_by_hand():
    # sigma1 = I: tr sqrt(sigma1 sigma2) = tr sqrt(sigma2) = 2 + 1 + 3 whatever the rotation of sigma2, so
    # FID = |dmu|^2 + tr(I) + tr(sigma2) - 2 * 6 = 1 + 3 + 14 - 12 = 6.
    q = random_rotation(3, seed=1)
    s2 = q @ torch.diag(torch.tensor([4.0, 1.0, 9.0], dtype=torch.float64)) @ q.T
    mu2 = torch.tensor([1.0, 0.0, 0.0])
    assert metrics.frechet_distance(torch.zeros(3), torch.eye(3), mu2, s2) == pytest.approx(6.0, abs=1e-9)


def test_frechet_distance_matches_scipy_sqrtm_on_random_covariances():
    linalg = pytest.importorskip("scipy.linalg", reason="scipy is only an independent check here")
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(40, 20, generator=g, dtype=torch.float64), torch.randn(40, 20, generator=g, dtype=torch.float64)
    s1, s2 = a.T @ a / 40, b.T @ b / 40 + 0.1 * torch.eye(20, dtype=torch.float64)
    mu1, mu2 = torch.randn(20, generator=g, dtype=torch.float64), torch.randn(20, generator=g, dtype=torch.float64)
    covmean = linalg.sqrtm((s1 @ s2).numpy()).real
    expected = ((mu1 - mu2) ** 2).sum().item() + s1.trace().item() + s2.trace().item() - 2 * covmean.trace()
    assert metrics.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-8)


def test_fid_from_samples_approaches_the_analytic_value():
    # 20,000 draws from N(0, diag(1, 4)) and N((3, 0), diag(4, 4)): FID = 9 + (1 - 2)^2 + 0 = 10.
    g = torch.Generator().manual_seed(0)
    x = torch.randn(20000, 2, generator=g, dtype=torch.float64) * torch.tensor([1.0, 2.0], dtype=torch.float64)
    y = torch.randn(20000, 2, generator=g, dtype=torch.float64) * 2 + torch.tensor([3.0, 0.0], dtype=torch.float64)
    assert metrics.fid_from_features(x, y) == pytest.approx(10.0, rel=0.03)


def test_unbiased_mmd_by_hand():
    # d = 1, k(x, y) = (x y + 1)^3. x = {0, 1}, y = {0, 2}:
    # k_xx off-diagonal: k(0, 1) twice -> 2 / (2 * 1) = 1; k_yy: k(0, 2) twice -> 1;
    # k_xy: k(0,0) + k(0,2) + k(1,0) + k(1,2) = 1 + 1 + 1 + 27 = 30 -> 2 * 30 / 4 = 15. MMD^2_u = 1 + 1 - 15 = -13.
    x, y = torch.tensor([[0.0], [1.0]], dtype=torch.float64), torch.tensor([[0.0], [2.0]], dtype=torch.float64)
    assert metrics.mmd2_unbiased(x, y) == pytest.approx(-13.0)


def test_kid_is_near_zero_for_one_distribution_and_positive_for_two():
    g = torch.Generator().manual_seed(0)
    a, b, c = (torch.randn(600, 8, generator=g, dtype=torch.float64) for _ in range(3))
    same_mean, same_std = metrics.kid(a, b, subset_size=200, num_subsets=50)
    shifted_mean, shifted_std = metrics.kid(a, c + 1.0, subset_size=200, num_subsets=50)
    assert abs(same_mean) < 3 * same_std  # unbiased: 0 within its own noise
    assert shifted_mean > 5 * shifted_std > 0


def test_precision_recall_by_hand():
    # 1-d, k = 1. Real {0,1,2,3,4}: every ball has radius 1, the manifold is [-1, 5]. Fakes {0.5, 10}: precision 1/2.
    # Fake radii (k = 1 among two points) are both 9.5, so the fake manifold covers [0, 4]: recall 1.
    real = torch.tensor([[0.0], [1.0], [2.0], [3.0], [4.0]])
    fake = torch.tensor([[0.5], [10.0]])
    assert metrics.precision_recall(fake, real, k=1) == (0.5, 1.0)
    # Mode collapse: fakes only near 0 -> every fake is realistic (precision 1) but 4 is out of reach.
    collapsed = torch.tensor([[0.0], [0.1], [0.2], [0.3]])
    precision, recall = metrics.precision_recall(collapsed, real, k=1)
    assert precision == 1.0 and recall == pytest.approx(1 / 5)


# ------------------------------------------------------------------------------------------------------------------
# 2. On real digits: the metric tracks quality
# ------------------------------------------------------------------------------------------------------------------


def test_fid_tracks_quality_on_real_digits(classifier, digits):
    """Two halves of real digits are close; noise of growing sigma and blur push FID up; pure noise is far off."""
    a, b, _ = digits
    ref = metrics.gaussian_stats(metrics.features_of(b, classifier)[0])

    def fid(images):
        return metrics.frechet_distance(*metrics.gaussian_stats(metrics.features_of(images, classifier)[0]), *ref)

    clean = fid(a)
    noisy = [fid(metrics.add_gaussian_noise(a, sigma, seed=1)) for sigma in (0.1, 0.2, 0.4)]
    blurred = fid(metrics.gaussian_blur(a, sigma=1.0))
    noise = fid(metrics.pure_noise(len(a), seed=2))
    print(f"\nFID n=1000: clean {clean:.2f}, noise 0.1/0.2/0.4 {noisy[0]:.2f}/{noisy[1]:.2f}/{noisy[2]:.2f}, "
          f"blur {blurred:.2f}, pure noise {noise:.2f}")
    assert clean < noisy[0] < noisy[1] < noisy[2] < noise
    assert blurred > 2 * clean
    assert noise > 20 * clean


def test_mode_collapse_shows_in_recall_and_class_histogram(classifier, digits):
    a, b, labels = digits
    reference = metrics.Reference("half b", (1, 28, 28), *metrics.features_of(b, classifier),
                                  *metrics.gaussian_stats(metrics.features_of(b, classifier)[0]), None, True)
    healthy = metrics.score_images(a, reference, classifier, kid_subset_size=50, kid_subsets=10)
    ones_only = a[labels == 1]
    collapsed = metrics.score_images(ones_only, reference, classifier, kid_subset_size=50, kid_subsets=10)
    assert healthy[f"classes_covered_{metrics.FEATURE_NAME}"] == 10
    assert collapsed[f"classes_covered_{metrics.FEATURE_NAME}"] == 1
    assert collapsed[f"class_histogram_{metrics.FEATURE_NAME}"][1] > 0.95
    assert collapsed[f"recall_{metrics.FEATURE_NAME}"] < 0.3 < 0.7 < healthy[f"recall_{metrics.FEATURE_NAME}"]
    assert collapsed[f"precision_{metrics.FEATURE_NAME}"] > 0.8  # each "1" is a fine digit: fidelity is intact
    assert collapsed[FID] > 10 * healthy[FID]
    assert healthy[f"mean_confidence_{metrics.FEATURE_NAME}"] > 0.95


@needs_mnist
def test_real_mnist_floor_is_small_and_noise_is_huge(classifier):
    train, _ = load_images(f"{MNIST}:train", num_images=2000, show_progress=False)
    reference = metrics.prepare_reference(f"{MNIST}:test", classifier, num_images=2000, show_progress=False)
    floor = metrics.score_images(train, reference, classifier, kid_subsets=20)
    noise = metrics.score_images(metrics.pure_noise(2000), reference, classifier, kid_subsets=20)
    print(f"\nreal MNIST n=2000: floor FID {floor[FID]:.3f}, pure noise FID {noise[FID]:.1f}")
    assert reference.accuracy >= 0.99 and reference.is_digits
    assert floor[FID] < 0.02 * noise[FID]
    assert floor[f"precision_{metrics.FEATURE_NAME}"] > 0.7 and floor[f"recall_{metrics.FEATURE_NAME}"] > 0.7
    assert noise[f"precision_{metrics.FEATURE_NAME}"] < 0.05


# ------------------------------------------------------------------------------------------------------------------
# 3. evaluate / compare / the training-time evaluator, through the CLI, on real folders
# ------------------------------------------------------------------------------------------------------------------


def save_tiny_pipeline(path, seed=0):
    from diffusers import DDPMPipeline, DDPMScheduler

    from sd_course.core.models import build_unet

    torch.manual_seed(seed)
    DDPMPipeline(build_unet("tiny", resolution=28, channels=1), DDPMScheduler(num_train_timesteps=50)).save_pretrained(
        path)
    return path


def write_pngs(images, folder, mode="L"):
    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        Image.fromarray(image[0].numpy(), mode="L").convert(mode).save(folder / f"{i:05d}.png")
    return folder


def test_evaluate_model_writes_named_metrics_and_provenance(tmp_path, capsys):
    model = save_tiny_pipeline(tmp_path / "tiny")
    out = tmp_path / "metrics.json"
    rc = cli.main(["evaluate", "--model", str(model), "--num_samples", "24", "--num_inference_steps", "3",
                   "--seed", "5", "--reference", BUILTIN, "--num_reference", "300", "--output_json", str(out)])
    assert rc == 0
    result = json.loads(out.read_text())
    assert result["n"] == 24 and result["seed"] == 5 and result["num_inference_steps"] == 3
    assert result["scheduler"] == "DDPMScheduler" and result["source"] == "model"
    assert result["timestep_spacing"] == "leading"  # what the folder's config says (DDPMScheduler's default)
    assert result["feature_extractor"] == "sd_course/mnist-classifier"
    assert result["feature_extractor_sha256"] == file_sha256(DEFAULT_CLASSIFIER_DIR / "model.safetensors")
    assert result["sd_course_version"] == __version__ and result["reference_n"] == 300
    assert result["kid_subset_size"] == 24
    assert len(result[f"class_histogram_{metrics.FEATURE_NAME}"]) == 10
    assert not any(k.startswith("fid") and k != FID for k in result)  # never an unqualified "fid"
    assert result[FID] > 100  # an untrained U-Net makes noise, not digits
    assert result["device"] == ("cuda" if torch.cuda.is_available() else "cpu")  # --device auto, recorded
    assert FID in capsys.readouterr().out


def test_evaluate_samples_folder_scores_real_digits_close_to_reference(tmp_path, digits):
    a, b, _ = digits
    real_folder = write_pngs(a[:300], tmp_path / "real", mode="RGB")  # RGB files with equal channels = grayscale
    noise_folder = write_pngs(metrics.pure_noise(300), tmp_path / "noise")
    kwargs = dict(reference=BUILTIN, num_reference=600, kid_subsets=10, show_progress=False, print_table=False)
    real = evaluation.evaluate(samples=str(real_folder), **kwargs)
    noise = evaluation.evaluate(samples=str(noise_folder), num_samples=100, **kwargs)
    assert real["n"] == 300 and noise["n"] == 100 and real["scheduler"] is None
    assert real[FID] < 0.05 * noise[FID]


def test_evaluate_scores_the_real_data_floor_the_same_way_and_the_card_shows_it(tmp_path, capsys):
    """--floor: n real digits scored like the n samples, so a model is read as "k times the floor" at its own n."""
    from sd_course.publish.cards import evaluation_markdown

    noise_folder = write_pngs(metrics.pure_noise(100), tmp_path / "noise")
    out = tmp_path / "metrics.json"
    rc = cli.main(["evaluate", "--samples", str(noise_folder), "--reference", BUILTIN, "--num_reference", "600",
                   "--kid_subsets", "10", "--floor", BUILTIN, "--output_json", str(out)])
    assert rc == 0 and "floor: fid_mnist_classifier" in capsys.readouterr().out
    result = json.loads(out.read_text())
    floor = result["floor"]
    assert floor["n"] == result["n"] == 100 and floor["spec"] == BUILTIN
    assert 0 < floor[FID] < 0.05 * result[FID]  # real digits near the reference, noise far from it
    assert 0 <= floor[f"recall_{metrics.FEATURE_NAME}"] <= 1
    card = evaluation_markdown(result)
    assert "| metric | value | real-data floor |" in card
    assert f"{result[FID] / floor[FID]:.2f}x** the floor" in card
    assert f"| `{FID}` | {result[FID]:.4g} | {floor[FID]:.4g} |" in card

    with pytest.raises(InputError, match="holds 2000 images, fewer than the 2100 samples"):
        evaluation.real_data_floor(BUILTIN, 2100, metrics.prepare_reference(BUILTIN, metrics.load_feature_extractor(),
                                                                            num_images=50, show_progress=False),
                                   metrics.load_feature_extractor())


def test_empty_samples_folder_is_an_input_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    with pytest.raises(InputError, match="holds no images"):
        evaluation.load_sample_folder(tmp_path / "empty")
    rc = cli.main(["evaluate", "--samples", str(tmp_path / "empty"), "--reference", BUILTIN])
    assert rc == 2 and "holds no images" in capsys.readouterr().err


def test_reference_of_another_size_or_channel_count_is_an_input_error(tmp_path, digits):
    import datasets

    a, _, _ = digits
    samples = write_pngs(a[:20], tmp_path / "samples")
    big = [Image.fromarray(x[0].numpy(), mode="L").resize((32, 32)) for x in a[:20]]
    datasets.Dataset.from_dict({"image": big}).cast_column("image", datasets.Image()).to_parquet(
        str(tmp_path / "ref32" / "test.parquet"))
    with pytest.raises(InputError, match="1-channel 28x28 images but the reference .* 1-channel 32x32"):
        evaluation.evaluate(samples=str(samples), reference=str(tmp_path / "ref32"), print_table=False,
                         show_progress=False)
    # 3-channel samples against a 1-channel reference (colour noise is not a grayscale digit)
    colour = tmp_path / "colour"
    colour.mkdir()
    for i in range(20):
        Image.fromarray(metrics.pure_noise(1, (3, 28, 28), seed=i)[0].permute(1, 2, 0).numpy(), "RGB").save(
            colour / f"{i}.png")
    with pytest.raises(InputError, match="3-channel 28x28 images but the reference .* 1-channel 28x28"):
        evaluation.evaluate(samples=str(colour), reference=BUILTIN, num_reference=50, print_table=False,
                         show_progress=False)


def test_too_few_samples_for_kid_subset_is_an_input_error(tmp_path, capsys, classifier):
    rc = cli.main(["evaluate", "--model", str(tmp_path / "never-built"), "--num_samples", "20",
                   "--kid_subset_size", "50", "--reference", BUILTIN])
    assert rc == 2 and "too few samples for KID's subset size" in capsys.readouterr().err
    features = torch.randn(20, 4, dtype=torch.float64)
    with pytest.raises(InputError, match="too few images for KID's subset size 50"):
        metrics.kid(features, features, subset_size=50)
    with pytest.raises(InputError, match="at least 2"):
        metrics.kid(features[:1], features, subset_size=None)


def test_compare_expands_epoch_snapshots_and_uses_the_same_seeds(tmp_path, capsys):
    run = tmp_path / "run"
    save_tiny_pipeline(run / "epoch-0001", seed=1)
    save_tiny_pipeline(run / "epoch-0002", seed=2)
    save_tiny_pipeline(run, seed=2)  # the final pipeline: the same weights as epoch 2, so not sampled twice
    twin = save_tiny_pipeline(tmp_path / "twin", seed=1)  # the same weights as epoch 1
    out = tmp_path / "cmp"
    rc = cli.main(["compare", str(run), str(twin), "--num_samples", "16", "--num_inference_steps", "2",
                   "--reference", BUILTIN, "--num_reference", "200", "--kid_subsets", "5", "--grid_columns", "4",
                   "--output_dir", str(out)])
    assert rc == 0
    summary = json.loads((out / "compare.json").read_text())
    labels = [r["model"] for r in summary["results"]]
    assert labels == [f"{run}/epoch-0001", f"{run}/epoch-0002", str(twin)]
    assert [r["epoch"] for r in summary["results"]] == [1, 2, None]
    # Same weights + same seed -> the same samples -> the same numbers: the comparison is fair.
    assert summary["results"][0][FID] == summary["results"][2][FID]
    assert summary["results"][0][FID] != summary["results"][1][FID]
    assert {r["device"] for r in summary["results"]} == {"cuda" if torch.cuda.is_available() else "cpu"}
    grid = Image.open(out / "compare_grid.png")
    assert grid.height == 3 * 28 * 4 and grid.width > 4 * 28 * 4
    assert (out / "metrics_vs_epoch.png").stat().st_size > 10_000
    assert "epoch-0002" in capsys.readouterr().out


def test_compare_reuse_keeps_earlier_scores_only_for_the_same_weights_sampler_and_reference(tmp_path, capsys):
    """A continued run: `compare RUN --reuse OLD/compare.json` samples the old epochs for the grid only and keeps
    their scores; the new epoch is scored; another sampler or another reference reuses nothing."""
    import numpy as np

    run = tmp_path / "run"
    save_tiny_pipeline(run / "epoch-0001", seed=1)
    scoring = ["--num_samples", "16", "--num_inference_steps", "2", "--reference", BUILTIN, "--num_reference", "200",
               "--kid_subsets", "5", "--grid_columns", "4"]
    first = tmp_path / "first"
    assert cli.main(["compare", str(run), *scoring, "--output_dir", str(first)]) == 0
    save_tiny_pipeline(run / "epoch-0002", seed=2)  # the run went on
    earlier = str(first / "compare.json")
    second = tmp_path / "second"
    assert cli.main(["compare", str(run), *scoring, "--output_dir", str(second), "--reuse", earlier]) == 0
    assert f"reused the scores of 1 of 2 models from {earlier}" in capsys.readouterr().out
    old = json.loads((first / "compare.json").read_text())["results"]
    new = json.loads((second / "compare.json").read_text())["results"]
    assert new[0]["reused_from"] == earlier and "reused_from" not in new[1]
    assert new[0]["unet_sha256"] == old[0]["unet_sha256"] != new[1]["unet_sha256"]
    assert {k: v for k, v in new[0].items() if k != "reused_from"} == old[0]
    assert new[1][FID] != new[0][FID] and new[1]["epoch"] == 2
    # The grid's row for the reused epoch: its first 4 samples, made anew with their own seeds (1 level of rounding).
    grids = [np.asarray(Image.open(folder / "compare_grid.png"), dtype=int) for folder in (first, second)]
    assert np.abs(grids[1][: grids[0].shape[0]] - grids[0]).max() <= 1
    # Another spacing (or step count) is another sampler: everything is scored again, the spacing recorded.
    assert cli.main(["compare", str(run), *scoring, "--timestep_spacing", "trailing", "--output_dir",
                     str(tmp_path / "third"), "--reuse", earlier]) == 0
    assert "reused the scores of 0 of 2 models" in capsys.readouterr().out
    third = json.loads((tmp_path / "third" / "compare.json").read_text())["results"]
    assert [r["timestep_spacing"] for r in old + third] == ["leading", "trailing", "trailing"]
    # Another reference makes the earlier scores incomparable: refused before any sampling, nothing written.
    rc = cli.main(["compare", str(run), *scoring[:7], "100", *scoring[8:], "--output_dir", str(tmp_path / "fourth"),
                   "--reuse", earlier])
    assert rc == 2 and "reference_n=200" in capsys.readouterr().err and not (tmp_path / "fourth").exists()
    rc = cli.main(["compare", str(run), *scoring, "--output_dir", str(tmp_path / "fifth"),
                   "--reuse", str(tmp_path / "missing.json")])
    assert rc == 2 and "no such file" in capsys.readouterr().err


def test_reuse_tells_apart_the_two_samplers_of_one_class(tmp_path, capsys):
    """`dpm++` and `dpm++-2m-sde` are both DPMSolverMultistepScheduler: rows record the --scheduler name, and a row
    is reused only for the same one. Rows written before the name was recorded give the class only, which meant
    `dpm++` (the shipped ladder's compare.json is such a file)."""
    from sd_course.evaluate.evaluation import same_sampler

    run = tmp_path / "run"
    save_tiny_pipeline(run / "epoch-0001", seed=1)
    scoring = ["--num_samples", "16", "--num_inference_steps", "3", "--reference", BUILTIN, "--num_reference", "200",
               "--kid_subsets", "5", "--grid_columns", "4"]
    results = {}
    for name, reuse in (("dpm++", []), ("dpm++-2m-sde", ["--reuse", str(tmp_path / "dpm++" / "compare.json")])):
        assert cli.main(["compare", str(run), "--scheduler", name, *scoring, "--output_dir", str(tmp_path / name),
                         *reuse]) == 0
        results[name] = json.loads((tmp_path / name / "compare.json").read_text())["results"][0]
    assert "reused the scores of 0 of 1 models" in capsys.readouterr().out
    assert [results[name]["sampler"] for name in results] == ["dpm++", "dpm++-2m-sde"]
    assert results["dpm++"]["scheduler"] == results["dpm++-2m-sde"]["scheduler"] == "DPMSolverMultistepScheduler"
    assert results["dpm++"][FID] != results["dpm++-2m-sde"][FID]  # the fresh noise made other samples

    ode = {key: results["dpm++"][key] for key in ("scheduler", "sampler", "num_inference_steps", "timestep_spacing")}
    unnamed = {key: value for key, value in results["dpm++"].items() if key != "sampler"}
    assert same_sampler(unnamed, ode, None) and not same_sampler(unnamed, dict(ode, sampler="dpm++-2m-sde"), None)


def test_make_evaluator_returns_repeatable_floats(tmp_path):
    from diffusers import DDPMPipeline

    pipe = DDPMPipeline.from_pretrained(save_tiny_pipeline(tmp_path / "tiny"))
    pipe.unet.train()
    evaluator = evaluation.make_evaluator(BUILTIN, num_samples=16, num_inference_steps=2, num_reference=200)
    first, second = evaluator(pipe), evaluator(pipe)
    assert first == second  # the same seed every call: only the model can change the numbers
    assert set(first) >= {FID, f"kid_{metrics.FEATURE_NAME}_mean", f"precision_{metrics.FEATURE_NAME}",
                          f"recall_{metrics.FEATURE_NAME}", f"mean_confidence_{metrics.FEATURE_NAME}"}
    assert all(isinstance(v, float) and math.isfinite(v) for v in first.values())
    assert pipe.unet.training  # left as it was found
    ddim = evaluation.make_evaluator(BUILTIN, num_samples=16, num_inference_steps=2, num_reference=200,
                                  scheduler="ddim")(pipe)
    assert ddim[FID] != first[FID]  # another sampler, other samples...
    assert type(pipe.scheduler).__name__ == "DDPMScheduler"  # ... and the training pipeline is untouched
