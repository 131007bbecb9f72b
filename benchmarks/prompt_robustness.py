"""Can a prompt break the mini Stable Diffusion? Phrasings written here and never in training, with words the
tokenizer never saw, a prompt longer than the old 16 tokens, prompts naming no digit; the pipeline loaded with plain
diffusers, as the README and the Hub tell users to load it.

    python benchmarks/prompt_robustness.py --model pipelines/mini-sd-mnist --reference ../shared/data/mnist:test \\
        --floor ../shared/data/mnist:train --output_json benchmarks/results/prompt_robustness.json
    python benchmarks/prompt_robustness.py --model runs/mini-sd-quick --num_per_phrasing 50   # a quick look

For each phrasing, ``--num_per_phrasing`` images (the ten digits in turn, one seed per image, other seeds for each
phrasing, so that all the phrasings' images pooled are independent samples), sampled by
``StableDiffusionPipeline.__call__`` with DPM-Solver++ (``--num_inference_steps``, ``--guidance_scale``), are read by
the shipped digit classifier: prompt accuracy (the share read as the digit the prompt names) and FID against held-out
real digits, beside the floor: ``--floor`` real digits scored the same way at the same n (FID is biased upwards at
small n, so a phrasing is judged by how many times its floor it scores). Prompts naming no digit should still give
digits: their classifier confidence and FID (any digit) are reported. The targets (issue 30): accuracy >= 97% on
the training phrasings and >= 95% on every held-out one, all digit-naming samples together within 1.5x of their floor,
no phrasing worse than 2x its floor.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline
from tqdm.auto import tqdm

from sd_course.core.data import to_uint8
from sd_course.core.device import device_argument, resolve_device
from sd_course.core.errors import InputError
from sd_course.core.options import DEVICE_HELP
from sd_course.core.provenance import write_result
from sd_course.evaluate.evaluation import FLOOR_METRICS, prompt_accuracy, real_data_floor
from sd_course.evaluate.metrics import features_of, load_feature_extractor, prepare_reference, score_images
from sd_course.latent.guidance import recommended_guidance
from sd_course.latent.latent_space import crop_to
from sd_course.latent.text import DIGIT_WORDS, HELDOUT_TEMPLATES, TRAIN_TEMPLATES

# Written for this benchmark, never used in training: {word} / {WORD} the digit's name (lower / upper case), {num} its
# numeral. Every word but the digit's, "a", "the", "number", "digit", "handwritten" is one the captions never had.
UNSEEN_WORDS = (
    "draw me a {num}",
    "a bold {word}",
    "{num} please",
    "please draw the number {word} for me",
    "my favourite digit is {num}",
    "{word}, written neatly in black ink",
    "a quick sketch of a {word} on white paper",
    "A SMALL {WORD}!",
    "the digit {num}, drawn by a child",
    # 40+ tokens with our BPE (unseen words split into letters), the digit named last: the old 16-token model lost it
    "a very neat and bold handwritten digit on white paper, drawn in black ink, and it is a {word}",
)
# Group ids (as the results file names them): the training phrasings; held-out phrasings of known words; of unseen ones
PHRASINGS = {"training": TRAIN_TEMPLATES, "heldout_known_words": HELDOUT_TEMPLATES,
             "heldout_unseen_words": UNSEEN_WORDS}
NO_DIGIT = ("", "a cat", "hello world", "a handwritten digit", "something nice on paper")
SEED_STRIDE = 100_000  # phrasing k draws its images from seeds seed + k * SEED_STRIDE + i


def prompt_of(template: str, digit: int) -> str:
    word = DIGIT_WORDS[digit]
    return template.format(word=word, WORD=word.upper(), num=digit)


def load_plain(model: str) -> StableDiffusionPipeline:
    """The pipeline exactly as a user of diffusers loads it, with DPM-Solver++ in place of its scheduler."""
    pipe = StableDiffusionPipeline.from_pretrained(model, safety_checker=None, requires_safety_checker=False)
    pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@torch.no_grad()
def sample(pipe, prompts: list[str], steps: int, guidance: float, seed: int, batch_size: int) -> torch.Tensor:
    """uint8 (N, 1, 28, 28): one image per prompt, image i from seed ``seed + i`` (independent of the batch size)."""
    out = []
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start:start + batch_size]
        generators = [torch.Generator().manual_seed(seed + start + i) for i in range(len(chunk))]
        images = pipe(chunk, num_inference_steps=steps, guidance_scale=guidance, generator=generators,
                      output_type="pt").images  # (B, C, 32, 32) in [0, 1]
        out.append(crop_to(to_uint8(images * 2 - 1), 28)[:, :1])
    return torch.cat(out)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="pipelines/mini-sd-mnist", help="a text-to-image pipeline folder or Hub id")
    parser.add_argument("--reference", default="ylecun/mnist:test", help="held-out real digits, NAME_OR_PATH[:split]")
    parser.add_argument("--floor", default="ylecun/mnist:train", help="real digits scored like the samples")
    parser.add_argument("--num_per_phrasing", type=int, default=200)
    parser.add_argument("--num_inference_steps", type=int, default=25)
    parser.add_argument("--guidance_scale", type=float, default=None,
                        help="default: the model's, as sd-course sample takes it (the guidance its card recommends)")
    parser.add_argument("--batch_size", type=int, default=250)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", type=device_argument, help=DEVICE_HELP)
    parser.add_argument("--output_json", default=None)
    args = parser.parse_args(argv)
    if args.num_per_phrasing < 10 or args.num_per_phrasing % 10:
        raise InputError(f"--num_per_phrasing must be a multiple of 10 (each digit equally often), got "
                         f"{args.num_per_phrasing}")
    start = time.time()
    device = resolve_device(args.device)
    pipe = load_plain(args.model).to(device)  # the starting noise is drawn on the CPU: the same images anywhere
    if args.guidance_scale is None:
        args.guidance_scale = recommended_guidance(args.model)
    extractor = load_feature_extractor()
    ref = prepare_reference(args.reference, extractor, sample_shape=(1, 28, 28), what=f"samples of {args.model!r}")
    n = args.num_per_phrasing
    floor = real_data_floor(args.floor, n, ref, extractor, args.seed)
    digits = torch.arange(n) % 10
    rows, pooled = [], []
    jobs = [(group, t) for group, templates in PHRASINGS.items() for t in templates]
    for job, (group, template) in enumerate(tqdm(jobs, desc="phrasings")):
        # seeds of its own for every phrasing: pooled, the phrasings' images are as many independent samples
        images = sample(pipe, [prompt_of(template, int(d)) for d in digits], args.num_inference_steps,
                        args.guidance_scale, args.seed + SEED_STRIDE * job, args.batch_size)
        _, probs = features_of(images, extractor)
        scores = score_images(images, ref, extractor, args.seed)
        fid = scores["fid_mnist_classifier"]
        rows.append(dict(group=group, phrasing=template, example=prompt_of(template, 7),
                         tokens=len(pipe.tokenizer(prompt_of(template, 7)).input_ids),
                         **prompt_accuracy(probs, digits), fid=round(fid, 1),
                         fid_over_floor=round(fid / floor["fid_mnist_classifier"], 2)))
        pooled.append(images)
    no_digit = []
    for job, prompt in enumerate(NO_DIGIT, start=len(jobs)):
        images = sample(pipe, [prompt] * n, args.num_inference_steps, args.guidance_scale,
                        args.seed + SEED_STRIDE * job, args.batch_size)
        _, probs = features_of(images, extractor)
        fid = score_images(images, ref, extractor, args.seed)["fid_mnist_classifier"]
        no_digit.append(dict(prompt=prompt, mean_confidence=round(probs.max(-1).values.mean().item(), 3),
                             fid=round(fid, 1), fid_over_floor=round(fid / floor["fid_mnist_classifier"], 2)))
    everything = torch.cat(pooled)
    overall_floor = real_data_floor(args.floor, len(everything), ref, extractor, args.seed)
    overall_fid = score_images(everything, ref, extractor, args.seed)["fid_mnist_classifier"]
    summary = {group: dict(prompt_accuracy=sum(r["prompt_accuracy"] for r in rows if r["group"] == group)
                           / sum(r["group"] == group for r in rows),
                           worst_prompt_accuracy=min(r["prompt_accuracy"] for r in rows if r["group"] == group),
                           worst_fid_over_floor=max(r["fid_over_floor"] for r in rows if r["group"] == group))
               for group in PHRASINGS}
    result = dict(model=args.model, scheduler="DPMSolverMultistepScheduler", steps=args.num_inference_steps,
                  guidance_scale=args.guidance_scale, num_per_phrasing=n, model_max_length=pipe.tokenizer.model_max_length,
                  floor={k: floor[k] for k in FLOOR_METRICS if k in floor} | {"n": n, "spec": args.floor},
                  groups=summary, rows=rows, no_digit=no_digit,
                  overall=dict(n=len(everything), fid=round(overall_fid, 1),
                               floor_fid=round(overall_floor["fid_mnist_classifier"], 1),
                               fid_over_floor=round(overall_fid / overall_floor["fid_mnist_classifier"], 2)),
                  seconds=round(time.time() - start, 1))
    for row in rows:
        print(f"{row['group']:<24} {row['prompt_accuracy']:6.1%}  FID {row['fid']:7.1f} ({row['fid_over_floor']:5.2f}x "
              f"floor)  {row['tokens']:3d} tokens  {row['example']!r}")
    for row in no_digit:
        print(f"{'no digit':<24} confidence {row['mean_confidence']:.3f}  FID {row['fid']:7.1f} "
              f"({row['fid_over_floor']:5.2f}x)  {row['prompt']!r}")
    print(f"all digit-naming samples (n = {len(everything)}): FID {overall_fid:.1f}, floor "
          f"{overall_floor['fid_mnist_classifier']:.1f} ({result['overall']['fid_over_floor']}x)")
    if args.output_json:
        model = [args.model] if Path(args.model).exists() else []  # a Hub id: its weights are not hashed here
        write_result(args.output_json, result, inputs=[*model, "sd_course/assets/mnist-classifier/model.safetensors"],
                     device=device)
        print(f"wrote {args.output_json}")
    return result


if __name__ == "__main__":
    main()
