"""The mini Stable Diffusion: tiny real components (AutoencoderKL, CLIPTokenizer, CLIPTextModel,
UNet2DConditionModel) trained a few steps under the one loop, saved as a StableDiffusionPipeline, loaded by diffusers."""

from __future__ import annotations

import json
import subprocess
import shutil
import sys
import warnings
from pathlib import Path

import pytest
import torch
from conftest import REPO, as_flags, run_python
from diffusers.configuration_utils import FrozenDict
from safetensors.torch import load_file

from sd_course.app.launch import main
from sd_course.core.errors import InputError
from sd_course.core.models import build_text_encoder
from sd_course.latent.guidance import check_guidance_and_size
from sd_course.latent.text import (
    HELDOUT_TEMPLATES,
    TRAIN_TEMPLATES,
    caption,
    caption_stems,
    check_prompt,
    digit_prompts,
    filler_caption,
    names_a_digit,
    tokenize,
    train_tokenizer,
)
from sd_course.latent.text_to_image import (
    TextToImage,
    TextToImageConfig,
    extend_context,
    load_text_to_image_pipeline,
)
from sd_course.train.config import parse_args
from sd_course.train.loop import train

ENTRY = str(REPO / "training" / "train_text_to_image.py")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def flags(**values) -> list[str]:
    return as_flags(values)


@pytest.fixture(scope="module")
def tiny_vae(tmp_path_factory) -> Path:
    from sd_course.latent.autoencoder import Autoencoder

    out = tmp_path_factory.mktemp("t2i") / "vae"
    main(flags(vae_config_name_or_path="tiny-vae", resolution=16, resize_mode="resize", max_train_samples=32,
               train_batch_size=16, max_train_steps=2, lr_warmup_steps=0, checkpointing_steps=0, save_model_epochs=0,
               save_images_epochs=0, logger="none", output_dir=out), objective_class=Autoencoder)
    return out


def t2i_args(output_dir, vae, **overrides) -> list[str]:
    """A tiny text-to-image run: 16x16 digits -> 4x8x8 latents, a 1-layer text encoder, a two-level U-Net."""
    values = dict(vae_name_or_path=vae, model_config_name_or_path="tiny-sd", text_encoder_config="tiny-sd",
                  resolution=16, resize_mode="resize", max_train_samples=64, train_batch_size=16, max_train_steps=4,
                  ddpm_num_steps=100, ddpm_num_inference_steps=2, eval_batch_size=4, learning_rate=1e-3,
                  lr_warmup_steps=0, checkpointing_steps=0, save_model_epochs=0, save_images_epochs=0, logger="none",
                  output_dir=output_dir)
    values.update(overrides)
    return flags(**values)


def train_t2i(argv):
    return main(argv, objective_class=TextToImage)


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory, tiny_vae) -> Path:
    out = tmp_path_factory.mktemp("t2i") / "sd"
    train_t2i(t2i_args(out, tiny_vae, max_train_steps=8, use_ema=True, save_images_epochs=2, tokenizer_max_length=16))
    return out


# ---------------------------------------------------------------------------------------------------------------
# Captions and the tokenizer
# ---------------------------------------------------------------------------------------------------------------


def test_tokenizer_round_trip_one_token_per_caption_word():
    tokenizer = train_tokenizer([text for _, text in digit_prompts()] + [""], max_length=16)
    for text in ["a handwritten digit seven", "the number 3", "an image of the number 0"]:
        ids = tokenizer(text).input_ids
        assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
        assert len(ids) == len(text.split()) + 2  # every caption word is one token
        assert tokenizer.decode(ids, skip_special_tokens=True) == text
    padded = tokenize(tokenizer, ["7", ""])
    assert padded.shape == (2, 16) and (padded[1, 2:] == tokenizer.pad_token_id).all()
    held_out_words = {w for t in HELDOUT_TEMPLATES for w in caption(7, t).split()}
    assert held_out_words <= set(tokenizer.caption_words)  # new phrasings, known words


