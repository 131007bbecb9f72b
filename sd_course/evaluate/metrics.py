"""Metrics: how close are generated digits to real ones? FID, KID, precision, recall, class histogram, confidence.

Score a trained pipeline (it samples N images with a fixed seed) or any folder of PNGs (a GAN's, another repo's):

    sd-course evaluate --model runs/mnist --scheduler ddim --num_inference_steps 50 --num_samples 1000 --seed 0 \
        --reference ylecun/mnist:test --output_json metrics.json
    sd-course evaluate --samples my_gan_samples/ --reference ../shared/data/mnist:test
    sd-course compare runs/short runs/long pipelines/mnist --num_samples 500 --output_dir compare/

Every image -- generated or real -- is first mapped to a 128-d feature vector by the small digit classifier that
ships with the package (``sd_course/evaluate/classifier.py``; its card states its MNIST test accuracy). All the distances
below live in that feature space, and every number is named after it (``fid_mnist_classifier``, ...): it is *not*
the Inception FID of papers, whose scale is different. Inception FID is available too (``--inception_fid``) where
``torchmetrics[image]`` and the Inception weights are.

Q: Diffusion vs GANs: how do we compare generators honestly?
A: Look at the same numbers, computed the same way, on samples drawn the same way -- never at hand-picked grids.
   * FID (Heusel et al. 2017) fits a Gaussian to the features of the real images and one to the generated ones and
     measures the Frechet (2-Wasserstein) distance between the two Gaussians. It mixes two failures in one number:
     samples that look wrong (low fidelity) and samples that do not cover the data (low diversity). It is biased
     upwards at small N, so compare FIDs only at the same N, the same reference set and the same feature extractor.
   * KID (Binkowski et al. 2018) asks the same question with an unbiased estimator (a kernel MMD), so its value at
     small N is not inflated, and we report its spread over random subsets: a difference smaller than the std is
     noise.
   * Precision and recall (Kynkaanniemi et al. 2019) split FID's two failures apart. Precision = fidelity: the share
     of generated images that land on the manifold of real images. Recall = diversity: the share of real images that
     land on the manifold of generated ones. A GAN that produces sharp, convincing 1s and 7s but never a 4 has high
     precision and low recall: *mode collapse*, the classic GAN failure (the adversarial game rewards fooling the
     discriminator, not covering every mode). Diffusion models, trained by plain likelihood-style regression on
     every training image, usually keep recall high; undertrained ones lose precision first (blurry, broken
     strokes). The class histogram says the same thing for digits in words: which digits does the model make, and
     how sure is the classifier that they are digits at all (mean confidence)?
   Report N, the seed, the sampler and its number of steps with every number: a DDPM with 1000 steps and the same
   network with 10 DDIM steps are different generators.
Cmd: python benchmarks/metric_floor.py --dataset_name ../shared/data/mnist

Q: How does a model trained for fewer epochs compare with the pretrained one?
A: Measured on the same protocol (1,000 samples, DPM-Solver++ 25 steps, seeds 0..999, against the 10,000 MNIST test
   digits; the epoch ladder of docs/evaluation.md): the shipped run (batch 1,024 on a GPU, 59 steps an epoch) after
   epoch 1 (pipelines/ddpm-mnist-epoch1) makes blobs, a third of them read as one digit: FID [525](pipelines/ddpm-mnist/ladder.json#results.epoch=1.fid_mnist_classifier), recall
   [0.07](pipelines/ddpm-mnist/ladder.json#results.epoch=1.recall_mnist_classifier); after epoch 10 (590 steps, pipelines/ddpm-mnist-epoch10) FID [48.8](pipelines/ddpm-mnist/ladder.json#results.epoch=10.fid_mnist_classifier), precision [0.697](pipelines/ddpm-mnist/ladder.json#results.epoch=10.precision_mnist_classifier),
   recall [0.888](pipelines/ddpm-mnist/ladder.json#results.epoch=10.recall_mnist_classifier); after 75 epochs (4,425 steps, pipelines/ddpm-mnist) FID [12.8](pipelines/ddpm-mnist/ladder.json#results.epoch=75.fid_mnist_classifier), precision
   [0.858](pipelines/ddpm-mnist/ladder.json#results.epoch=75.precision_mnist_classifier), recall [0.907](pipelines/ddpm-mnist/ladder.json#results.epoch=75.recall_mnist_classifier). The real-data floor at this n is
   [6.9](benchmarks/results/metric_floor.json#rows.n=1000.fid) (FID [7.5](pipelines/ddpm-mnist/metrics.json#fid_mnist_classifier)
   for the final model with the same solver on the SDE, ``--scheduler dpm++-2m-sde``). Epochs buy coverage of every
   digit first (recall [0.07](pipelines/ddpm-mnist/ladder.json#results.epoch=1.recall_mnist_classifier) -> [0.89](pipelines/ddpm-mnist/ladder.json#results.epoch=10.recall_mnist_classifier) by epoch 10), then legibility (precision [0.67](pipelines/ddpm-mnist/ladder.json#results.epoch=5.precision_mnist_classifier) at
   epoch 5 -> [0.86](pipelines/ddpm-mnist/ladder.json#results.epoch=75.precision_mnist_classifier), classifier confidence [0.85](pipelines/ddpm-mnist/ladder.json#results.epoch=5.mean_confidence_mnist_classifier) -> [0.98](pipelines/ddpm-mnist/ladder.json#results.epoch=75.mean_confidence_mnist_classifier)); past epoch 30 the FID is
   flat within its seed noise ([13.1](pipelines/ddpm-mnist/ladder.json#results.epoch=30.fid_mnist_classifier), [10.8](pipelines/ddpm-mnist/ladder.json#results.epoch=50.fid_mnist_classifier), [12.8](pipelines/ddpm-mnist/ladder.json#results.epoch=75.fid_mnist_classifier) at epochs 30, 50, 75). The 16-epoch run
   on 2 CPU cores (batch 64, 281 min) reached 22.0 the same way (benchmarks/README.md §13).
   The README's quick run (2,646 steps of 32 on the 2,000 bundled digits, [9.3 min](benchmarks/results/quick_pixel_lean_no_native_bf16.json#rows.0.minutes) on 2 cores without
   native bf16) scores FID [68.6](benchmarks/results/quick_pixel_lean_no_native_bf16.json#rows.scheduler=dpm++-2m-sde&sampling_seed=1234.fid) on 200 samples against the test digits (``benchmarks/quick_recipes.py``; real
   digits score [42](benchmarks/results/metric_floor.json#rows.n=100.fid) at n = 100): digits, scored at another n than the ladder's, so ``sd-course compare`` (below)
   puts it beside the rungs on equal terms.
Cmd: sd-course compare runs/quick pipelines/ddpm-mnist-epoch1 pipelines/ddpm-mnist-epoch10 pipelines/ddpm-mnist --scheduler dpm++ --num_inference_steps 25 --num_samples 300 --reference builtin:mnist-2k:train --output_dir compare/
Cmd: sd-course compare runs/ddpm-mnist-gpu --scheduler dpm++ --num_inference_steps 25 --num_samples 1000 --reference ../shared/data/mnist:test --floor ../shared/data/mnist:train --output_dir runs/ladder
Fig: compare/compare_grid.png

Reading order: 1. features, 2. the metrics (math), 3. scoring a set of images, 4. corruptions used to show that
the metric tracks quality. Running it on models (evaluate, compare, prompt accuracy, the training-time evaluator)
is sd_course/evaluate/evaluation.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from sd_course.core.data import load_images
from sd_course.core.errors import InputError
from sd_course.evaluate.classifier import check_images, load_classifier, predict

FEATURE_NAME = "mnist_classifier"  # the suffix of every metric computed in the classifier's feature space
DEFAULT_REFERENCE = "ylecun/mnist:test"
NEAREST_K = 3  # k of the k-NN manifolds (Kynkaanniemi et al. 2019 use k = 3)
KID_SUBSET_SIZE = 1000  # torchmetrics' default; capped to the number of images when not given explicitly
KID_SUBSETS = 100
DIGIT_ACCURACY = 0.9  # a labelled reference is "digits" when the classifier gets this much of it right
DIGIT_CONFIDENCE = 0.95  # ... an unlabelled one when the classifier is this sure on average
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")

# ================================================================================================================
# 1. Features: the penultimate layer of the shipped digit classifier
# ================================================================================================================


def load_feature_extractor(path: str | Path | None = None):
    """The classifier whose features define the metrics (default: the shipped one)."""
    return load_classifier(path)


def features_of(images_uint8: torch.Tensor, classifier, show_progress: bool = False, desc: str = "features"):
    """uint8 images (N, 1, 28, 28) -> (features (N, D) float64, class probabilities (N, 10) float64)."""
    return predict(classifier, images_uint8, show_progress=show_progress, desc=desc)


# ================================================================================================================
# 2. The metrics, on feature matrices (rows = images)
# ================================================================================================================


def gaussian_stats(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean vector and (unbiased, 1/(N-1)) covariance matrix of the rows, in float64."""
    if features.shape[0] < 2:
        raise InputError(f"FID needs at least 2 images to estimate a covariance, got {features.shape[0]}; "
                         "pass more samples (--num_samples)")
    x = features.double()
    return x.mean(0), torch.cov(x.T)


