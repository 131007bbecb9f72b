"""Metrics: how close are generated digits to real ones? FID, KID, precision, recall, class histogram, confidence.

Score a trained pipeline (it samples N images with a fixed seed) or any folder of PNGs (a GAN's, another repo's):

    sd-course evaluate --model runs/mnist --scheduler ddim --num_inference_steps 50 --num_samples 1000 --seed 0 \
        --reference ylecun/mnist:test --output_json metrics.json
    sd-course evaluate --samples my_gan_samples/ --reference ../shared/data/mnist:test
    sd-course compare runs/short runs/long pipelines/mnist --num_samples 500 --output_dir compare/

Every image -- generated or real -- is first mapped to a 128-d feature vector by the small digit classifier that
ships with the package (``sd_course/classifier.py``; its card states its MNIST test accuracy). All the distances
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
A: Measured on the same protocol (1,000 samples, DPM-Solver++ 20 steps, seeds 0..999, against the 10,000 MNIST test
   digits; docs/evaluation.md): the shipped model's epoch-1 snapshot (938 steps) scores FID 296.5, precision 0.650,
   recall 0.632, mean confidence 0.850, and 37% of its samples are classed as 8 (class-histogram TV 0.283); after
   5 epochs (4,690 steps) FID 47.7, precision 0.692, recall 0.913, confidence 0.924, TV 0.067. The real-data floor
   at this n is 6.9. Early training already puts strokes in the right places (precision); more epochs mostly buy
   coverage of every digit (recall) and legibility. The 5-minute quick run (320 steps on 2,000 digits) is still at
   blobs: FID 1175 against 300 bundled digits, where the epoch-1 snapshot scores 295 and the shipped model 70.
Cmd: sd-course compare runs/quick pipelines/ddpm-mnist-epoch1 pipelines/ddpm-mnist --scheduler dpm++ --num_inference_steps 20 --num_samples 300 --reference builtin:mnist-2k:train --output_dir compare/
Fig: compare/compare_grid.png

Q: How do diffusion models compare to GANs?
A: What is measured here, and what is known.
   * Sampling cost: a GAN draws an image in one network call; a diffusion model needs 20-1000 (the shipped model:
     DPM-Solver++ 25 calls, 4.5 images/s on 2 CPU cores).
   * Coverage: a diffusion model is trained to denoise every training image, so it tends to cover every mode: the
     shipped model makes all 10 digits, recall 0.913, class histogram 0.067 (TV) from the real one. GANs are known
     for mode collapse, which these metrics catch: keeping only the 1s of real MNIST keeps precision > 0.8 but
     drops recall below 0.3 and covers 1 class (tests/test_metrics.py).
   * Training: a plain regression loss, stable, whose curve means something; a GAN is a two-player game that can
     oscillate or collapse, and its losses say little about quality.
   * Abilities: diffusion gives a likelihood bound, a deterministic ODE between noise and image (inversion,
     interpolation), guidance, and inpainting without retraining (sd_course/pipeline.py); a GAN gives speed and a
     compact latent space to edit in.
   A GAN trained on the same digits with the same CPU budget, scored with ``sd-course evaluate --samples``, is the
   experiment that puts numbers on both columns; it is not done yet.
Cmd: sd-course evaluate --model pipelines/ddpm-mnist --scheduler dpm++ --num_inference_steps 20 --num_samples 1000 --reference ../shared/data/mnist:test
Cmd: sd-course evaluate --samples my_gan_samples/ --reference ../shared/data/mnist:test

Reading order: 1. features, 2. the metrics (math), 3. scoring a set of images, 4. evaluate / compare / the
training-time evaluator, 5. corruptions used to show that the metric tracks quality.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from sd_course.errors import InputError
from sd_course.schedulers import check_steps_value

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
    from sd_course.classifier import load_classifier

    return load_classifier(path)


def features_of(images_uint8: torch.Tensor, classifier, show_progress: bool = False, desc: str = "features"):
    """uint8 images (N, 1, 28, 28) -> (features (N, D) float64, class probabilities (N, 10) float64)."""
    from sd_course.classifier import predict

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
    from sd_course.classifier import check_images
    from sd_course.data import load_images

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
# 4. evaluate / compare / evaluation during training
# ================================================================================================================


def load_sample_folder(folder: str | Path, num_images: int | None = None) -> torch.Tensor:
    """A folder of image files (sorted by name) -> uint8 (N, C, H, W); grayscale stays 1 channel.

    An RGB file whose three channels are equal (how many GAN repos save digits) is read as grayscale.
    """
    from PIL import Image, UnidentifiedImageError

    from sd_course.data import channels_of

    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"--samples {str(folder)!r} is not a folder; pass a folder of PNG images")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputError(f"--samples folder {str(folder)!r} holds no images ({'/'.join(IMAGE_SUFFIXES)}); "
                         "write the generated images there as PNG files, one image per file")
    if num_images is not None:
        files = files[:num_images]
    images = []
    for path in files:
        try:
            with Image.open(path) as image:
                image = image.convert("L" if channels_of(image.mode) == 1 else "RGB")
                array = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
                array = array.view(image.size[1], image.size[0], -1).permute(2, 0, 1)
        except (UnidentifiedImageError, OSError) as e:
            raise InputError(f"{path} could not be read as an image ({e}); remove or replace it") from e
        if array.shape[0] == 3 and torch.equal(array[0], array[1]) and torch.equal(array[1], array[2]):
            array = array[:1]
        images.append(array.contiguous())
    shapes = {tuple(a.shape) for a in images}
    if len(shapes) > 1:
        raise InputError(f"the images in {str(folder)!r} do not all have the same size and channels: {sorted(shapes)}; "
                         "resize them to one size")
    return torch.stack(images)


def _generate(model_or_pipe, num_samples: int, seed: int, scheduler: str | None, num_inference_steps: int | None,
              batch_size: int, eta: float | None, show_progress: bool):
    """Sample from a pipeline folder (or a loaded pipeline); returns (uint8 images, scheduler name, steps)."""
    from sd_course.pipeline import generate, load_pipeline

    pipe = load_pipeline(str(model_or_pipe), scheduler) if isinstance(model_or_pipe, (str, Path)) else model_or_pipe
    kwargs = dict(eta=eta) if eta is not None else {}
    images = generate(pipe, num_samples, batch_size=batch_size, num_inference_steps=num_inference_steps, seed=seed,
                      show_progress=show_progress, **kwargs)
    # Record what actually ran: every diffusers scheduler keeps the step count of its last set_timesteps call.
    steps = getattr(pipe.scheduler, "num_inference_steps", None) or num_inference_steps
    return images, type(pipe.scheduler).__name__, steps


def pipeline_image_shape(pipe) -> tuple:
    """(C, H, W) of the images a pipeline makes, read from its U-Net's config (no sampling needed)."""
    config = pipe.unet.config
    size = config.sample_size if isinstance(config.sample_size, int) else tuple(config.sample_size)[0]
    return config.out_channels, size, size