def test_unseen_words_and_long_prompts_warn():
    tokenizer = train_tokenizer([caption(d, t) for t in TRAIN_TEMPLATES for d in range(10)], max_length=8)
    with pytest.warns(UserWarning, match=r"never saw in training: \['zebra'\]"):
        check_prompt(tokenizer, "a zebra seven")
    assert tokenizer("zebra").input_ids[1:-1]  # still tokenizes (single bytes), nothing crashes
    with pytest.warns(UserWarning, match="longer than the text encoder's 8"):
        check_prompt(tokenizer, "a handwritten digit seven a handwritten digit seven")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_prompt(tokenizer, "the number seven") == []


def test_caption_dropout_really_produces_empty_captions(tmp_path, tiny_vae):
    from accelerate import Accelerator

    cfg = parse_args(t2i_args(tmp_path / "c", tiny_vae, caption_dropout=0.5), TextToImageConfig)
    objective = TextToImage(cfg)
    dataset, _, _ = objective.build(Accelerator(cpu=True))
    batch = {"index": torch.arange(400), "labels": torch.arange(400) % 10}
    ids = objective.captions_for(batch, torch.Generator().manual_seed(0))
    empty = (ids == objective.empty_ids).all(dim=1)
    assert 0.4 < float(empty.float().mean()) < 0.6
    texts = objective.tokenizer.batch_decode(ids[~empty], skip_special_tokens=True)
    for text, label in zip(texts, batch["labels"][~empty].tolist()):  # every kept caption names its own digit
        assert text in {caption(label, t) for t in TRAIN_TEMPLATES}
    assert len(set(texts)) > 20  # several templates, words and numerals
    assert {"latent_mean", "latent_std", "labels", "index"} <= set(dataset[0])


def test_filler_captions_keep_the_digit_name_no_other_and_fit_the_tokenizer():
    tokenizer = train_tokenizer([text for _, text in digit_prompts()] + [""], max_length=24)
    stems = caption_stems([text for _, text in digit_prompts()])
    assert "handwritten" in stems and "seven" not in stems and "7" not in stems
    fits = lambda text: len(tokenizer(text, verbose=False).input_ids) <= tokenizer.model_max_length  # noqa: E731
    generator = torch.Generator().manual_seed(0)
    lengths = []
    for i in range(300):
        text = caption(i % 10, TRAIN_TEMPLATES[i % len(TRAIN_TEMPLATES)])
        noisy = filler_caption(text, generator, stems, fits=fits)
        added = list(noisy.split())
        for word in text.split():  # the caption's words, in order, all still there
            added.remove(word)
        assert added and not any(names_a_digit(w) for w in added), noisy
        assert fits(noisy)  # never cut: the digit's word is always read
        lengths.append(len(tokenizer(noisy, verbose=False).input_ids))
    assert max(lengths) > 20 and min(lengths) < 10  # late positions of the context are trained too
    again = filler_caption("seven", torch.Generator().manual_seed(1), stems)
    assert again == filler_caption("seven", torch.Generator().manual_seed(1), stems)  # seeded


def test_filler_captions_in_training_batches(tmp_path, tiny_vae):
    from accelerate import Accelerator

    cfg = parse_args(t2i_args(tmp_path / "c", tiny_vae, caption_dropout=0.2, filler_captions=0.5,
                              tokenizer_max_length=32), TextToImageConfig)
    objective = TextToImage(cfg)
    objective.build(Accelerator(cpu=True))
    batch = {"index": torch.arange(400), "labels": torch.arange(400) % 10}
    ids = objective.captions_for(batch, torch.Generator().manual_seed(0))
    texts = objective.tokenizer.batch_decode(ids, skip_special_tokens=True)
    clean = {caption(d, t) for t in TRAIN_TEMPLATES for d in range(10)}
    digit_words = {w: d for d in range(10) for w in (str(d), caption(d, "{word}"))}
    filled = [(t, label) for t, label in zip(texts, batch["labels"].tolist()) if t and t not in clean]
    assert 0.3 < len(filled) / len(texts) < 0.7
    named = [[digit_words[w] for w in t.split() if w in digit_words] for t, _ in filled]
    assert all(n in ([], [label]) for n, (_, label) in zip(named, filled))  # its own digit, or none (dropped)
    filler_only = sum(n == [] for n in named)
    assert 0.03 < filler_only / len(texts) < 0.2  # dropped captions become filler as often as the kept ones fill
    assert 0.03 < sum(t == "" for t in texts) / len(texts) < 0.2  # the rest of the dropped stay empty
    with pytest.raises(InputError, match="--filler_captions must be in"):
        parse_args(t2i_args(tmp_path / "d", tiny_vae, filler_captions=1.5), TextToImageConfig).validate()