def _sqrtm_psd(matrix: torch.Tensor) -> torch.Tensor:
    """Square root of a symmetric positive semi-definite matrix: V diag(sqrt(lambda)) V^T (eigh, float64)."""
    eigenvalues, eigenvectors = torch.linalg.eigh(matrix)
    return eigenvectors @ torch.diag(eigenvalues.clamp(min=0).sqrt()) @ eigenvectors.T


def frechet_distance(mu1: torch.Tensor, sigma1: torch.Tensor, mu2: torch.Tensor, sigma2: torch.Tensor) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2) (Heusel et al. 2017, "FID"):

        d^2 = |mu1 - mu2|^2 + tr(sigma1) + tr(sigma2) - 2 tr sqrt(sigma1 sigma2)

    sigma1 sigma2 is not symmetric, so its square root is not computed directly. Instead, with A = sqrt(sigma1):
    sigma1 sigma2 = A (A sigma2) is similar to A sigma2 A (same eigenvalues), and A sigma2 A is symmetric PSD, so
    tr sqrt(sigma1 sigma2) = sum_i sqrt(lambda_i(A sigma2 A)). Everything in float64; tiny negative eigenvalues
    from round-off are clamped to 0.
    """
    mu1, mu2, sigma1, sigma2 = (t.double() for t in (mu1, mu2, sigma1, sigma2))
    root1 = _sqrtm_psd(sigma1)
    middle = root1 @ sigma2 @ root1
    middle = (middle + middle.T) / 2  # symmetric up to round-off; make it exactly so for eigvalsh
    tr_sqrt_product = torch.linalg.eigvalsh(middle).clamp(min=0).sqrt().sum()
    distance = (mu1 - mu2).square().sum() + sigma1.trace() + sigma2.trace() - 2 * tr_sqrt_product
    return max(distance.item(), 0.0)


def fid_from_features(features1: torch.Tensor, features2: torch.Tensor) -> float:
    """FID between two sets of features (each summarised by its mean and covariance)."""
    return frechet_distance(*gaussian_stats(features1), *gaussian_stats(features2))


def polynomial_kernel(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """KID's kernel (Binkowski et al. 2018): k(x, y) = (x . y / d + 1)^3, d = feature dimension."""
    return (x @ y.T / x.shape[1] + 1) ** 3


