"""The GAN baseline: a small DCGAN (Radford et al. 2016) on the same digits, trained by the same loop.

    accelerate launch --num_cpu_threads_per_process 2 training/train_gan.py --config training/configs/gan-mnist.yaml \
        --output_dir runs/gan
    sd-course sample --model runs/gan --num_images 1000 --output_dir runs/gan-samples      # one network call each
    sd-course evaluate --samples runs/gan-samples        # scored exactly like a diffusion model (or --model runs/gan)
    python benchmarks/gan_vs_diffusion.py --dataset_name ../shared/data/mnist                # the comparison

A generator G maps a latent z ~ N(0, I) to an image in one call; a discriminator D scores images as real or fake.
The two play the minimax game of Goodfellow et al. 2014, in its "non-saturating" form:

    D:  minimise  - E_x log D(x) - E_z log(1 - D(G(z)))       # a real/fake classifier (binary cross-entropy)
    G:  minimise  - E_z log D(G(z))                           # make D call the fakes real

The loop of sd_course/train/loop.py has one optimiser and one loss, so both players step together (simultaneous
gradient descent, as in Mescheder et al. 2017's analysis) on ``loss = loss_D + loss_G``, with each player's loss
reaching only its own weights: D sees the fakes *detached* (no gradient into G), and G is scored by a copy of D whose
weights are *detached* (no gradient into D). Same data loading, seeds, checkpoints, bit-exact resume and logs as the
diffusion models; the saved model is the generator alone (``config.json`` + safetensors, ``DCGANGenerator``).

Q: How do diffusion models compare to GANs?
A: Measured (benchmarks/gan_vs_diffusion.py and gan_at_convergence.py, benchmarks/README.md section 10): this DCGAN (1.04M parameters with
   its discriminator) against the `mnist-narrow` U-Net (0.99M, cosine schedule, v-prediction), each trained for
   the same 2 minutes on 2 CPU cores on all 60,000 digits, scored on 1,000 samples against the test split:
   * Quality at a tiny budget goes to the GAN: FID
     [207.7](benchmarks/results/gan_vs_diffusion.json#spread.gan.fid_mean) +- [4.7](benchmarks/results/gan_vs_diffusion.json#spread.gan.fid_std) over 3 seeds
     against [278.5](benchmarks/results/gan_vs_diffusion.json#spread.diffusion.fid_mean) +- [4.8](benchmarks/results/gan_vs_diffusion.json#spread.diffusion.fid_std) over 2
     seeds for diffusion. The GAN takes [1,505](benchmarks/results/gan_vs_diffusion.json#rows.model=gan&seed=0.steps) steps in the 2-minute
     budget, the U-Net [512](benchmarks/results/gan_vs_diffusion.json#rows.model=diffusion&seed=0.steps), and the generator is graded on whole
     images from the first step, while the denoiser must learn 1,000 noise levels before its samples look right.
     Given far more compute it goes
     much further: the shipped pipelines/ddpm-mnist (75 epochs, 5.8 minutes of an H100 GPU) scores FID [7.5](pipelines/ddpm-mnist/metrics.json#fid_mnist_classifier) on the
     SDE sampler (its card has the ladder).
   * At the end of training the order reverses (benchmarks/gan_at_convergence.py): the same DCGAN trained 25
     epochs from three seeds (about 27 minutes each on 2 idle CPU cores in bf16, a snapshot scored after every epoch,
     nearly flat over the last epochs) reaches FID [70.8](benchmarks/results/gan_at_convergence.json#summary.gan_final_fid.mean)
     +- [7.0](benchmarks/results/gan_at_convergence.json#summary.gan_final_fid.sd), against
     [7.4](benchmarks/results/gan_at_convergence.json#summary.diffusion_fid.mean) for the shipped diffusion model over three sets of 1,000 samples
     ([9.5x](benchmarks/results/gan_at_convergence.json#summary.fid_ratio_gan_over_diffusion)). The gap is precision ([0.65](benchmarks/results/gan_at_convergence.json#summary.gan_precision.mean) against
     [0.87](benchmarks/results/gan_at_convergence.json#summary.diffusion_precision.mean): broken or blotted strokes), not coverage (recall
     [0.87](benchmarks/results/gan_at_convergence.json#summary.gan_recall.mean) against [0.89](benchmarks/results/gan_at_convergence.json#summary.diffusion_recall.mean), all 10 digits for both).
   * Stability: no seed collapsed at this budget (the seed-to-seed spreads are the +- above).
     The GAN's losses, though, say nothing about quality (loss_d and loss_g drift against each other in
     logs/loss.jsonl), where the diffusion loss is a regression whose curve does.
   * Coverage at 2 minutes, classes at >= half their real share (of 10), by seed: GAN
     [7](benchmarks/results/gan_vs_diffusion.json#rows.model=gan&seed=0.classes_covered), [8](benchmarks/results/gan_vs_diffusion.json#rows.model=gan&seed=1.classes_covered),
     [8](benchmarks/results/gan_vs_diffusion.json#rows.model=gan&seed=2.classes_covered); diffusion [8](benchmarks/results/gan_vs_diffusion.json#rows.model=diffusion&seed=0.classes_covered),
     [7](benchmarks/results/gan_vs_diffusion.json#rows.model=diffusion&seed=1.classes_covered).
     At the end of training both cover all 10 (above). Mode collapse would show up as recall
     falling, as keeping only the 1s of real MNIST does (precision > 0.8, recall < 0.3; tests/evaluate/test_metrics.py).
   * Sampling cost: one network call per image, [2,646](benchmarks/results/gan_at_convergence.json#summary.gan_sampling_images_per_s) images/s on 2 CPU cores, against
     25 calls and [7.4](benchmarks/results/gan_at_convergence.json#summary.diffusion_sampling_images_per_s) images/s for the shipped U-Net with DPM-Solver++ 2M SDE.
   * Abilities: diffusion gives a likelihood bound, a deterministic ODE between noise and image (DDIM inversion,
     sd_course/latent/latent_space.py), guidance (sd_course/latent/text_to_image.py) and inpainting without retraining (sd-course
     inpaint); a GAN gives one-shot speed and a compact latent space to edit in, but no encoder back into it.
Cmd: python benchmarks/gan_vs_diffusion.py --dataset_name ../shared/data/mnist --minutes 2 --output_json benchmarks/results/gan_vs_diffusion.json
Cmd: python benchmarks/gan_at_convergence.py --dataset_name ../shared/data/mnist --gan_seeds 0,1,2 --output docs/figures/gan_at_convergence.png --output_json benchmarks/results/gan_at_convergence.json
Cmd: sd-course evaluate --samples my_gan_samples/ --reference ../shared/data/mnist:test
Fig: docs/figures/gan_at_convergence.png
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from sd_course.core.data import load_run_dataset, random_flip
from sd_course.core.errors import InputError
from sd_course.core.images import to_pil_images
from sd_course.train.config import TrainConfig, option
from sd_course.train.loop import Objective


@dataclass
class GANConfig(TrainConfig):
    # --- the networks ---------------------------------------------------------------------------------------------
    latent_dim: int = option(64, "size of the generator's input z ~ N(0, I)")
    generator_width: int = option(96, "channels of G's last hidden layer (its first has 2x): ~0.90M parameters")
    discriminator_width: int = option(64, "channels of D's first layer (its second has 2x): ~0.14M parameters")
    # --- what differs from the diffusion defaults (DCGAN's own settings) ------------------------------------------
    learning_rate: float = option(2e-4, "Adam learning rate of both players (DCGAN: 2e-4)")
    adam_beta1: float = option(0.5, "Adam beta1 (DCGAN: 0.5; momentum 0.9 makes the game oscillate)")
    lr_scheduler: str = option("constant_with_warmup", "learning-rate schedule after warm-up (a game has no "
                                                       "end point to decay towards)",
                               choices=("constant", "constant_with_warmup", "cosine", "linear"))
    lr_warmup_steps: int = option(0, "linear warm-up steps (DCGAN: none)")
    adam_weight_decay: float = option(0.0, "AdamW weight decay (DCGAN: none)")
    max_grad_norm: float = option(100.0, "gradient clipping (L2 norm of both players together; 100: in effect off, "
                                         "as in DCGAN)")
    num_epochs: int = option(5, "passes over the data")
    output_dir: str = option("runs/gan", "where the generator, checkpoints, samples and logs go")

    POSITIVE = TrainConfig.POSITIVE + ("latent_dim", "generator_width", "discriminator_width")

    def validate(self) -> None:
        super().validate()
        if self.resolution % 4:
            raise InputError(f"--resolution {self.resolution}: the DCGAN doubles its size twice, so it needs a "
                             f"multiple of 4 (e.g. 28 or 32)")
        if self.use_ema:
            raise InputError("--use_ema is not supported for the GAN: EMAModel averages the weights but not "
                             "BatchNorm's running statistics, which then no longer match them; drop --use_ema")


class DCGANGenerator(ModelMixin, ConfigMixin):
    """z (latent_dim) -> image: a transposed convolution to a (size/4)^2 map, then two that double it. BatchNorm and
    ReLU between, tanh at the end (images in [-1, 1], as the training data)."""

    @register_to_config
    def __init__(self, latent_dim: int = 64, width: int = 96, out_channels: int = 1, sample_size: int = 28):
        super().__init__()
        start = sample_size // 4
        self.net = nn.Sequential(
            nn.ConvTranspose2d(latent_dim, 2 * width, start, 1, 0, bias=False),  # 1x1 -> 7x7
            nn.BatchNorm2d(2 * width), nn.ReLU(True),
            nn.ConvTranspose2d(2 * width, width, 4, 2, 1, bias=False),  # 7x7 -> 14x14
            nn.BatchNorm2d(width), nn.ReLU(True),
            nn.ConvTranspose2d(width, out_channels, 4, 2, 1),  # 14x14 -> 28x28
            nn.Tanh(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z.view(z.shape[0], -1, 1, 1))


class DCGANDiscriminator(ModelMixin, ConfigMixin):
    """image -> one logit (real > 0 > fake): two strided convolutions that halve the image, LeakyReLU(0.2),
    BatchNorm on the second (DCGAN leaves it off the input layer), and a convolution over the whole (size/4)^2 map."""

    @register_to_config
    def __init__(self, width: int = 64, in_channels: int = 1, sample_size: int = 28):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, width, 4, 2, 1), nn.LeakyReLU(0.2, True),  # 28 -> 14
            nn.Conv2d(width, 2 * width, 4, 2, 1, bias=False),  # 14 -> 7
            nn.BatchNorm2d(2 * width), nn.LeakyReLU(0.2, True),
            nn.Conv2d(2 * width, 1, sample_size // 4),  # 7x7 -> 1 logit
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten()


def init_dcgan_weights(module: nn.Module) -> None:
    """DCGAN's initialisation: convolutions ~ N(0, 0.02), BatchNorm scales ~ N(1, 0.02) and shifts 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