def _check_counts(num_samples: int | None, kid_subset_size: int | None) -> None:
    if num_samples is not None and num_samples < 2:
        raise InputError(f"--num_samples must be at least 2, got {num_samples}")
    if kid_subset_size is not None and num_samples is not None and kid_subset_size > num_samples:
        raise InputError(f"too few samples for KID's subset size: --num_samples {num_samples} < --kid_subset_size "
                         f"{kid_subset_size}; pass --num_samples >= {kid_subset_size} or a smaller --kid_subset_size")


def evaluate(model: str | None = None, samples: str | None = None, reference: str = DEFAULT_REFERENCE,
             num_samples: int | None = None, seed: int = 0, scheduler: str | None = None,
             num_inference_steps: int | None = None, eta: float | None = None, batch_size: int = 250,
             num_reference: int | None = None, kid_subset_size: int | None = None, kid_subsets: int = KID_SUBSETS,
             nearest_k: int = NEAREST_K, classifier: str | None = None, inception_fid_: bool = False,
             inception_weights: str | None = None, output_json: str | None = None, show_progress: bool = True,
             print_table: bool = True, guidance_scale: float = 4.0) -> dict:
    """Score a pipeline folder (``model``; ``num_samples`` default 1000) or a folder of images (``samples``).
    A text-to-image pipeline is asked for each digit in turn and also scored on prompt accuracy."""
    from sd_course import __version__

    if (model is None) == (samples is None):
        raise InputError("give exactly one of --model (a pipeline folder) or --samples (a folder of PNG images)")
    _check_counts(num_samples, kid_subset_size)
    check_steps_value(num_inference_steps)
    start = time.time()
    from sd_course.text_to_image import is_text_to_image

    if model is not None and is_text_to_image(model):
        result = evaluate_text_to_image(model, reference, num_samples or 1000, seed, scheduler or "dpm++",
                                        num_inference_steps, guidance_scale, batch_size, num_reference, classifier,
                                        show_progress)
        result.update(sd_course_version=__version__, seconds=round(time.time() - start, 1))
        if print_table:
            print(format_metrics(result))
            print(f"prompt accuracy: {result['prompt_accuracy']:.3f} (training phrasings), "
                  f"{result['prompt_accuracy_heldout']:.3f} (held-out phrasings)")
        if output_json:
            Path(output_json).parent.mkdir(parents=True, exist_ok=True)
            Path(output_json).write_text(json.dumps(result, indent=2) + "\n")
            print(f"wrote {output_json}")
        return result
    extractor = load_feature_extractor(classifier)
    inception = build_inception_fid(inception_weights) if inception_fid_ or inception_weights else None
    # The cheap checks first: the user's folder or pipeline, then the reference against them, then the sampling.
    if samples is not None:
        images = load_sample_folder(samples, num_samples)
        shape, what = tuple(images.shape[1:]), f"images in {samples!r}"
    else:
        from sd_course.pipeline import load_pipeline

        pipe = load_pipeline(model, scheduler)
        shape, what = pipeline_image_shape(pipe), f"samples of {model!r}"
    ref = prepare_reference(reference, extractor, num_reference, keep_images=inception is not None,
                            show_progress=show_progress, sample_shape=shape, what=what)
    info = dict(source="samples" if samples is not None else "model", model=model, samples=samples, seed=seed)
    if samples is not None:
        info.update(scheduler=None, num_inference_steps=None)
    else:
        images, info["scheduler"], info["num_inference_steps"] = _generate(
            pipe, num_samples or 1000, seed, scheduler, num_inference_steps, batch_size, eta, show_progress)
        info["eta"] = eta
    result = score_images(images, ref, extractor, seed, kid_subset_size, kid_subsets, nearest_k, show_progress)
    if inception is not None:
        result["fid_inception"] = inception_fid(images, ref.images, inception, show_progress=show_progress)
    result.update(info)
    result.update(reference_summary(ref, extractor))
    result.update(sd_course_version=__version__, seconds=round(time.time() - start, 1))
    if print_table:
        print(format_metrics(result))
    if output_json:
        Path(output_json).parent.mkdir(parents=True, exist_ok=True)
        Path(output_json).write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {output_json}")
    return result