def mmd2_unbiased(x: torch.Tensor, y: torch.Tensor) -> float:
    """Unbiased estimate of the squared MMD between the distributions of the rows of x (m rows) and y (m rows):

        MMD^2_u = 1/(m(m-1)) sum_{i != j} k(x_i, x_j) + 1/(m(m-1)) sum_{i != j} k(y_i, y_j)
                  - 2/m^2 sum_{i, j} k(x_i, y_j)

    The diagonals k(x_i, x_i) are left out of the first two sums; that is what removes the bias (the expected value
    is exactly MMD^2, which is 0 when both sets come from one distribution -- so the estimate can be negative).
    """
    m = x.shape[0]
    k_xx, k_yy, k_xy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    sum_xx = k_xx.sum() - k_xx.diagonal().sum()
    sum_yy = k_yy.sum() - k_yy.diagonal().sum()
    return ((sum_xx + sum_yy) / (m * (m - 1)) - 2 * k_xy.sum() / m**2).item()


def kid(features_fake: torch.Tensor, features_real: torch.Tensor, subset_size: int | None = None,
        num_subsets: int = KID_SUBSETS, seed: int = 0) -> tuple[float, float]:
    """Kernel Inception Distance: mean and std of MMD^2_u over ``num_subsets`` random subsets of ``subset_size``.

    ``subset_size=None`` uses min(1000, number of images); an explicit size larger than either set is an error.
    """
    n = min(len(features_fake), len(features_real))
    if subset_size is None:
        subset_size = min(KID_SUBSET_SIZE, n)
    if subset_size < 2:
        raise InputError(f"KID needs subsets of at least 2 images, got {subset_size}; pass more samples "
                         "(--num_samples) or a --kid_subset_size of at least 2")
    if subset_size > n:
        raise InputError(f"too few images for KID's subset size {subset_size}: {len(features_fake)} generated and "
                         f"{len(features_real)} reference images; pass --num_samples >= {subset_size} or a smaller "
                         f"--kid_subset_size (at most {n})")
    if num_subsets < 1:
        raise InputError(f"--kid_subsets must be at least 1, got {num_subsets}")
    generator = torch.Generator().manual_seed(seed)
    values = []
    for _ in range(num_subsets):
        fake = features_fake[torch.randperm(len(features_fake), generator=generator)[:subset_size]].double()
        real = features_real[torch.randperm(len(features_real), generator=generator)[:subset_size]].double()
        values.append(mmd2_unbiased(fake, real))
    values = torch.tensor(values, dtype=torch.float64)
    return values.mean().item(), (values.std().item() if num_subsets > 1 else 0.0)