class GANForTraining(nn.Module):
    """Both players in one module, so that the loop's one optimiser (and DistributedDataParallel) sees all weights.
    ``forward`` returns both losses; each reaches only its own player's weights."""

    def __init__(self, generator: DCGANGenerator, discriminator: DCGANDiscriminator):
        super().__init__()
        self.generator, self.discriminator = generator, discriminator

    def forward(self, real: torch.Tensor, z: torch.Tensor):
        fake = self.generator(z)
        d_real, d_fake = self.discriminator(real), self.discriminator(fake.detach())  # no gradient into G
        ones, zeros = torch.ones_like(d_real), torch.zeros_like(d_fake)
        # -log D(x) - log(1 - D(G(z))), with D = sigmoid(logit)
        loss_d = F.binary_cross_entropy_with_logits(d_real, ones) + F.binary_cross_entropy_with_logits(d_fake, zeros)
        # G is judged by D with frozen weights: the gradient flows through D's *input* only (and BatchNorm keeps
        # updating its statistics as in any training-mode call)
        frozen = {name: p.detach() for name, p in self.discriminator.named_parameters()}
        d_fake_for_g = torch.func.functional_call(self.discriminator, frozen, (fake,))
        loss_g = F.binary_cross_entropy_with_logits(d_fake_for_g, torch.ones_like(d_fake_for_g))  # -log D(G(z))
        return loss_d, loss_g, torch.sigmoid(d_real).mean(), torch.sigmoid(d_fake).mean()


