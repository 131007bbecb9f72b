"""Classifier-free guidance written out (sd_course/latent/guidance.py): the course's loop gives the images of
diffusers' StableDiffusionPipeline.__call__ for the same seeds and sampler, on a tiny seeded pipeline built from the
package's presets and on the shipped pipelines/mini-sd-mnist."""

from __future__ import annotations

import pytest
import torch
from conftest import REPO
from diffusers import DDPMScheduler

from sd_course.core.data import to_uint8
from sd_course.core.errors import InputError
from sd_course.core.models import build_conditional_unet, build_text_encoder, build_vae
from sd_course.core.options import SampleOptions
from sd_course.core.schedulers import make_scheduler
from sd_course.core.seeds import image_seed
from sd_course.latent.guidance import DEFAULT_GUIDANCE, generate_from_prompts, guided_sample, recommended_guidance
from sd_course.latent.kind import TEXT_TO_IMAGE
from sd_course.latent.text import digit_prompts, train_tokenizer
from sd_course.latent.text_to_image import load_text_to_image_pipeline, make_pipeline

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
PROMPTS = ["a handwritten digit seven", "the number 3", "one"]
TOLERANCE = 1e-4  # max abs difference of float images in [0, 1]
SHIPPED = REPO / "pipelines" / "mini-sd-mnist"


@pytest.fixture(scope="module")
def tiny_pipe():
    """A seeded, untrained StableDiffusionPipeline from the tiny presets: 1x16x16 digits, 4x8x8 latents."""
    torch.manual_seed(0)
    tokenizer = train_tokenizer([text for _, text in digit_prompts()] + [""], max_length=16)
    text_encoder = build_text_encoder("tiny-sd", vocab_size=len(tokenizer.get_vocab()), max_length=16,
                                      bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                                      pad_token_id=tokenizer.pad_token_id)
    vae = build_vae("tiny-vae")
    unet = build_conditional_unet("tiny-sd", latent_size=8, latent_channels=4,
                                  cross_attention_dim=text_encoder.config.hidden_size)
    scheduler = DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False,
                              steps_offset=1)
    pipe = make_pipeline(vae.eval(), tokenizer, text_encoder.eval(), unet.eval(), scheduler)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def seeded(n: int, seed: int = 0) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(image_seed(seed, i)) for i in range(n)]


def stock(pipe, prompts, negative_prompt=None, steps=4, guidance_scale=3.0, seed=0, eta=0.0):
    negative = [negative_prompt] * len(prompts) if negative_prompt else None
    return pipe(prompts, negative_prompt=negative, num_inference_steps=steps, guidance_scale=guidance_scale,
                generator=seeded(len(prompts), seed), eta=eta, output_type="pt").images


def ours(pipe, prompts, negative_prompt=None, steps=4, guidance_scale=3.0, seed=0, eta=0.0):
    return guided_sample(pipe, prompts, negative_prompt, steps, guidance_scale, seeded(len(prompts), seed), eta=eta)


@pytest.mark.parametrize("alias, guidance_scale, negative_prompt, eta", [
    ("ddim", 1.0, None, 0.0),
    ("ddim", 3.0, None, 0.0),
    ("ddim", 3.0, None, 1.0),  # stochastic DDIM: eta and the generators reach step()
    ("dpm++", 1.0, None, 0.0),
    ("dpm++", 3.0, "the number 1", 0.0),
    ("euler-a", 1.0, None, 0.0),  # ancestral: fresh noise from the generators at every step
    ("euler-a", 3.0, None, 0.0),
    ("ddpm", 3.0, None, 0.0),
])
def test_written_out_loop_matches_the_stock_pipeline(tiny_pipe, alias, guidance_scale, negative_prompt, eta):
    tiny_pipe.scheduler = make_scheduler(alias, tiny_pipe.scheduler.config)
    expected = stock(tiny_pipe, PROMPTS, negative_prompt, guidance_scale=guidance_scale, eta=eta)
    got = ours(tiny_pipe, PROMPTS, negative_prompt, guidance_scale=guidance_scale, eta=eta)
    assert got.shape == expected.shape == (3, 1, 16, 16) and got.dtype == torch.float32
    assert float((got - expected).abs().max()) < TOLERANCE
    assert float(got.min()) >= 0 and float(got.max()) <= 1
    # Not a vacuous match: the three seeds give three different images, and another seed gives other images.
    assert float((got[0] - got[1]).abs().max()) > 1e-2
    assert float((ours(tiny_pipe, PROMPTS, negative_prompt, guidance_scale=guidance_scale, seed=1, eta=eta)
                  - expected).abs().max()) > 1e-2