def generate_digits_from_prompts(pipe, num_samples: int, templates, seed: int = 0, num_inference_steps: int = 25,
                                 guidance_scale: float = 4.0, batch_size: int = 250, show_progress: bool = True):
    """``num_samples`` images of a text-to-image pipeline, digit ``i % 10`` asked for by caption template
    ``(i // 10) % len(templates)``; returns (uint8 images cropped to 28x28, the digits asked for)."""
    from sd_course.latents import crop_to
    from sd_course.text_to_image import caption, generate_from_prompts

    digits = torch.arange(num_samples) % 10
    prompts = [caption(int(d), templates[(i // 10) % len(templates)]) for i, d in enumerate(digits)]
    images = generate_from_prompts(pipe, prompts, 1, num_inference_steps, guidance_scale, seed=seed,
                                   batch_size=batch_size, show_progress=show_progress)
    return crop_to(images, 28), digits


def prompt_accuracy(probs: torch.Tensor, digits: torch.Tensor) -> dict:
    """The share of images the classifier reads as the digit the prompt asked for, overall and per digit."""
    hit = probs.argmax(-1) == digits
    return {"prompt_accuracy": hit.double().mean().item(),
            "prompt_accuracy_per_digit": [hit[digits == d].double().mean().item() for d in range(10)]}


def evaluate_text_to_image(model: str, reference: str = DEFAULT_REFERENCE, num_samples: int = 1000, seed: int = 0,
                           scheduler: str | None = "dpm++", num_inference_steps: int | None = 25,
                           guidance_scale: float = 4.0, batch_size: int = 250, num_reference: int | None = None,
                           classifier: str | None = None, show_progress: bool = True) -> dict:
    """A text-to-image pipeline: prompt accuracy on the training phrasings and on held-out ones, and the usual
    FID / KID / precision / recall of the training-phrasing samples (all ten digits, equally many)."""
    from sd_course.text_to_image import HELDOUT_TEMPLATES, TRAIN_TEMPLATES, load_text_to_image_pipeline

    pipe = load_text_to_image_pipeline(model, scheduler)
    steps = num_inference_steps or 25
    extractor = load_feature_extractor(classifier)
    ref = prepare_reference(reference, extractor, num_reference, show_progress=show_progress,
                            sample_shape=(pipe.vae.config.out_channels, 28, 28), what=f"samples of {model!r}")
    result = {}
    for name, templates in (("train_templates", TRAIN_TEMPLATES), ("heldout_templates", HELDOUT_TEMPLATES)):
        images, digits = generate_digits_from_prompts(pipe, num_samples, templates, seed, steps, guidance_scale,
                                                      batch_size, show_progress)
        _, probs = features_of(images, extractor)
        result[name] = prompt_accuracy(probs, digits)
        if name == "train_templates":
            result.update(score_images(images, ref, extractor, seed, show_progress=show_progress))
    result["prompt_accuracy"] = result["train_templates"]["prompt_accuracy"]
    result["prompt_accuracy_heldout"] = result["heldout_templates"]["prompt_accuracy"]
    result.update(model=model, scheduler=scheduler, num_inference_steps=steps, guidance_scale=guidance_scale,
                  seed=seed, **reference_summary(ref, extractor))
    return result


TABLE_METRICS = (f"fid_{FEATURE_NAME}", f"kid_{FEATURE_NAME}_mean", f"kid_{FEATURE_NAME}_std",
                 f"precision_{FEATURE_NAME}", f"recall_{FEATURE_NAME}", f"mean_confidence_{FEATURE_NAME}",
                 f"classes_covered_{FEATURE_NAME}", f"class_histogram_tv_{FEATURE_NAME}", "fid_inception")


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"
    if isinstance(value, list):
        return " ".join(f"{v:.2f}" for v in value)
    return str(value)


def format_metrics(result: dict) -> str:
    """One result as a two-column table (metric, value), then what it was computed from."""
    rows = [(k, _fmt(result[k])) for k in TABLE_METRICS if k in result]
    if f"class_histogram_{FEATURE_NAME}" in result:
        rows.append(("class histogram 0..9", _fmt(result[f"class_histogram_{FEATURE_NAME}"])))
        rows.append(("reference histogram", _fmt(result["reference_class_histogram"])))
    for key in ("n", "seed", "scheduler", "num_inference_steps", "reference", "reference_n", "feature_extractor"):
        if result.get(key) is not None:
            rows.append((key, _fmt(result[key])))
    rows.append(("feature_extractor_sha256", result["feature_extractor_sha256"][:16] + "..."))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def format_table(results: list[dict], labels: list[str]) -> str:
    """Several results as one table: a row per model, a column per metric."""
    columns = [k for k in TABLE_METRICS if any(k in r for r in results)]
    short = [c.replace(f"_{FEATURE_NAME}", "") for c in columns]
    cells = [[label] + [_fmt(r.get(c, "")) for c in columns] for label, r in zip(labels, results)]
    header = ["model"] + short
    widths = [max(len(str(row[i])) for row in [header] + cells) for i in range(len(header))]
    lines = ["  ".join(f"{str(v):<{w}}" for v, w in zip(row, widths)) for row in [header] + cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    note = f"(features: {FEATURE_NAME}; lower FID/KID is better, higher precision/recall is better)"
    return "\n".join(lines) + "\n" + note


# ---- compare -----------------------------------------------------------------------------------------------------

EPOCH_RE = re.compile(r"^epoch-(\d+)$")


@dataclass
class Entry:
    """One column of a comparison: a pipeline folder (maybe an epoch snapshot of a run) or a folder of images."""

    label: str
    path: Path
    kind: str  # "model" or "samples"
    run: str | None = None  # the training run an epoch snapshot belongs to
    epoch: int | None = None


def _unet_hash(folder: Path) -> str | None:
    from sd_course.classifier import sha256_of

    files = sorted((folder / "unet").glob("*.safetensors"))
    return sha256_of(files[0]) if files else None


def expand_entries(paths: list[str]) -> list[Entry]:
    """Each argument -> entries: a run folder with ``epoch-XXXX/`` snapshots -> every snapshot (and its final
    pipeline when it differs from the last snapshot); a pipeline folder -> itself; a folder of images -> samples."""
    entries = []
    for raw in paths:
        path = Path(raw)
        if not path.is_dir():
            raise InputError(f"{raw!r} is not a folder; pass pipeline folders, training runs or folders of PNG images")
        epochs = sorted((int(m.group(1)), p) for p in path.iterdir()
                        if p.is_dir() and (m := EPOCH_RE.match(p.name)) and (p / "model_index.json").is_file())
        for epoch, snapshot in epochs:
            entries.append(Entry(f"{raw.rstrip('/')}/{snapshot.name}", snapshot, "model", raw, epoch))
        if (path / "model_index.json").is_file():
            if not epochs or _unet_hash(path) != _unet_hash(epochs[-1][1]):
                entries.append(Entry(raw, path, "model"))
        elif not epochs:
            if not any(p.suffix.lower() in IMAGE_SUFFIXES for p in path.iterdir()):
                raise InputError(f"{raw!r} is neither a pipeline folder (model_index.json), a training run "
                                 "(epoch-XXXX/ snapshots) nor a folder of images")
            entries.append(Entry(raw, path, "samples"))
    return entries


def upscale(images_uint8: torch.Tensor, factor: int):
    """uint8 (N, C, H, W) -> list of PIL images, each pixel a factor x factor block (no smoothing of the digits)."""
    from PIL import Image

    out = []
    for image in images_uint8:
        array = image.permute(1, 2, 0).squeeze(-1).numpy()
        pil = Image.fromarray(array, mode="L" if array.ndim == 2 else "RGB").convert("RGB")
        out.append(pil.resize((pil.width * factor, pil.height * factor), Image.NEAREST))
    return out


def comparison_grid(image_sets: list[torch.Tensor], labels: list[str], columns: int = 8, factor: int = 4):
    """A row per model, the same sample indices (hence the same seeds) in every column; labels on the left."""
    from diffusers.utils import make_image_grid
    from PIL import Image, ImageDraw

    tiles = [tile for images in image_sets for tile in upscale(images[:columns], factor)]
    grid = make_image_grid(tiles, rows=len(image_sets), cols=columns)
    margin = 8 + 7 * max(len(label) for label in labels)
    canvas = Image.new("RGB", (grid.width + margin, grid.height), "white")
    canvas.paste(grid, (margin, 0))
    draw, row_height = ImageDraw.Draw(canvas), grid.height // len(image_sets)
    for i, label in enumerate(labels):
        draw.text((4, i * row_height + row_height // 2 - 5), label, fill="black")
    return canvas


def plot_metrics_vs_epoch(entries: list[Entry], results: list[dict], output: str | Path) -> Path:
    """FID (left) and precision / recall (right) against epoch, one line per training run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, (ax_fid, ax_pr) = plt.subplots(1, 2, figsize=(10, 4))
    runs = sorted({e.run for e in entries if e.epoch is not None})
    for run in runs:
        points = sorted((e.epoch, r) for e, r in zip(entries, results) if e.run == run and e.epoch is not None)
        epochs = [p[0] for p in points]
        ax_fid.plot(epochs, [p[1][f"fid_{FEATURE_NAME}"] for p in points], "o-", label=run)
        ax_pr.plot(epochs, [p[1][f"precision_{FEATURE_NAME}"] for p in points], "o-", label=f"{run} precision")
        ax_pr.plot(epochs, [p[1][f"recall_{FEATURE_NAME}"] for p in points], "s--", label=f"{run} recall")
    ax_fid.set(xlabel="epoch", ylabel=f"fid_{FEATURE_NAME} (lower is better)", yscale="log")
    ax_pr.set(xlabel="epoch", ylabel="precision / recall (k=3)", ylim=(0, 1.02))
    for ax in (ax_fid, ax_pr):
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"n = {results[0]['n']} samples, seed {results[0]['seed']}")
    fig.tight_layout()
    fig.savefig(output, dpi=120)
    plt.close(fig)
    return Path(output)


def compare(models: list[str], num_samples: int = 500, seed: int = 0, reference: str = DEFAULT_REFERENCE,
            scheduler: str | None = None, num_inference_steps: int | None = None, eta: float | None = None,
            batch_size: int = 250, num_reference: int | None = None, kid_subset_size: int | None = None,
            kid_subsets: int = KID_SUBSETS, classifier: str | None = None, output_dir: str = "compare",
            grid_columns: int = 8, show_progress: bool = True) -> list[dict]:
    """Score several models with the same seeds; write ``compare.json``, ``compare_grid.png`` and, for training
    runs with ``epoch-XXXX/`` snapshots, ``metrics_vs_epoch.png``. Returns one result dict per entry."""
    from sd_course import __version__

    if not models:
        raise InputError("give at least one model: sd-course compare MODEL [MODEL ...]")
    _check_counts(num_samples, kid_subset_size)
    check_steps_value(num_inference_steps)
    entries = expand_entries(models)
    extractor = load_feature_extractor(classifier)
    ref = prepare_reference(reference, extractor, num_reference, show_progress=show_progress)
    results, image_sets = [], []
    for entry in tqdm(entries, desc="models", disable=not show_progress or len(entries) == 1):
        if entry.kind == "samples":
            images, sched, steps = load_sample_folder(entry.path, num_samples), None, None
            check_same_kind(tuple(images.shape[1:]), ref.image_shape, ref.spec, f"images of {entry.label!r}")
        else:
            from sd_course.pipeline import load_pipeline

            pipe = load_pipeline(str(entry.path), scheduler)
            check_same_kind(pipeline_image_shape(pipe), ref.image_shape, ref.spec, f"samples of {entry.label!r}")
            images, sched, steps = _generate(pipe, num_samples, seed, scheduler, num_inference_steps, batch_size,
                                             eta, show_progress)
        result = score_images(images, ref, extractor, seed, kid_subset_size, kid_subsets, show_progress=False)
        result.update(model=entry.label, epoch=entry.epoch, run=entry.run, seed=seed, scheduler=sched,
                      num_inference_steps=steps)
        results.append(result)
        image_sets.append(images)

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    labels = [e.label for e in entries]
    print(format_table(results, labels))
    summary = dict(reference_summary(ref, extractor), sd_course_version=__version__, results=results)
    (out / "compare.json").write_text(json.dumps(summary, indent=2) + "\n")
    comparison_grid(image_sets, labels, grid_columns).save(out / "compare_grid.png")
    written = ["compare.json", "compare_grid.png"]
    if any(e.epoch is not None for e in entries):
        plot_metrics_vs_epoch(entries, results, out / "metrics_vs_epoch.png")
        written.append("metrics_vs_epoch.png")
    print(f"wrote {', '.join(str(out / w) for w in written)}")
    return results


# ---- evaluation during training ----------------------------------------------------------------------------------


def make_evaluator(reference: str, num_samples: int, seed: int = 0, num_inference_steps: int = 50,
                   scheduler: str | None = None, batch_size: int = 250, kid_subset_size: int | None = None,
                   num_reference: int | None = None, classifier: str | None = None, show_progress: bool = False):
    """A scorer for training: ``evaluator(pipeline) -> {metric name: float}``.

    The reference features are computed once, here; each call only samples ``num_samples`` images (always from the
    same seed, so the same starting noise: changes between epochs come from the model, not the dice) and scores
    them. ``scheduler`` (a name understood by ``sd_course.pipeline.load_pipeline``) replaces the training
    pipeline's scheduler for sampling; the pipeline itself is not changed.
    """
    _check_counts(num_samples, kid_subset_size)
    extractor = load_feature_extractor(classifier)
    ref = prepare_reference(reference, extractor, num_reference, show_progress=show_progress)
    sampler = {}  # the pipeline that samples: built on the first call when another scheduler is asked for

    def evaluator(pipeline) -> dict[str, float]:
        if scheduler is not None:
            if "pipe" not in sampler:  # load_pipeline knows the schedulers; give it a saved copy, once
                import tempfile

                from sd_course.pipeline import load_pipeline

                with tempfile.TemporaryDirectory() as tmp:
                    pipeline.save_pretrained(tmp)
                    sampler["pipe"] = load_pipeline(tmp, scheduler)
            sampler["pipe"].unet = pipeline.unet  # always the live (just trained) weights
            pipe = sampler["pipe"]
        else:
            pipe = pipeline
        check_same_kind(pipeline_image_shape(pipe), ref.image_shape, ref.spec, "samples of the pipeline")
        was_training = pipe.unet.training
        pipe.unet.eval()
        try:
            images, _, _ = _generate(pipe, num_samples, seed, None, num_inference_steps, batch_size, None,
                                     show_progress)
        finally:
            pipe.unet.train(was_training)
        result = score_images(images, ref, extractor, seed, kid_subset_size)
        return {k: float(v) for k, v in result.items() if isinstance(v, (int, float)) and k not in
                ("n", "kid_subset_size", "kid_subsets", "nearest_k", "precision_recall_n")}

    return evaluator


def training_evaluator(cfg):
    """The ``--eval_epochs K --eval_samples N`` hook of ``sd_course.training`` (see training/train_unconditional.py):
    samples ``cfg.eval_samples`` images with DDIM (``cfg.ddpm_num_inference_steps`` steps, seed ``cfg.seed``) and
    scores them against ``cfg.eval_reference``."""
    return make_evaluator(cfg.eval_reference, cfg.eval_samples, seed=cfg.seed,
                          num_inference_steps=cfg.ddpm_num_inference_steps, scheduler="ddim")


# ================================================================================================================
# 5. Corruptions: does the metric track quality? (tests/test_metrics.py, benchmarks/metric_floor.py)
# ================================================================================================================


def add_gaussian_noise(images_uint8: torch.Tensor, sigma: float, seed: int = 0) -> torch.Tensor:
    """Add N(0, sigma^2) noise to pixels in [0, 1] (sigma = 0.1 is a tenth of the pixel range), clip, back to uint8."""
    generator = torch.Generator().manual_seed(seed)
    x = images_uint8.float() / 255 + sigma * torch.randn(images_uint8.shape, generator=generator)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


def gaussian_blur(images_uint8: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
    """Blur each channel with a Gaussian kernel of std ``sigma`` pixels (radius 3 sigma), zero padding."""
    import torch.nn.functional as F

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