class GAN(Objective):
    """Train a DCGAN on images: the GAN baseline of the lab's "diffusion vs GANs" question (sd_course)."""

    name = "train_gan"
    config_class = GANConfig

    def build(self, accelerator):
        cfg = self.cfg
        dataset, info = load_run_dataset(cfg, accelerator)
        generator = DCGANGenerator(cfg.latent_dim, cfg.generator_width, info.num_channels, info.resolution)
        discriminator = DCGANDiscriminator(cfg.discriminator_width, info.num_channels, info.resolution)
        init_dcgan_weights(generator), init_dcgan_weights(discriminator)
        return dataset, info, GANForTraining(generator, discriminator)

    def loss(self, model, batch, generator):
        real = batch["pixel_values"]
        if self.cfg.random_flip:
            real = random_flip(real, generator)
        z = torch.randn(real.shape[0], self.cfg.latent_dim, generator=generator).to(real.device)
        loss_d, loss_g, d_real, d_fake = model(real, z)
        # D(x) and D(G(z)) near 0.5 both: the game is balanced; D(x) -> 1 and D(G(z)) -> 0: D has won, G learns little
        self.last_logs = {"loss_d": loss_d.item(), "loss_g": loss_g.item(), "d_real": d_real.item(),
                          "d_fake": d_fake.item()}
        return loss_d + loss_g

    def saveable(self, model):
        return model.generator  # what users load: G alone (DCGANGenerator.from_pretrained)

    def sample_images(self, generator_model):
        images = generate(generator_model, self.cfg.eval_batch_size, seed=self.cfg.seed)
        rows = int(math.sqrt(len(images)))
        while len(images) % rows:
            rows -= 1
        return to_pil_images(images), rows