def _kth_neighbour_radii(features: torch.Tensor, k: int, chunk: int = 1024) -> torch.Tensor:
    """Distance from each row to its k-th nearest *other* row (the radius of its ball in the k-NN manifold)."""
    radii = []
    for start in range(0, len(features), chunk):
        d = torch.cdist(features[start:start + chunk], features)
        radii.append(d.kthvalue(k + 1, dim=1).values)  # the 1st smallest is the row itself (distance 0)
    return torch.cat(radii)


def _fraction_inside(queries: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, chunk: int = 1024) -> float:
    """Share of queries that fall inside at least one ball (centre_i, radius_i): inside the k-NN manifold."""
    inside = []
    for start in range(0, len(queries), chunk):
        d = torch.cdist(queries[start:start + chunk], centres)
        inside.append((d <= radii[None, :]).any(dim=1))
    return torch.cat(inside).double().mean().item()


def precision_recall(features_fake: torch.Tensor, features_real: torch.Tensor,
                     k: int = NEAREST_K) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019).

    The manifold of a set is the union of balls around each of its points, each ball's radius the distance to that
    point's k-th nearest neighbour in the same set. Precision = share of generated points inside the real manifold
    (are the samples realistic?); recall = share of real points inside the generated manifold (is every kind of real
    image produced?). Both sets should have the same size (radii shrink as a set grows): see :func:`score_images`.
    """
    if min(len(features_fake), len(features_real)) <= k:
        raise InputError(f"precision/recall with k={k} need more than {k} images in each set, got "
                         f"{len(features_fake)} generated and {len(features_real)} reference; pass more samples")
    fake, real = features_fake.double(), features_real.double()
    precision = _fraction_inside(fake, real, _kth_neighbour_radii(real, k))
    recall = _fraction_inside(real, fake, _kth_neighbour_radii(fake, k))
    return precision, recall


def class_histogram(probs: torch.Tensor) -> list[float]:
    """Share of images the classifier puts in each class (argmax): mode coverage in one line."""
    counts = torch.bincount(probs.argmax(-1), minlength=probs.shape[1]).double()
    return (counts / counts.sum()).tolist()


def mean_confidence(probs: torch.Tensor) -> float:
    """Average probability of the predicted class: how sure the classifier is that the images are digits at all."""
    return probs.max(-1).values.mean().item()


# ================================================================================================================
# 3. Scoring a set of images against a reference set
# ================================================================================================================


@dataclass
class Reference:
    """The real images' side of every metric, computed once: features, their Gaussian, class statistics."""

    spec: str
    image_shape: tuple  # (C, H, W) of the reference images
    features: torch.Tensor
    probs: torch.Tensor
    mu: torch.Tensor = field(repr=False)
    sigma: torch.Tensor = field(repr=False)
    accuracy: float | None  # the classifier's accuracy on the reference labels (None when unlabelled)
    is_digits: bool  # report class histogram / confidence only when the reference looks like digits
    images: torch.Tensor | None = field(default=None, repr=False)  # kept for Inception FID

    @property
    def n(self) -> int:
        return len(self.features)