# ---------------------------------------------------------------------------------------------------------------
# Training, saving, loading with plain diffusers
# ---------------------------------------------------------------------------------------------------------------


def test_saved_as_a_stable_diffusion_pipeline_that_plain_diffusers_loads(tiny_sd):
    folder = tiny_sd
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline" and index["requires_safety_checker"] is False
    assert {"vae", "text_encoder", "tokenizer", "unet", "scheduler"} <= set(index)
    assert {"vocab.json", "merges.txt"} <= {p.name for p in (folder / "tokenizer").iterdir()}
    assert (folder / "samples" / "epoch-0002.png").is_file()
    code = f"""
import sys, torch
from diffusers import DiffusionPipeline, StableDiffusionPipeline, DPMSolverMultistepScheduler, EulerDiscreteScheduler
pipe = StableDiffusionPipeline.from_pretrained({str(folder)!r})
assert type(DiffusionPipeline.from_pretrained({str(folder)!r})).__name__ == "StableDiffusionPipeline"
pipe.set_progress_bar_config(disable=True)
g = lambda: torch.Generator().manual_seed(0)
image = pipe("a handwritten digit seven", num_inference_steps=3, generator=g()).images[0]
print("image", image.size, image.mode)
for cls in (DPMSolverMultistepScheduler, EulerDiscreteScheduler):
    pipe.scheduler = cls.from_config(pipe.scheduler.config)
    guided = pipe("7", num_inference_steps=3, guidance_scale=4.0, generator=g(), output_type="np").images
    plain = pipe("7", num_inference_steps=3, guidance_scale=1.0, generator=g(), output_type="np").images
    negative = pipe("7", negative_prompt="1", num_inference_steps=3, guidance_scale=4.0, generator=g(),
                    output_type="np").images
    assert guided.shape == (1, 16, 16, 1) and abs(guided - plain).max() > 0 and abs(guided - negative).max() > 0
    print(cls.__name__, "ok")
assert not any(m.startswith("sd_course") for m in sys.modules)
"""
    result = run_python(code)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "image (16, 16) L" in result.stdout
    assert result.stdout.count(" ok") == 2


@pytest.mark.slow
def test_two_processes_train_data_parallel(tmp_path, tiny_vae):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           ENTRY, *t2i_args(out, tiny_vae, max_train_samples=32, train_batch_size=8, max_train_steps=3)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=str(REPO))
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((out / "train_summary.json").read_text())
    checksums = summary["param_checksum_per_process"]
    assert summary["num_processes"] == 2 and checksums[0] == checksums[1]
    assert summary["first_epoch_samples_per_process"] == [16, 16]
    assert summary["first_epoch_samples_seen_by_several_processes"] == 0


def test_starting_from_a_pretrained_pipeline_folder(tmp_path, tiny_sd):
    # No --vae_name_or_path: the VAE, tokenizer, text encoder, U-Net and scheduler all come from the folder.
    out = train_t2i(t2i_args(tmp_path / "finetune", None, pretrained_model_name_or_path=tiny_sd, max_train_steps=2))
    before = load_file(str(tiny_sd / "text_encoder" / "model.safetensors"))
    after = load_file(str(out / "text_encoder" / "model.safetensors"))
    assert before.keys() == after.keys() and not all(torch.equal(before[k], after[k]) for k in before)
    assert (out / "tokenizer" / "vocab.json").read_text() == (tiny_sd / "tokenizer" / "vocab.json").read_text()


def test_a_longer_context_keeps_what_the_text_encoder_computed():
    encoder = build_text_encoder("tiny-sd", vocab_size=300, max_length=8)
    longer = extend_context(encoder, 20)
    assert longer.config.max_position_embeddings == 20
    ids = torch.randint(2, 300, (3, 20))
    with torch.no_grad():
        before, after = encoder(ids[:, :8]).last_hidden_state, longer(ids).last_hidden_state
    torch.testing.assert_close(after[:, :8], before)  # causal attention: the first 8 positions are unchanged


