"""A denoiser whose optimum is known in closed form: the Bayes-optimal ``eps*(x_t, t)`` for Gaussian-mixture data.

A trained U-Net only *approximates* the best possible denoiser, so a sampler that gives bad images might be wrong, or
the model might be. For data drawn from a mixture of Gaussians the best denoiser can be written down exactly, and then
any error in the images is the sampler's (or the pipeline's). That is how ``tests/pixel/test_pipeline.py`` proves that
every scheduler works in ``sd_course.pixel.pipeline`` and that several are broken in diffusers' stock ``DDPMPipeline``:

    python -c "from sd_course.pixel.analytic import GaussianMixtureDenoiser as G; print(G.gaussian(0.2, 0.4).config)"
    sd-course sample --model analytic:mnist --scheduler euler --output analytic_samples.png
    sd-course trajectory --model analytic:mnist --scheduler ddim --output_dir figures/

The module has the same call signature as diffusers' ``UNet2DModel`` (``model(x_t, t).sample``, a ``.config`` with
``sample_size`` and ``in_channels``, ``.dtype``, ``.device``), so it drops into any pipeline in place of the U-Net.

Q: What is the forward process?
A: A fixed recipe that turns an image into noise in T small steps, ``q(x_t | x_{t-1}) = N(sqrt(1-beta_t) x_{t-1},
   beta_t I)``. Because Gaussians compose, any step can be reached in one jump: ``x_t = sqrt(abar_t) x_0 +
   sqrt(1 - abar_t) eps`` with ``eps ~ N(0, I)`` and ``abar_t = prod_{s<=t}(1 - beta_s)`` (Ho et al. 2020, eq. 4).
   Nothing is learned here; training just draws (x_0, t, eps), builds x_t this way and asks the network for eps.
   ``sd-course forward --timesteps 0,50,100,250,500,999 --output forward.png`` shows it on a real digit.
Cmd: sd-course forward --timesteps 0,50,100,250,500,750,999 --output forward.png
Fig: forward.png

Q: What is the reverse process, and why can a network learn it?
A: Sampling runs the chain backwards: start from x_T ~ N(0, I) and repeatedly draw x_{t-1} from
   ``p(x_{t-1} | x_t) = N(mu(x_t, t), sigma_t^2 I)`` (Algorithm 2 of Ho et al. 2020). For small steps the true
   reverse step is Gaussian too, and its mean needs only one unknown: the posterior mean of the clean image,
   ``E[x_0 | x_t]``. Tweedie's formula ties that to the score of the noisy data distribution:
   ``E[x_0 | x_t] = (x_t + (1 - abar_t) grad log p_t(x_t)) / sqrt(abar_t)``. Minimising the training loss
   ``|| eps - eps_theta(x_t, t) ||^2`` makes eps_theta the conditional mean ``E[eps | x_t]`` (a least-squares fit
   learns the conditional mean), which is the same quantity: ``E[eps | x_t] = -sqrt(1 - abar_t) grad log p_t(x_t)``.
   So the network learns the score, and every sampler only needs the score.
Cmd: sd-course trajectory --model analytic:mnist --scheduler ddim --num_images 3 --output_dir figures/
Fig: figures/trajectory.png

Q: What is the best possible denoiser, and what does it look like for Gaussian-mixture data?
A: The one that minimises the expected squared error, i.e. the posterior mean (the Bayes-optimal estimate under
   squared loss). For ``x_0 ~ N(mu, s^2 I)``: x_t is Gaussian with mean ``sqrt(abar) mu`` and variance
   ``abar s^2 + 1 - abar``, and
       ``E[x_0 | x_t] = mu + sqrt(abar) s^2 / (abar s^2 + 1 - abar) * (x_t - sqrt(abar) mu)``
       ``eps*(x_t, t) = sqrt(1 - abar) (x_t - sqrt(abar) mu) / (abar s^2 + 1 - abar)``.
   For a mixture ``sum_k pi_k N(mu_k, s_k^2 I)`` it is the same per component, averaged with the posterior weights
   ``r_k(x_t) ~ pi_k N(x_t; sqrt(abar) mu_k, (abar s_k^2 + 1 - abar) I)`` ("which component did x_t come from?").
Cmd: sd-course sample --model analytic:two-gaussians --scheduler dpm++ --num_images 16 --output two_gaussians.png
Fig: two_gaussians.png

Q: Why does the predicted x_0 look like a blurry average early in sampling, and sharp at the end?
A: Because it *is* an average: ``E[x_0 | x_t]`` averages every clean image consistent with x_t. At high noise many
   digits are consistent (r_k spread out: a blur of all of them); as t falls the posterior weights concentrate on one
   component and the average becomes one sharp image. ``sd-course trajectory`` shows the predicted x_0 row doing
   exactly this.
Cmd: sd-course trajectory --model analytic:mnist --scheduler ddim --num_images 3 --output_dir figures/
Fig: figures/trajectory.png

Q: If the optimal denoiser is known, why train a network at all?
A: Only for a *known* distribution. The optimum for the *training set* is also known in closed form: the data
   distribution of N training images is a mixture of N deltas (``s -> 0`` here), and its exact denoiser is this
   module with one component per image. Sampling with it reproduces training images: ``analytic:mnist`` is that
   model for N = 16 digits (the first 16 of the bundled ``builtin:mnist-2k:train``, ``named_denoiser`` below), with a
   small width s = 0.05 (in the model's [-1, 1] range, about 6 grey levels) around each. As t falls its posterior
   weights ``r_k`` concentrate on one of the 16, so every sample is one of those 16 digits plus faint noise: at most
   16 different images, however many are drawn, and never a new digit. The same construction on the 60,000 digits
   the shipped model was trained on would only ever return those 60,000 (and would compare x_t with all of them at
   every call). The empirical optimum is a perfect memoriser, so it cannot be what makes diffusion useful. A trained
   network generalises because it *cannot* fit this optimum: its smooth inductive bias (convolutions, limited
   capacity, early stopping) yields new digits instead of copies (Kadkhodaie et al. 2024). ``sd-course predictions``
   measures it on the shipped model and its 60,000 training digits (per-pixel v-MSE, its training loss): the optimum
   (width s = 0) is exact, below 1e-12 for every t up to 400, where the network stays at
   [0.0505](docs/figures/predictions/mnist-60k/predictions.json#loss_per_t.t=300.network_train) (t = 300), far above the minimum of its own objective. On MNIST
   test digits the network keeps [0.0557](docs/figures/predictions/mnist-60k/predictions.json#loss_per_t.t=300.network_heldout) while the optimum of the training
   set jumps to [0.418](docs/figures/predictions/mnist-60k/predictions.json#loss_per_t.t=300.optimal_heldout), and to [2,150](docs/figures/predictions/mnist-60k/predictions.json#loss_per_t.t=0.optimal_heldout) at
   t = 0: it denoises a new digit into the nearest training digit. Only at high noise (t = 850 and above), where
   both predict a blur of many digits, do the two agree. Whether a network copies depends on how many digits it
   must fit (benchmarks/memorisation.py; distance of each sample to its nearest training digit, as a multiple of a
   new real digit's): the same U-Net and recipe, 2,000 steps of 16 images, trained on 16 digits draws near copies
   ([92%](benchmarks/results/quick_v1/memorisation.json#rows.name=unet-16.sample_near_copies*100) of its samples, median distance [0.11x](benchmarks/results/quick_v1/memorisation.json#rows.name=unet-16.median_ratio); the
   exact denoiser [0.02x](benchmarks/results/quick_v1/memorisation.json#rows.name=exact-16.median_ratio)), trained on 2,000 draws none
   ([0%](benchmarks/results/quick_v1/memorisation.json#rows.name=unet-2k.sample_near_copies*100), [183](benchmarks/results/quick_v1/memorisation.json#rows.name=unet-2k.distinct_nearest) different nearest digits for 200
   samples), and the shipped model on 60,000 draws new digits as close to its training set as new real digits are
   ([1.05x](benchmarks/results/quick_v1/memorisation.json#rows.name=unet-60k.median_ratio)).
Cmd: sd-course sample --model analytic:mnist --num_images 16 --output memorised.png
Cmd: sd-course predictions --train_dataset ../shared/data/mnist:train --test_dataset ../shared/data/mnist:test --output_dir docs/figures/predictions/mnist-60k
Cmd: python benchmarks/memorisation.py --run exact-16=analytic:mnist --num_samples 64
Fig: memorised.png
Fig: docs/figures/predictions/mnist-60k/loss_per_t.png
Fig: docs/figures/memorisation.png
"""