def prepare_reference(spec: str = DEFAULT_REFERENCE, classifier=None, num_images: int | None = None,
                      keep_images: bool = False, show_progress: bool = True, sample_shape: tuple | None = None,
                      what: str = "samples") -> Reference:
    """Load the reference images (``NAME_OR_PATH[:split]``, default split test) and compute their statistics.

    ``sample_shape`` (C, H, W), when known, is checked against the reference images first: a mismatch between the
    two is the user's real problem, whatever the classifier reads.
    """
    classifier = classifier or load_feature_extractor()
    if num_images is not None and num_images < 2:
        raise InputError(f"--num_reference must be at least 2, got {num_images}")
    images, labels = load_images(spec, resolution=None, num_images=num_images, show_progress=show_progress)
    if sample_shape is not None:
        check_same_kind(sample_shape, tuple(images.shape[1:]), spec, what)
    check_images(images, classifier.config, f"reference images of {spec!r}")
    features, probs = features_of(images, classifier, show_progress, desc="reference features")
    mu, sigma = gaussian_stats(features)
    accuracy = None
    if labels is not None:
        accuracy = (probs.argmax(-1) == labels).double().mean().item()
        is_digits = accuracy >= DIGIT_ACCURACY
    else:
        is_digits = mean_confidence(probs) >= DIGIT_CONFIDENCE
    return Reference(spec, tuple(images.shape[1:]), features, probs, mu, sigma, accuracy, is_digits,
                     images if keep_images else None)


def check_same_kind(sample_shape: tuple, reference_shape: tuple, reference_spec: str, what: str = "samples") -> None:
    """Generated and real images must have the same channel count and size (C, H, W), or no metric means anything."""
    if tuple(sample_shape) != tuple(reference_shape):
        (c, h, w), (rc, rh, rw) = sample_shape, reference_shape
        raise InputError(f"the {what} are {c}-channel {h}x{w} images but the reference {reference_spec!r} holds "
                         f"{rc}-channel {rh}x{rw} images; evaluate against a reference of the same size and channels "
                         "(e.g. ylecun/mnist:test for 28x28 grayscale digits)")


def score_images(images_uint8: torch.Tensor, reference: Reference, classifier, seed: int = 0,
                 kid_subset_size: int | None = None, kid_subsets: int = KID_SUBSETS, nearest_k: int = NEAREST_K,
                 show_progress: bool = False) -> dict:
    """All metrics of uint8 images (N, C, H, W) against a prepared reference -> a flat dict (JSON-ready)."""
    if images_uint8.shape[0] < 2:
        raise InputError(f"need at least 2 images to score, got {images_uint8.shape[0]}; pass more samples")
    check_same_kind(tuple(images_uint8.shape[1:]), reference.image_shape, reference.spec)
    features, probs = features_of(images_uint8, classifier, show_progress, desc="sample features")
    result = {f"fid_{FEATURE_NAME}": frechet_distance(*gaussian_stats(features), reference.mu, reference.sigma)}
    kid_mean, kid_std = kid(features, reference.features, kid_subset_size, kid_subsets, seed)
    result[f"kid_{FEATURE_NAME}_mean"], result[f"kid_{FEATURE_NAME}_std"] = kid_mean, kid_std

    # Precision/recall compare k-NN radii, which shrink as a set grows: use as many real images as generated ones.
    n_pr = min(len(features), reference.n)
    generator = torch.Generator().manual_seed(seed)
    real = reference.features[torch.randperm(reference.n, generator=generator)[:n_pr]]
    fake = features[torch.randperm(len(features), generator=generator)[:n_pr]]
    result[f"precision_{FEATURE_NAME}"], result[f"recall_{FEATURE_NAME}"] = precision_recall(fake, real, nearest_k)

    if reference.is_digits:
        histogram, ref_histogram = class_histogram(probs), class_histogram(reference.probs)
        result[f"mean_confidence_{FEATURE_NAME}"] = mean_confidence(probs)
        # A class is "covered" when the samples hold at least half of its share in the reference.
        result[f"classes_covered_{FEATURE_NAME}"] = sum(h >= r / 2 for h, r in zip(histogram, ref_histogram))
        # Total variation between the two class histograms: 0 = same class balance, 1 = no class in common.
        result[f"class_histogram_tv_{FEATURE_NAME}"] = 0.5 * sum(abs(h - r) for h, r in zip(histogram, ref_histogram))
        result[f"class_histogram_{FEATURE_NAME}"] = histogram
    result.update(n=len(images_uint8), kid_subset_size=kid_subset_size or min(KID_SUBSET_SIZE, len(features),
                                                                                reference.n),
                   kid_subsets=kid_subsets, nearest_k=nearest_k, precision_recall_n=n_pr)
    return result