def test_fine_tuning_with_a_longer_context_reads_long_prompts(tmp_path, tiny_sd):
    out = train_t2i(t2i_args(tmp_path / "longer", None, pretrained_model_name_or_path=tiny_sd, max_train_steps=2,
                             tokenizer_max_length=40, filler_captions=0.5))
    config = json.loads((out / "text_encoder" / "config.json").read_text())
    assert config["max_position_embeddings"] == 40
    long_prompt = "a very neat and bold handwritten digit, and it is a seven"  # ~30 tokens: over 16, within 40
    code = ("import torch; from diffusers import StableDiffusionPipeline\n"
            f"pipe = StableDiffusionPipeline.from_pretrained({str(out)!r})\n"
            f"ids = pipe.tokenizer({long_prompt!r}).input_ids\n"
            "assert pipe.tokenizer.model_max_length == 40 and 16 < len(ids) <= 40, len(ids)\n"
            f"image = pipe({long_prompt!r}, num_inference_steps=2, output_type='np').images\n"
            "print(image.shape)")
    result = run_python(code)
    assert result.returncode == 0, result.stderr[-2000:]


# ---------------------------------------------------------------------------------------------------------------
# Sampling from the command line, and bad input
# ---------------------------------------------------------------------------------------------------------------


def test_cli_sample_with_a_prompt_and_the_errors(tmp_path, tiny_sd, capsys):
    from PIL import Image

    from sd_course.app.cli import main as cli

    grid = tmp_path / "sevens.png"
    assert cli(["sample", "--model", str(tiny_sd), "--prompt", "a handwritten seven", "--guidance_scale", "3",
                "--scheduler", "dpm++", "--num_inference_steps", "3", "--num_images", "4", "--output", str(grid)]) == 0
    assert Image.open(grid).size[0] > 16
    assert "guidance" not in capsys.readouterr().out  # the user chose it
    assert cli(["sample", "--model", str(tiny_sd), "--prompt", "7", "--num_inference_steps", "2", "--num_images", "1",
                "--output", str(tmp_path / "default.png")]) == 0
    assert "guidance 2: the model card's (or the default)" in capsys.readouterr().out  # no card: the default, said
    cases = [
        (["--model", str(tiny_sd)], "is a text-to-image model: pass --prompt"),
        (["--model", str(tiny_sd), "--prompt", "  "], "--prompt is empty"),
        (["--model", str(tiny_sd), "--prompt", "7", "--guidance_scale", "0.5"], "below 1"),
        (["--model", str(tiny_sd), "--prompt", "7", "--height", "18"], "--height 18 cannot be taken"),
        (["--model", str(tiny_sd), "--prompt", "7", "--scheduler", "edm-euler"], "EDM preconditioning"),
        (["--model", "analytic:gaussian", "--prompt", "7"], "unconditional"),
    ]
    for argv, message in cases:
        assert cli(["sample", *argv, "--num_images", "1", "--output", str(tmp_path / "x.png")]) == 2
        assert message in capsys.readouterr().err, argv
    assert not (tmp_path / "x.png").exists()


def test_missing_caption_or_label_column(tmp_path, tiny_vae):
    for extra, message in [(dict(caption_column="text"), "--caption_column 'text' is not a column"),
                           (dict(label_column="digit"), "--label_column 'digit' is not a column")]:
        cfg = parse_args(t2i_args(tmp_path / "bad", tiny_vae, **extra), TextToImageConfig)
        with pytest.raises(InputError, match=message):
            train(cfg, TextToImage(cfg))
    assert not (tmp_path / "bad" / "model_index.json").exists()
    with pytest.raises(InputError, match="--caption_dropout"):
        cfg = parse_args(t2i_args(tmp_path / "bad", tiny_vae, caption_dropout=1.5), TextToImageConfig)
        train(cfg, TextToImage(cfg))