def test_batch_size_does_not_change_the_images(tiny_pipe):
    tiny_pipe.scheduler = make_scheduler("euler-a", tiny_pipe.scheduler.config)  # stochastic: the hardest case
    generators = seeded(3)
    together = guided_sample(tiny_pipe, PROMPTS, None, 4, 3.0, generators)
    alone = torch.cat([guided_sample(tiny_pipe, [p], None, 4, 3.0, [torch.Generator().manual_seed(image_seed(0, i))])
                       for i, p in enumerate(PROMPTS)])
    assert float((together - alone).abs().max()) < TOLERANCE
    # generate_from_prompts: the same uint8 images in batches of 1, 3 or all 4, and those of the stock pipeline.
    kwargs = dict(num_images_per_prompt=2, num_inference_steps=4, guidance_scale=3.0, seed=5)
    runs = [generate_from_prompts(tiny_pipe, PROMPTS[:2], batch_size=b, **kwargs) for b in (1, 3, 4)]
    assert runs[0].shape == (4, 1, 16, 16) and runs[0].dtype == torch.uint8
    for run in runs[1:]:
        assert int((run.int() - runs[0].int()).abs().max()) <= 1  # a float rounding at a .5 boundary at most
    reference = to_uint8(stock(tiny_pipe, [PROMPTS[0]] * 2 + [PROMPTS[1]] * 2, steps=4, seed=5) * 2 - 1)
    assert int((runs[-1].int() - reference.int()).abs().max()) <= 1
    assert len({bytes(image.numpy()) for image in runs[-1]}) == 4  # four seeds, four images


def test_guidance_scale_one_is_the_conditional_prediction_alone(tiny_pipe):
    tiny_pipe.scheduler = make_scheduler("ddim", tiny_pipe.scheduler.config)
    batches = []
    hook = tiny_pipe.unet.register_forward_pre_hook(
        lambda module, args, kwargs: batches.append((args[0].shape[0], kwargs["encoder_hidden_states"].shape[0])),
        with_kwargs=True)
    try:
        plain = ours(tiny_pipe, PROMPTS, guidance_scale=1.0)
        assert batches == [(3, 3)] * 4  # w = 1: one U-Net call per step on the B conditional latents only
        batches.clear()
        guided = ours(tiny_pipe, PROMPTS, guidance_scale=3.0)
        assert batches == [(6, 6)] * 4  # w > 1: one call per step on 2B: uncond + cond in one batch
    finally:
        hook.remove()
    # eps_u + w (eps_c - eps_u) = eps_c for any w when the "unconditional" text is the prompt itself.
    for w in (3.0, 7.5):
        same = torch.cat([ours(tiny_pipe, [p], negative_prompt=p, guidance_scale=w, seed=0) for p in PROMPTS[:1]])
        assert float((same - plain[:1]).abs().max()) < TOLERANCE
    # ... and guidance really does something otherwise.
    assert float((guided - plain).abs().max()) > 1e-2


def test_the_guidance_a_card_recommends_is_the_default(tiny_pipe, tmp_path):
    """A model's card may recommend its guidance (``inference: parameters: guidance_scale`` in its YAML header, as
    `sd-course export` writes it): sampling without --guidance_scale uses it. No card, no entry, a value that is no
    guidance scale, or a header that is not YAML: the default, 2."""
    folder = tmp_path / "model"
    tiny_pipe.save_pretrained(folder)
    card = folder / "README.md"
    assert recommended_guidance(folder) == DEFAULT_GUIDANCE == 2.0  # no card
    for text in ("# a card without a header\n", "---\nlicense: mit\n---\n", "---\ninference: true\n---\n",
                 "---\ninference:\n  parameters: [1, 2]\n---\n", "---\n- a list\n---\n",
                 "---\ninference: [unclosed\n---\n"):
        card.write_text(text)
        assert recommended_guidance(folder) == 2.0, text
    card.write_text("---\ninference:\n  parameters:\n    guidance_scale: 0.5\n---\n")
    with pytest.warns(UserWarning, match="recommends guidance_scale 0.5, which is not a number >= 1; using 2"):
        assert recommended_guidance(folder) == 2.0
    assert recommended_guidance(tmp_path / "missing") == 2.0  # neither a folder nor a Hub id: no advice, no error

    card.write_text("---\ninference:\n  parameters:\n    guidance_scale: 3.5\n---\n# model\n")
    assert recommended_guidance(folder) == recommended_guidance(str(folder)) == 3.5
    pipe = TEXT_TO_IMAGE.load(str(folder), SampleOptions(scheduler="ddim", device="cpu"))

    def draw(guidance_scale):
        options = SampleOptions(prompt="the number 3", num_inference_steps=3, guidance_scale=guidance_scale)
        return TEXT_TO_IMAGE.sample(pipe, 2, options, show_progress=False)

    default = draw(None)
    assert torch.equal(default, draw(3.5)) and not torch.equal(default, draw(2.0))


def test_one_generator_per_image_is_required(tiny_pipe):
    with pytest.raises(InputError, match="one per image"):
        guided_sample(tiny_pipe, PROMPTS, None, 2, 3.0, seeded(2))


@pytest.mark.skipif(not (SHIPPED / "model_index.json").is_file(), reason="pipelines/mini-sd-mnist not in this checkout")
@pytest.mark.parametrize("alias", ["dpm++", "euler-a"])
def test_shipped_pipeline_matches_the_stock_pipeline(alias):
    pipe = load_text_to_image_pipeline(str(SHIPPED), alias)
    prompts = ["a handwritten digit seven", "the number 3"]
    expected = stock(pipe, prompts, steps=5, guidance_scale=2.0)
    got = ours(pipe, prompts, steps=5, guidance_scale=2.0)
    assert got.shape == (2, 1, 32, 32)
    assert float((got - expected).abs().max()) < TOLERANCE
    assert float((got[0] - got[1]).abs().max()) > 1e-2