def reference_summary(reference: Reference, classifier) -> dict:
    """What the JSON records about the reference set and the feature extractor."""
    summary = dict(reference=reference.spec, reference_n=reference.n,
                   feature_extractor=classifier.id, feature_extractor_sha256=classifier.weights_sha256,
                   feature_dim=int(reference.features.shape[1]))
    if reference.accuracy is not None:
        summary["reference_classifier_accuracy"] = reference.accuracy
    if reference.is_digits:
        summary["reference_mean_confidence"] = mean_confidence(reference.probs)
        summary["reference_class_histogram"] = class_histogram(reference.probs)
    return summary


def build_inception_fid(weights: str | None = None):
    """torchmetrics' FrechetInceptionDistance (2048-d pool features of Inception-v3, images resized to 299x299).

    ``weights``: a local copy of the FID Inception weights (pt_inception-2015-12-05-6726825d.pth); without it
    torchmetrics downloads them (needs internet). Built before any sampling, so a missing extra fails fast.
    """
    try:
        from torchmetrics.image.fid import FrechetInceptionDistance
    except ImportError as e:
        raise InputError("Inception FID needs torchmetrics with its image extra: pip install 'sd_course[inception]' "
                         "(or pip install 'torchmetrics[image]'); the classifier metrics need nothing extra") from e
    if weights is not None and not Path(weights).is_file():
        raise InputError(f"--inception_weights {weights!r} is not a file; pass the FID Inception weights "
                         "(pt_inception-2015-12-05-6726825d.pth)")
    try:
        metric = FrechetInceptionDistance(feature=2048, feature_extractor_weights_path=weights)
    except Exception as e:  # no internet, broken weights file, missing torch-fidelity...
        raise InputError(f"could not build the Inception network ({type(e).__name__}: {e}); pass "
                         "--inception_weights PATH to a local copy of the FID Inception weights") from e
    return metric


def inception_fid(images_uint8: torch.Tensor, reference_uint8: torch.Tensor, metric=None, weights: str | None = None,
                  batch_size: int = 64, show_progress: bool = True) -> float:
    """Standard Inception FID, the papers' scale (not comparable with ``fid_mnist_classifier``).

    Grayscale images are repeated to 3 channels, as every MNIST Inception FID in the literature does.
    """
    metric = metric if metric is not None else build_inception_fid(weights)
    for images, real in ((reference_uint8, True), (images_uint8, False)):
        for start in tqdm(range(0, len(images), batch_size), desc="inception features", disable=not show_progress,
                          leave=False):
            batch = images[start:start + batch_size]
            metric.update(batch.repeat(1, 3, 1, 1) if batch.shape[1] == 1 else batch, real=real)
    return metric.compute().item()


# ================================================================================================================
# 4. Corruptions: does the metric track quality? (tests/evaluate/test_metrics.py, benchmarks/metric_floor.py)
# ================================================================================================================


def add_gaussian_noise(images_uint8: torch.Tensor, sigma: float, seed: int = 0) -> torch.Tensor:
    """Add N(0, sigma^2) noise to pixels in [0, 1] (sigma = 0.1 is a tenth of the pixel range), clip, back to uint8."""
    generator = torch.Generator().manual_seed(seed)
    x = images_uint8.float() / 255 + sigma * torch.randn(images_uint8.shape, generator=generator)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


def gaussian_blur(images_uint8: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
    """Blur each channel with a Gaussian kernel of std ``sigma`` pixels (radius 3 sigma), zero padding."""
    radius = max(1, round(3 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-offsets**2 / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    c = images_uint8.shape[1]
    x = images_uint8.float()
    x = F.conv2d(x, kernel.view(1, 1, 1, -1).repeat(c, 1, 1, 1), padding=(0, radius), groups=c)  # rows
    x = F.conv2d(x, kernel.view(1, 1, -1, 1).repeat(c, 1, 1, 1), padding=(radius, 0), groups=c)  # columns
    return x.round().clamp(0, 255).to(torch.uint8)


def pure_noise(n: int, shape=(1, 28, 28), seed: int = 0) -> torch.Tensor:
    """Uniform random pixels: the worst "generator"."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, *shape), generator=generator, dtype=torch.uint8)