def test_an_epsilon_model_never_starts_sampling_at_pure_noise(tmp_path, tiny_vae):
    """Trailing spacing starts at t = T-1, where the cosine schedule's abar is 2.4e-9: an epsilon model's unclipped
    x0_hat is then noise x 20,000 (a 600-step run drew noise that way, and digits once sampled with "leading")."""
    cfg = parse_args(t2i_args(tmp_path / "ok", tiny_vae, ddpm_beta_schedule="squaredcos_cap_v2"), TextToImageConfig)
    assert cfg.timestep_spacing == "leading" and cfg.prediction_type == "epsilon"
    cfg.validate()
    bad = parse_args(t2i_args(tmp_path / "bad", tiny_vae, ddpm_beta_schedule="squaredcos_cap_v2",
                              timestep_spacing="trailing"), TextToImageConfig)
    with pytest.raises(InputError, match="--timestep_spacing leading, or --prediction_type v_prediction"):
        train(bad, TextToImage(bad))  # refused before anything is written
    assert not (tmp_path / "bad").exists()
    # v-prediction has no 1/sqrt(abar); the linear schedule's sqrt(abar_999) = 6.4e-3 amplifies 157x, not 20,000x
    for allowed in (dict(prediction_type="v_prediction"), dict(ddpm_beta_schedule="linear", ddpm_num_steps=1000)):
        parse_args(t2i_args(tmp_path / "ok", tiny_vae, timestep_spacing="trailing",
                            **{"ddpm_beta_schedule": "squaredcos_cap_v2", **allowed}), TextToImageConfig).validate()


def test_guidance_below_one_is_refused_by_the_library_call(tiny_sd):
    pipe = load_text_to_image_pipeline(str(tiny_sd), "ddim")
    with pytest.raises(InputError, match="below 1"):
        check_guidance_and_size(pipe, 0.9)
    check_guidance_and_size(pipe, 1.0, 16, 32)  # multiples of the VAE x U-Net factor are fine


# ---------------------------------------------------------------------------------------------------------------
# Which schedulers does the stock StableDiffusionPipeline sample correctly?
# ---------------------------------------------------------------------------------------------------------------


class TextIgnoringDenoiser(torch.nn.Module):
    """The exact denoiser of Gaussian latents behind UNet2DConditionModel's call signature (the text is ignored)."""

    def __init__(self, denoiser):
        super().__init__()
        self.denoiser = denoiser
        self.config = FrozenDict(**denoiser.config, time_cond_proj_dim=None, addition_embed_type=None)
        self.dtype, self.device = torch.float32, torch.device("cpu")

    def forward(self, sample, timestep, encoder_hidden_states=None, **kwargs):
        return self.denoiser(sample, timestep)


MU, S = 0.1, 0.3


STOCK_SD_WRONG = {"edm-euler"}  # EDM needs preconditioning (c_in, c_out, c_skip) that the stock pipeline skips


@pytest.mark.parametrize("alias", ["ddpm", "ddim", "pndm", "lms", "euler", "euler-a", "heun", "dpm++", "dpm++-2m-sde",
                                   "dpm++-sde", "dpm-single", "kdpm2", "kdpm2-a", "deis", "unipc", "edm-euler"])