# ----------------------------------------------------------------------------------------------------------------
# Using a trained generator: sampling is one network call
# ----------------------------------------------------------------------------------------------------------------


def is_gan(path) -> bool:
    """Is ``path`` a folder saved from a DCGANGenerator (``config.json`` with its class name)?"""
    config = Path(str(path)) / "config.json"
    if not config.is_file():
        return False
    try:
        return json.loads(config.read_text()).get("_class_name") == DCGANGenerator.__name__
    except (ValueError, AttributeError):
        return False


def load_generator(path) -> DCGANGenerator:
    if not is_gan(path):
        raise InputError(f"{path} is not a DCGAN generator folder (config.json with _class_name DCGANGenerator); "
                         "train one with training/train_gan.py")
    try:
        return DCGANGenerator.from_pretrained(str(path)).eval()
    except (OSError, ValueError, RuntimeError) as e:
        raise InputError(f"could not load the generator in {path} ({type(e).__name__}: {e}); its weights are missing "
                         "or corrupt: train or export it again") from e


@torch.no_grad()
def generate(generator_model: DCGANGenerator, num_images: int, seed: int = 0, batch_size: int = 256) -> torch.Tensor:
    """``num_images`` samples as uint8 (N, C, H, W): one forward pass of G per batch. The latents are drawn all at
    once from ``seed``, so the images do not depend on the batch size."""
    if int(num_images) < 1:
        raise InputError(f"--num_images must be at least 1, got {num_images}")
    z = torch.randn(int(num_images), generator_model.config.latent_dim, generator=torch.Generator().manual_seed(seed))
    was_training = generator_model.training
    generator_model.eval()  # BatchNorm with its running statistics: each image independent of its batch
    try:
        images = torch.cat([generator_model(chunk.to(generator_model.device)).float().cpu()
                            for chunk in z.split(batch_size)])
    finally:
        generator_model.train(was_training)
    return ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)  # [-1, 1] -> 0..255