from __future__ import annotations

import math

import torch
from diffusers import DDPMScheduler
from diffusers.configuration_utils import FrozenDict
from diffusers.models.unets.unet_2d import UNet2DOutput

from sd_course.core.data import load_images, to_model_range
from sd_course.core.errors import InputError
from sd_course.core.schedulers import alpha_bar_at, training_alphas_cumprod

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


class GaussianMixtureDenoiser(torch.nn.Module):
    """The exact ``E[eps | x_t]`` (or v, or x_0) for data ``x_0 ~ sum_k pi_k N(mu_k, s_k^2 I)``.

    ``means``: (K, C, H, W) in the model range [-1, 1]; ``stds``: (K,) or one number, >= 0 (0: a delta at the mean,
    so ``stds=0`` with one mean per training image is the *empirical* distribution of a training set, whose exact
    denoiser is the minimiser of the training loss: ``sd_course/pixel/predictions.py``); ``weights``: (K,) summing
    to 1 (default uniform); ``scheduler``: the *training* noise schedule (any compatible scheduler; its
    ``prediction_type`` is used unless one is given). Computes in float64, returns the input's dtype.
    """

    def __init__(self, means: torch.Tensor, stds, scheduler, weights=None, prediction_type: str | None = None):
        super().__init__()
        means = torch.as_tensor(means, dtype=torch.float64)
        if means.ndim != 4:
            raise InputError(f"means must be (K, C, H, W), got shape {tuple(means.shape)}")
        k, c, h, w = means.shape
        stds = torch.as_tensor(stds, dtype=torch.float64).expand(k).clone()
        weights = torch.full((k,), 1.0 / k, dtype=torch.float64) if weights is None else \
            torch.as_tensor(weights, dtype=torch.float64)
        if weights.shape != (k,) or (weights <= 0).any() or abs(float(weights.sum()) - 1) > 1e-6:
            raise InputError(f"weights must be {k} positive numbers summing to 1, got {weights.tolist()}")
        if (stds < 0).any():
            raise InputError(f"stds must be >= 0, got {stds.tolist()}")
        prediction_type = prediction_type or scheduler.config.get("prediction_type", "epsilon")
        if prediction_type not in PREDICTION_TYPES:
            raise InputError(f"prediction_type {prediction_type!r} is not one of {list(PREDICTION_TYPES)}")
        self.register_buffer("means", means.reshape(k, -1))  # (K, D), D = C*H*W
        self.register_buffer("stds", stds)
        self.register_buffer("log_weights", weights.log())
        self.register_buffer("alphas_cumprod", training_alphas_cumprod(scheduler))
        # What a pipeline reads from a UNet2DModel's config.
        self.config = FrozenDict(sample_size=h, in_channels=c, out_channels=c, prediction_type=prediction_type,
                                 num_train_timesteps=len(self.alphas_cumprod))

    # -- constructors ---------------------------------------------------------------------------------------------

    @classmethod
    def gaussian(cls, mean: float = 0.2, std: float = 0.4, image_shape=(1, 8, 8), scheduler=None, **kwargs):
        """``x_0 ~ N(mean, std^2 I)`` (one component)."""
        means = torch.full((1, *image_shape), float(mean))
        return cls(means, std, scheduler or _default_scheduler(), **kwargs)

    @classmethod
    def two_gaussians(cls, means=(0.4, -0.4), stds=(0.15, 0.15), weights=(0.3, 0.7), image_shape=(1, 8, 8),
                      scheduler=None, **kwargs):
        """Two flat grey images with pixel noise: ``pi_1 N(m_1, s_1^2 I) + pi_2 N(m_2, s_2^2 I)``. The mixing weights
        are decided early in sampling (at high noise), so a sampler that is off there gets them wrong: a sharper test
        than one Gaussian."""
        mu = torch.stack([torch.full(image_shape, float(m)) for m in means])
        return cls(mu, torch.tensor(stds), scheduler or _default_scheduler(), weights=torch.tensor(weights), **kwargs)

    @classmethod
    def from_images(cls, images_uint8: torch.Tensor, std: float = 0.02, scheduler=None, **kwargs):
        """One small Gaussian around each image: the optimal denoiser of a *finite training set* (it memorises)."""
        return cls(to_model_range(images_uint8), std, scheduler or _default_scheduler(), **kwargs)

    # -- what a pipeline reads from a UNet2DModel -----------------------------------------------------------------

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32  # the dtype of the samples the pipeline should draw

    @property
    def device(self) -> torch.device:
        return self.means.device

    # -- the math -------------------------------------------------------------------------------------------------

    def posterior_weights(self, x_t: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
        """``r_k(x_t)``, the posterior probability of each component (N, K), for x_t (N, D) at ``alpha_bar`` (N, 1);
        float64. A softmax of log-likelihoods (log-sum-exp: the largest is subtracted first), so even a delta
        component (s_k = 0) at t = 0, whose log-likelihoods are of order -1e5, gives exact weights."""
        s2 = self.stds.pow(2)[None]  # (1, K)
        var = alpha_bar * s2 + (1 - alpha_bar)  # Var[x_t | component k] = abar s_k^2 + 1 - abar   (N, K)
        # ||x_t - sqrt(abar) mu_k||^2 for all pairs, without an (N, K, D) tensor
        dist2 = (x_t.pow(2).sum(1, keepdim=True) - 2 * alpha_bar.sqrt() * x_t @ self.means.T
                 + alpha_bar * self.means.pow(2).sum(1)[None])
        d = x_t.shape[1]
        # r_k(x_t): posterior probability of component k, Bayes' rule with the Gaussian likelihood of x_t
        log_r = self.log_weights[None] - 0.5 * d * var.log() - 0.5 * dist2 / var
        r = (log_r - log_r.amax(1, keepdim=True)).exp()  # softmax over k, written out (torch.softmax is slow in fp64)
        return r / r.sum(1, keepdim=True)

    def posterior_mean(self, x_t: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
        """``E[x_0 | x_t]`` for x_t of shape (N, D) at noise level ``alpha_bar`` (N, 1); float64."""
        a = alpha_bar.sqrt()  # sqrt(abar_t)
        s2 = self.stds.pow(2)[None]  # (1, K)
        var = alpha_bar * s2 + (1 - alpha_bar)  # (N, K)
        r = self.posterior_weights(x_t, alpha_bar)
        # E[x_0 | x_t, k] = mu_k + sqrt(abar) s_k^2 / var_k (x_t - sqrt(abar) mu_k), averaged over k with weights r_k
        gain = a * s2 / var  # (N, K)
        return (r * (1 - a * gain)) @ self.means + (r * gain).sum(1, keepdim=True) * x_t

    def forward(self, sample: torch.Tensor, timestep, return_dict: bool = True, **unused):
        n = sample.shape[0]
        x_t = sample.reshape(n, -1).to(torch.float64)
        t = torch.as_tensor(timestep, dtype=torch.float64).reshape(-1).to("cpu").expand(n)
        # abar at a (possibly fractional) timestep, as the sigma schedulers interpolate it: see schedulers.py
        alpha_bar = alpha_bar_at(t, self.alphas_cumprod.cpu()).to(x_t.device)[:, None]
        x0 = self.posterior_mean(x_t, alpha_bar)
        # Tweedie: E[x_0 | x_t] = (x_t + (1-abar) grad log p_t) / sqrt(abar), and eps* = -sqrt(1-abar) grad log p_t,
        # so eps* = (x_t - sqrt(abar) E[x_0 | x_t]) / sqrt(1 - abar).
        eps = (x_t - alpha_bar.sqrt() * x0) / (1 - alpha_bar).sqrt()
        if self.config.prediction_type == "epsilon":
            out = eps
        elif self.config.prediction_type == "v_prediction":  # v = sqrt(abar) eps - sqrt(1-abar) x_0 (Salimans & Ho)
            out = alpha_bar.sqrt() * eps - (1 - alpha_bar).sqrt() * x0
        else:  # "sample"
            out = x0
        out = out.reshape(sample.shape).to(sample.dtype)
        return UNet2DOutput(sample=out) if return_dict else (out,)

    # -- the data distribution itself -----------------------------------------------------------------------------

    def sample_data(self, num_images: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Exact draws of x_0 (float, shape (N, C, H, W)): what a perfect sampler should reproduce."""
        k = torch.multinomial(self.log_weights.exp(), num_images, replacement=True, generator=generator)
        noise = torch.randn(num_images, self.means.shape[1], generator=generator, dtype=torch.float64)
        x0 = self.means[k] + self.stds[k, None] * noise
        return x0.reshape(num_images, self.config.in_channels, self.config.sample_size, self.config.sample_size)

    def component_of(self, images: torch.Tensor) -> torch.Tensor:
        """For each image, the index of the nearest component mean (to check the mixing weights of samples)."""
        flat = images.reshape(images.shape[0], -1).to(torch.float64)
        return torch.cdist(flat, self.means).argmin(1)


def _default_scheduler():
    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear")


# Named analytic "models" for `--model analytic:NAME` (sd_course.pixel.pipeline.load_pipeline).
ANALYTIC_MODELS = ("gaussian", "two-gaussians", "mnist")


def named_denoiser(name: str) -> GaussianMixtureDenoiser:
    """``gaussian`` (1x16x16, N(0.2, 0.4^2)), ``two-gaussians`` (1x16x16, weights 0.3/0.7) or ``mnist`` (16 real
    digits from the package's MNIST subset, 28x28, s = 0.05: the memorising optimum of a 16-image training set)."""
    if name == "gaussian":
        return GaussianMixtureDenoiser.gaussian(0.2, 0.4, image_shape=(1, 16, 16))
    if name == "two-gaussians":
        return GaussianMixtureDenoiser.two_gaussians(image_shape=(1, 16, 16))
    if name == "mnist":
        images, _ = load_images("builtin:mnist-2k:train", resolution=28, num_images=16, show_progress=False)
        return GaussianMixtureDenoiser.from_images(images, std=0.05)
    raise InputError(f"unknown analytic model {name!r}; use one of {['analytic:' + m for m in ANALYTIC_MODELS]}")


def gaussian_moments_error(images: torch.Tensor, mean: float, std: float) -> tuple[float, float]:
    """``(|sample mean - mean|, |sample std / std - 1|)`` over all pixels of float images."""
    x = images.to(torch.float64)
    return abs(float(x.mean()) - mean), abs(float(x.std()) / std - 1)


def expected_std_error(num_values: int) -> float:
    """The standard error of a sample standard deviation over ``num_values`` i.i.d. Gaussian values, relative."""
    return 1 / math.sqrt(2 * (num_values - 1))