def test_stock_stable_diffusion_pipeline_samples_the_exact_distribution(alias, tiny_sd):
    """The stock pipeline scales the initial noise and the model input as each scheduler asks (unlike the stock
    DDPMPipeline, see tests/pixel/test_pipeline.py): with the exact denoiser of N(0.1, 0.3^2) latents, the latents it
    returns have that mean and std for 14 of the 15 schedulers and DPM++ 2M SDE; EDM-Euler comes out wrong (measured
    mean -0.01)."""
    if alias == "dpm++-sde":
        pytest.importorskip("torchsde", reason="DPM++ SDE needs torchsde (pip install 'sd_course[sde]')")
    from diffusers import DDPMScheduler, StableDiffusionPipeline

    from sd_course.core.schedulers import SCHEDULERS, make_scheduler
    from sd_course.pixel.analytic import GaussianMixtureDenoiser

    training = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear")
    exact = GaussianMixtureDenoiser.gaussian(MU, S, image_shape=(4, 8, 8), scheduler=training)
    base = StableDiffusionPipeline.from_pretrained(str(tiny_sd), safety_checker=None, requires_safety_checker=False)
    pipe = StableDiffusionPipeline(vae=base.vae, text_encoder=base.text_encoder, tokenizer=base.tokenizer,
                                   unet=TextIgnoringDenoiser(exact), scheduler=training, safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    pipe.scheduler = make_scheduler(alias, training.config)  # the noise schedule pinned as trained
    pipe.set_progress_bar_config(disable=True)
    steps = next(info.default_steps for info in SCHEDULERS if info.alias == alias)
    latents = pipe(["7"] * 64, num_inference_steps=steps, guidance_scale=1.0, height=16, width=16,
                   generator=torch.Generator().manual_seed(0), output_type="latent").images
    assert latents.shape == (64, 4, 8, 8)
    mean_error, std_error = abs(float(latents.mean()) - MU), abs(float(latents.std()) / S - 1)
    if alias in STOCK_SD_WRONG:
        assert mean_error > 0.05 or std_error > 0.25, (alias, mean_error, std_error)
    else:
        assert mean_error < 0.05 and std_error < 0.25, (alias, mean_error, std_error)


def test_evaluate_reports_prompt_accuracy_on_training_and_held_out_phrasings(tmp_path, capsys):
    """`sd-course evaluate` on a text-to-image folder (an untrained 32x32 one: the plumbing, not the quality)."""
    from diffusers import DDPMScheduler

    from sd_course.app.cli import main as cli
    from sd_course.core.models import (
        build_conditional_unet,
        build_text_encoder,
        build_vae,
    )
    from sd_course.latent.text_to_image import make_pipeline

    torch.manual_seed(0)
    tokenizer = train_tokenizer([text for _, text in digit_prompts()] + [""], max_length=16)
    text_encoder = build_text_encoder("tiny-sd", vocab_size=len(tokenizer.get_vocab()), max_length=16,
                                      bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                                      pad_token_id=tokenizer.pad_token_id)
    vae = build_vae("tiny-vae", resolution=32)  # latents 4x16x16
    unet = build_conditional_unet("tiny-sd", 16, 4, text_encoder.config.hidden_size)
    make_pipeline(vae, tokenizer, text_encoder, unet, DDPMScheduler(num_train_timesteps=100, clip_sample=False)
                  ).save_pretrained(tmp_path / "sd")
    out = tmp_path / "metrics.json"
    assert cli(["evaluate", "--model", str(tmp_path / "sd"), "--reference", "builtin:mnist-2k:train",
                "--num_reference", "200", "--num_samples", "20", "--num_inference_steps", "2",
                "--guidance_scale", "2", "--device", "cpu", "--output_json", str(out)]) == 0
    assert "prompt accuracy:" in capsys.readouterr().out
    result = json.loads(out.read_text())
    for key in ("prompt_accuracy", "prompt_accuracy_heldout", "fid_mnist_classifier", "recall_mnist_classifier"):
        assert 0 <= result[key] and (result[key] <= 1 or key.startswith("fid")), key
    assert len(result["train_templates"]["prompt_accuracy_per_digit"]) == 10
    assert result["guidance_scale"] == 2 and result["n"] == 20
    assert result["device"] == "cpu"  # where its images were drawn: --device reaches a text-to-image model too
    if not torch.cuda.is_available():  # a device this machine lacks: one line, before any sampling
        assert cli(["evaluate", "--model", str(tmp_path / "sd"), "--reference", "builtin:mnist-2k:train",
                    "--num_samples", "20", "--device", "cuda"]) == 2
        assert "sees no CUDA GPU" in capsys.readouterr().err


def test_export_writes_a_loadable_folder_with_both_cards(tmp_path, tiny_sd, tiny_vae):
    from diffusers import AutoencoderKL, StableDiffusionPipeline
    from huggingface_hub import ModelCard

    from sd_course.app.cli import main as cli

    out = tmp_path / "mini-sd"
    assert cli(["export", str(tiny_sd), "--output", str(out), "--vae_run", str(tiny_vae),
                "--dataset_id", "ylecun/mnist", "--license", "cc-by-sa-3.0"]) == 0
    for name in ("samples.png", "loss.png", "loss.jsonl", "train_summary.json", "tokenizer/merges.txt"):
        assert (out / name).is_file(), name
    assert not list(out.glob("checkpoint-*")) and not (out / "logs").exists()
    card = ModelCard.load(out / "README.md")
    assert card.data.pipeline_tag == "text-to-image" and card.data.library_name == "diffusers"
    assert "CLIPTextModel" in card.text and "samples.png" in card.text
    assert "AutoencoderKL" in ModelCard.load(out / "vae" / "README.md").text
    StableDiffusionPipeline.from_pretrained(str(out))
    AutoencoderKL.from_pretrained(str(out / "vae"))
    assert cli(["export", str(tmp_path / "nothing"), "--output", str(out)]) == 2  # not a run: the old export stays
    assert (out / "README.md").is_file()


def test_the_vae_card_tells_a_refined_decoder_from_a_first_autoencoder(tmp_path, tiny_sd, tiny_vae):
    from huggingface_hub import ModelCard

    from sd_course.app.cli import main as cli
    from sd_course.latent.autoencoder import Autoencoder

    refined = tmp_path / "vae-decoder"
    main(flags(pretrained_vae=tiny_vae, train_parts="decoder", perceptual_weight=1.0, resolution=16,
               resize_mode="resize", max_train_samples=32, train_batch_size=16, max_train_steps=1, lr_warmup_steps=0,
               checkpointing_steps=0, save_model_epochs=0, save_images_epochs=0, logger="none", output_dir=refined),
         objective_class=Autoencoder)
    cards = {}
    for name, run in (("first", tiny_vae), ("refined", refined)):
        out = tmp_path / name
        assert cli(["export", str(tiny_sd), "--output", str(out), "--vae_run", str(run)]) == 0
        cards[name] = ModelCard.load(out / "vae" / "README.md").text
    assert "L1 reconstruction + KL)" in cards["first"] and "encoder frozen" not in cards["first"]
    assert "its decoder alone with L1 reconstruction + KL + a perceptual term" in cards["refined"]
    assert "encoder frozen" in cards["refined"] and "vae-mnist-decoder.yaml --pretrained_vae" in cards["refined"]
    assert "--config training/configs/vae-mnist.yaml" in cards["first"]  # no recipe recorded: the first one's
    # a run that recorded its recipe (training_config.json "config", as parse_args writes it) is reproduced by it
    sharp = tmp_path / "vae-sharp"
    shutil.copytree(tiny_vae, sharp)
    record = json.loads((sharp / "training_config.json").read_text())
    (sharp / "training_config.json").write_text(json.dumps(dict(record, config="training/configs/vae-mnist-sharp.yaml",
                                                                dataset_name="../shared/data/mnist")))
    assert cli(["export", str(tiny_sd), "--output", str(tmp_path / "sharp"), "--vae_run", str(sharp),
                "--dataset_id", "ylecun/mnist"]) == 0  # it read a local copy of what the recipe names: its Hub id
    card = ModelCard.load(tmp_path / "sharp" / "vae" / "README.md").text
    assert "--config training/configs/vae-mnist-sharp.yaml --dataset_name ylecun/mnist --output_dir runs/vae-sharp" \
        in card and "vae-mnist.yaml" not in card


def test_export_keeps_the_prompt_robustness_result_and_tables_it(tmp_path, tiny_sd):
    from huggingface_hub import ModelCard

    from sd_course.app.cli import main as cli

    group = dict(prompt_accuracy=0.5, worst_prompt_accuracy=0.25, worst_fid_over_floor=3.5)
    result = dict(provenance={"id": "x"}, num_per_phrasing=10, steps=25, guidance_scale=2.0,
                  groups={"training": group, "heldout_unseen_words": group},
                  overall=dict(n=20, fid=70.0, floor_fid=10.0, fid_over_floor=7.0),
                  no_digit=[dict(prompt="", mean_confidence=0.8), dict(prompt="a cat", mean_confidence=0.6)])
    (tmp_path / "robustness.json").write_text(json.dumps(result))
    out = tmp_path / "mini-sd"
    assert cli(["export", str(tiny_sd), "--output", str(out), "--prompt_robustness",
                str(tmp_path / "robustness.json")]) == 0
    assert json.loads((out / "prompt_robustness.json").read_text()) == result  # kept beside the weights, provenance too
    text = ModelCard.load(out / "README.md").text
    assert "### Any phrasing?" in text and "| phrasings with words it never saw | 50.0% | 25.0% | 3.50x |" in text
    assert "mean confidence 0.70" in text
