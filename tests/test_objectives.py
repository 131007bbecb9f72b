"""Every objective keeps the promises of tests/objective_common.py: it trains under ``accelerate launch``, resumes
bit-exactly after ``kill -9``, and saves a folder that diffusers alone loads."""

from __future__ import annotations

import pytest
from conftest import tiny_run_values
from objective_common import ObjectiveCommonTest

from sd_course.app.launch import main
from sd_course.gan.dcgan import GAN
from sd_course.latent.autoencoder import Autoencoder
from sd_course.latent.text_to_image import TextToImage
from sd_course.pixel.diffusion import PixelDiffusion

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
def objective_context():
    return {}


class TestPixelDiffusion(ObjectiveCommonTest):
    objective_class = PixelDiffusion
    entry = "train_unconditional.py"
    weight_files = ("unet/diffusion_pytorch_model.safetensors",)
    load_code = ("from diffusers import DDPMPipeline\n"
                 "pipe = DDPMPipeline.from_pretrained({folder!r})\n"
                 "image = pipe(batch_size=1, num_inference_steps=2, output_type='np').images\n"
                 "assert image.shape == (1, 16, 16, 1), image.shape")

    def flags(self, output_dir, context, **overrides):
        return tiny_run_values(output_dir, train_batch_size=8, gradient_accumulation_steps=2, use_ema=True,
                               ema_max_decay=0.9)


class TestAutoencoder(ObjectiveCommonTest):
    objective_class = Autoencoder
    entry = "train_vae.py"
    weight_files = ("diffusion_pytorch_model.safetensors",)
    load_code = ("import torch\nfrom diffusers import AutoencoderKL\n"
                 "vae = AutoencoderKL.from_pretrained({folder!r})\n"
                 "z = vae.encode(torch.zeros(1, 1, 16, 16)).latent_dist.mean\n"
                 "assert z.shape == (1, 4, 8, 8), z.shape")

    def flags(self, output_dir, context, **overrides):
        # the whole recipe: the perceptual and adversarial terms switch on during the run (and across a resume)
        return dict(vae_config_name_or_path="tiny-vae", resolution=16, resize_mode="resize", max_train_samples=64,
                    train_batch_size=8, gradient_accumulation_steps=2, learning_rate=2e-3, use_ema=True,
                    ema_max_decay=0.9, perceptual_weight=1.0, perceptual_start=1, adversarial_weight=0.5,
                    adversarial_start=3, discriminator_width=8)


class TestGAN(ObjectiveCommonTest):
    objective_class = GAN
    entry = "train_gan.py"
    weight_files = ("diffusion_pytorch_model.safetensors",)
    # a generator is a diffusers ModelMixin of our own class: diffusers reads its config and weights without it
    load_code = ("import json\nfrom diffusers.models.modeling_utils import load_state_dict\n"
                 "config = json.load(open({folder!r} + '/config.json'))\n"
                 "weights = load_state_dict({folder!r} + '/diffusion_pytorch_model.safetensors')\n"
                 "assert config['_class_name'] == 'DCGANGenerator' and weights, config")

    def flags(self, output_dir, context, **overrides):
        return dict(generator_width=8, discriminator_width=8, latent_dim=16, max_train_samples=96,
                    train_batch_size=16)


class TestTextToImage(ObjectiveCommonTest):
    objective_class = TextToImage
    entry = "train_text_to_image.py"
    weight_files = ("unet/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors")
    load_code = ("from diffusers import StableDiffusionPipeline\n"
                 "pipe = StableDiffusionPipeline.from_pretrained({folder!r})\n"
                 "image = pipe('a handwritten digit seven', num_inference_steps=2, output_type='np').images\n"
                 "assert image.shape == (1, 16, 16, 1), image.shape  # the digit VAE decodes one channel")

    @pytest.fixture
    def objective_context(self, tmp_path_factory):
        vae = tmp_path_factory.mktemp("vae") / "vae"
        main([*TestAutoencoder().argv(vae, {}, max_train_steps=2)], objective_class=Autoencoder)
        return dict(vae=vae)

    def flags(self, output_dir, context, **overrides):
        return dict(vae_name_or_path=context["vae"], model_config_name_or_path="tiny-sd", text_encoder_config="tiny-sd",
                    resolution=16, resize_mode="resize", max_train_samples=64, train_batch_size=16,
                    ddpm_num_steps=100, ddpm_num_inference_steps=2, eval_batch_size=4, learning_rate=1e-3,
                    use_ema=True, ema_max_decay=0.9, filler_captions=0.5, tokenizer_max_length=32)
