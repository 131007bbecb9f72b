"""The ``sd-course`` command line. It only parses arguments and calls the modules; no logic of its own.

    sd-course train      --config training/configs/mnist.yaml --output_dir runs/mnist
    sd-course sample     --model runs/mnist --scheduler dpm++ --num_inference_steps 20 --output grid.png
    sd-course trajectory --model runs/mnist --output_dir figures/
    sd-course forward    --image digit.png --timesteps 0,100,250,500,999 --output forward.png
    sd-course schedules  --output schedules.png
    sd-course evaluate   --model runs/mnist --reference ylecun/mnist:test --num_samples 1000
    sd-course compare    runs/a runs/b --num_samples 500
    sd-course export     runs/mnist --output pipelines/ddpm-mnist --metrics runs/mnist/metrics.json
    sd-course inversion  --output_dir figures/inversion
    sd-course latents    --vae pipelines/mini-sd-mnist/vae --output_dir figures/latents/
    sd-course attention  --model pipelines/mini-sd-mnist --prompt "a handwritten digit seven" --output_dir figs/
    sd-course anatomy    --output_dir figs/     # both U-Nets: blocks, shapes, parameters, attention, the time path
    sd-course inpaint    --model pipelines/ddpm-mnist --image digit.png --mask mask.png --output filled.png
    sd-course predictions --model pipelines/ddpm-mnist --output_dir figs/   # v, eps, x_0 at each t; loss vs the exact denoiser
    sd-course questions  --check            (or --write: regenerate docs/questions.md)
    sd-course results    check              (or write, list, rerun ID, retire ID: the numbers the prose quotes)
    sd-course handout    --output_dir handout/
    sd-course derivations --output derivations.docx
    sd-course push       pipelines/ddpm-mnist --repo_id YOUR_NAME/ddpm-mnist
    sd-course demo       --port 7860

Each sub-command is declared by one ``_add_<name>`` function below: its arguments, then the function it calls.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from sd_course.core.errors import InputError
from sd_course.core.options import SCHEDULER_HELP, add_sample_arguments, sample_options


def deferred(module: str):
    """The one place where sd_course defers imports: ``sd-course --help`` and a mistyped flag must answer in a
    fraction of a second, and importing the package's layers pulls in torch, diffusers and transformers (~3 s).
    Each handler asks here for the module it forwards to, when it runs."""
    return importlib.import_module(module)


def _add_train(sub):
    p = sub.add_parser(
        "train",
        help="train an unconditional DDPM (same flags as training/train_unconditional.py)",
        add_help=False,
    )

    def run(args, rest):

        launch, diffusion = deferred("sd_course.app.launch"), deferred("sd_course.pixel.diffusion")
        launch.main(rest, objective_class=diffusion.PixelDiffusion)

    p.set_defaults(func=run, passthrough=True)


MODEL_HELP = ("a pipeline folder (model_index.json + unet/ + scheduler/), a Hub id, or analytic:mnist | "
              "analytic:gaussian | analytic:two-gaussians (exact denoisers); default: $SD_COURSE_PRETRAINED, "
              "else the shipped pipelines/ddpm-mnist")


def _add_sample(sub):
    p = sub.add_parser("sample", help="sample images from a model: any compatible scheduler, a prompt for text models")
    p.add_argument("--model", default=None, help=MODEL_HELP)
    add_sample_arguments(p, ["scheduler", "num_inference_steps", "eta", "timestep_spacing", "seed", "batch_size",
                             "device"])
    p.add_argument("--num_images", type=int, default=16)
    p.add_argument("--output", default=None, help="grid PNG (default samples.png unless --output_dir is given)")
    p.add_argument("--output_dir", default=None, help="also write one PNG per image here (00000.png, ...)")
    t2i = p.add_argument_group("text-to-image models (a StableDiffusionPipeline folder, e.g. pipelines/mini-sd-mnist)")
    add_sample_arguments(t2i, ["prompt", "negative_prompt", "guidance_scale", "height", "width"])

    def run(args):
        figures = deferred("sd_course.app.figures")
        written = figures.write_samples(args.model, sample_options(args), args.num_images, args.output,
                                        args.output_dir)
        if "grid" in written:
            print(f"wrote {written['grid']}")
        if "images" in written:
            print(f"wrote {len(written['images'])} images to {args.output_dir}")
        if "recommended_guidance" in written:
            print(f"guidance {written['recommended_guidance']:g}: the model card's (or the default); "
                  "--guidance_scale to choose")

    p.set_defaults(func=run)


def _add_trajectory(sub):
    p = sub.add_parser("trajectory", help="save x_t and predicted x0 along the reverse process (PNG strip + GIF)")
    p.add_argument("--model", default=None, help=MODEL_HELP)
    p.add_argument("--scheduler", default=None, help=SCHEDULER_HELP)
    p.add_argument("--num_inference_steps", type=int, default=None, help="default: the scheduler's usual count")
    p.add_argument("--num_images", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eta", type=float, default=None, help="DDIM only")
    p.add_argument("--num_frames", type=int, default=8, help="columns of the strip, evenly spaced")
    p.add_argument("--steps", default=None, help="model-call indices for the strip instead, e.g. 0,10,25,-1")
    p.add_argument("--output_dir", default=".", help="writes <name>.png and <name>.gif here")
    p.add_argument("--name", default="trajectory", help="file name stem")
    add_sample_arguments(p, ["device"])

    def run(args):
        write_trajectory = deferred("sd_course.app.figures").write_trajectory

        written = write_trajectory(args.model, args.scheduler, args.num_inference_steps, args.num_images, args.seed,
                                   args.eta, args.num_frames, args.steps, args.output_dir, args.name,
                                   device=args.device)
        print(f"wrote {written['png']} and {written['gif']}")

    p.set_defaults(func=run)


def _add_forward(sub):
    p = sub.add_parser("forward", help="show the forward noising q(x_t | x_0) of a real image")
    p.add_argument("--image", default=None, help="an image file (else the first images of --dataset_name)")
    p.add_argument("--dataset_name", default=None,
                   help="NAME_OR_PATH[:split], e.g. ylecun/mnist:test (default: the package's MNIST digits)")
    p.add_argument("--num_images", type=int, default=3, help="rows, from the dataset")
    p.add_argument("--timesteps", default="0,50,100,250,500,750,999", help="comma-separated t in 0..T-1")
    p.add_argument("--beta_schedule", default="linear", help="linear, scaled_linear, squaredcos_cap_v2 or sigmoid")
    p.add_argument("--num_train_timesteps", type=int, default=1000)
    p.add_argument("--resolution", type=int, default=None, help="default: the images' own size")
    p.add_argument("--seed", type=int, default=0, help="seed of the noise eps")
    p.add_argument("--output", default="forward.png")

    def run(args):
        write_forward = deferred("sd_course.app.figures").write_forward

        print("wrote " + write_forward(args.output, args.image, args.dataset_name, args.num_images, args.timesteps,
                                       args.beta_schedule, args.num_train_timesteps, args.resolution, args.seed))

    p.set_defaults(func=run)


def _add_schedules(sub):
    p = sub.add_parser("schedules", help="plot alpha_bar_t, beta_t and log-SNR of the beta schedules")
    p.add_argument("--schedules", default="linear,scaled_linear,squaredcos_cap_v2,sigmoid")
    p.add_argument("--num_train_timesteps", type=int, default=1000)
    p.add_argument("--output", default="schedules.png")

    def run(args):
        write_schedules = deferred("sd_course.app.figures").write_schedules

        print("wrote " + write_schedules(args.output, args.schedules, args.num_train_timesteps))

    p.set_defaults(func=run)


FLOOR_HELP = ("real images NAME_OR_PATH[:split] scored the same way, as many as the samples: the best score possible "
              "at this n (e.g. ylecun/mnist:train when --reference is the test split)")


def _add_evaluate(sub):
    p = sub.add_parser("evaluate", help="FID / KID / precision / recall of a model or a folder of samples",
                       description="Score generated digits against real ones in the features of the shipped MNIST "
                                   "classifier (fid_mnist_classifier, KID, precision/recall k=3, class histogram).")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="a pipeline folder (model_index.json + unet/ + scheduler/)")
    source.add_argument("--samples", help="a folder of PNG images from any generator (a GAN, another repo)")
    p.add_argument("--reference", default="ylecun/mnist:test",
                   help="real images: NAME_OR_PATH[:split] (default split: test)")
    p.add_argument("--num_reference", type=int, default=None, help="use the first N reference images (default all)")
    p.add_argument("--num_samples", type=int, default=None,
                   help="images to generate (default 1000) or to read from --samples (default all)")
    p.add_argument("--kid_subset_size", type=int, default=None, help="default min(1000, number of samples)")
    p.add_argument("--kid_subsets", type=int, default=100)
    p.add_argument("--nearest_k", type=int, default=3, help="k of the k-NN manifolds of precision/recall")
    p.add_argument("--classifier", default=None, help="another classifier folder (default: the shipped one)")
    p.add_argument("--inception_fid", action="store_true",
                   help="also compute standard Inception FID (needs torchmetrics[image] and the weights)")
    p.add_argument("--inception_weights", default=None, help="local FID Inception weights (implies --inception_fid)")
    p.add_argument("--output_json", default=None, help="write all numbers and their provenance here")
    p.add_argument("--floor", default=None, help=FLOOR_HELP)
    add_sample_arguments(p, ["scheduler", "num_inference_steps", "eta", "timestep_spacing", "seed", "batch_size",
                             "device"], batch_size=250)
    add_sample_arguments(p.add_argument_group("text-to-image models (each digit is asked for in turn; the share the "
                                              "classifier reads as that digit is reported: prompt accuracy)"),
                         ["guidance_scale"])

    def run(args):
        evaluation = deferred("sd_course.evaluate.evaluation")

        evaluation.evaluate(
            model=args.model, samples=args.samples, reference=args.reference, num_samples=args.num_samples,
            seed=args.seed, scheduler=args.scheduler, num_inference_steps=args.num_inference_steps, eta=args.eta,
            batch_size=args.batch_size, num_reference=args.num_reference, kid_subset_size=args.kid_subset_size,
            kid_subsets=args.kid_subsets, nearest_k=args.nearest_k, classifier=args.classifier,
            inception_fid_=args.inception_fid, inception_weights=args.inception_weights,
            output_json=args.output_json, guidance_scale=args.guidance_scale, floor=args.floor,
            timestep_spacing=args.timestep_spacing, device=args.device,
        )

    p.set_defaults(func=run)


def _add_compare(sub):
    p = sub.add_parser("compare", help="one metrics table and a side-by-side grid for several models",
                       description="Sample every model with the same seeds and score them alike. A training run "
                                   "folder with epoch-XXXX/ snapshots is expanded, and its metrics plotted per epoch. "
                                   "A text-to-image model is asked for each digit in turn, as `sd-course evaluate` "
                                   "asks (default sampler: dpm++, 25 steps), and also scored on prompt accuracy.")
    p.add_argument("models", nargs="+", help="pipeline folders, training runs (epoch-XXXX/ snapshots) or PNG folders")
    p.add_argument("--num_samples", type=int, default=500)
    p.add_argument("--reference", default="ylecun/mnist:test", help="real images: NAME_OR_PATH[:split]")
    p.add_argument("--num_reference", type=int, default=None, help="use the first N reference images (default all)")
    p.add_argument("--kid_subset_size", type=int, default=None, help="default min(1000, number of samples)")
    p.add_argument("--kid_subsets", type=int, default=100)
    p.add_argument("--classifier", default=None, help="another classifier folder (default: the shipped one)")
    p.add_argument("--grid_columns", type=int, default=8, help="samples per model in the grid")
    p.add_argument("--output_dir", default="compare", help="where compare.json and the figures go")
    p.add_argument("--floor", default=None, help=FLOOR_HELP)
    add_sample_arguments(p, ["scheduler", "num_inference_steps", "eta", "timestep_spacing", "seed", "batch_size",
                             "device"], batch_size=250)
    p.add_argument("--reuse", default=None, help="an earlier compare.json: models with the same U-Net weights, sampler, "
                                                 "n and seed keep its scores (a continued run: score new epochs only)")
    add_sample_arguments(p.add_argument_group("text-to-image models (each digit is asked for in turn; the share the "
                                              "classifier reads as that digit is reported: prompt accuracy)"),
                         ["guidance_scale"])

    def run(args):
        evaluation = deferred("sd_course.evaluate.evaluation")

        evaluation.compare(
            args.models, num_samples=args.num_samples, seed=args.seed, reference=args.reference,
            scheduler=args.scheduler, num_inference_steps=args.num_inference_steps, eta=args.eta,
            batch_size=args.batch_size, num_reference=args.num_reference, kid_subset_size=args.kid_subset_size,
            kid_subsets=args.kid_subsets, classifier=args.classifier, output_dir=args.output_dir,
            grid_columns=args.grid_columns, floor=args.floor, reuse=args.reuse, timestep_spacing=args.timestep_spacing,
            device=args.device, guidance_scale=args.guidance_scale,
        )

    p.set_defaults(func=run)


def _add_export(sub):
    p = sub.add_parser("export", help="copy a trained pipeline with its logs, plots and a model card, ready to ship",
                       description="Copy a training run's pipeline (fp32 safetensors) with loss.jsonl, loss.png, a "
                                   "sample grid and a README.md model card rendered from model_cards/ into a clean "
                                   "folder (atomically), ready for pipelines/ or huggingface_hub.upload_folder.")
    p.add_argument("run", help="a training run's --output_dir (or one of its epoch-XXXX/ snapshots)")
    p.add_argument("--output", required=True, help="a new or empty folder to write (atomically)")
    p.add_argument("--overwrite", action="store_true", help="replace --output if it holds an earlier export of the "
                                                            "same kind (never anything else)")
    p.add_argument("--metrics", default=None, help="the JSON of `sd-course evaluate --output_json`, for the card "
                                                   "(default with --ladder: the exported epoch's row of the ladder; "
                                                   "for a text-to-image run only if it has held-out prompt accuracy)")
    p.add_argument("--name", default=None, help="model name in the card (default: the output folder's name)")
    p.add_argument("--dataset_id", default=None, help="Hub id of the training data for the card, e.g. ylecun/mnist")
    p.add_argument("--license", default="apache-2.0", help="license of the weights (MNIST data: cc-by-sa-3.0)")
    p.add_argument("--summary", default=None, help="the card's first paragraph")
    p.add_argument("--hardware", default=None, help="default: as recorded by the training run")
    p.add_argument("--train_command", default=None, help="the command that trained it, shown in the card")
    p.add_argument("--load_path", default=None, help="the path or Hub id shown in the card's code (default: --output)")
    p.add_argument("--num_grid", type=int, default=64, help="images in samples.png")
    add_sample_arguments(p, ["scheduler", "num_inference_steps", "seed", "device"], scheduler="dpm++",
                         num_inference_steps=25)
    p.add_argument("--template", default=None, help="another card template (default: model_cards/ddpm-unconditional.md)")
    p.add_argument("--ladder", default=None, help="the --output_dir of `sd-course compare` over the run's epoch "
                                                  "snapshots: its table and plot go into the card")
    p.add_argument("--samplers", nargs="+", default=None, metavar="JSON",
                   help="the --output_json of benchmarks/scheduler_table.py (one or several, same model and n): the "
                        "card gets a 'Which sampler?' table and recommendation")
    t2i = p.add_argument_group("text-to-image runs (StableDiffusionPipeline folders)")
    t2i.add_argument("--guidance_sweep", default=None, help="the JSON of benchmarks/guidance_sweep.py, for the card")
    t2i.add_argument("--vae_run", default=None, help="the training run of its VAE (runs/vae-mnist), for vae/README.md")
    t2i.add_argument("--vae_metrics", default=None, help="the JSON of benchmarks/vae_quality.py, for vae/README.md")
    t2i.add_argument("--prompt_robustness", default=None, help="the JSON of benchmarks/prompt_robustness.py, for the "
                                                               "card")

    def run(args):
        export = deferred("sd_course.publish.export")
        if export.exports_text_to_image(args.run):
            out = export.export_text_to_image(args.run, args.output, args.metrics, args.guidance_sweep, args.vae_run,
                                              args.vae_metrics, args.dataset_id, args.license, args.load_path,
                                              overwrite=args.overwrite, device=args.device,
                                              robustness_json=args.prompt_robustness, ladder_dir=args.ladder)
            print(f"wrote {out} (model cards: {out / 'README.md'}, {out / 'vae' / 'README.md'})")
            return
        out = export.export_pipeline(
            args.run, args.output, metrics_json=args.metrics, name=args.name, dataset_id=args.dataset_id,
            license=args.license, summary=args.summary, hardware=args.hardware, train_command=args.train_command,
            load_path=args.load_path, num_grid=args.num_grid, scheduler=args.scheduler,
            num_inference_steps=args.num_inference_steps, seed=args.seed, template=args.template,
            ladder_dir=args.ladder, sampler_tables=args.samplers, overwrite=args.overwrite, device=args.device)
        print(f"wrote {out} (model card: {out / 'README.md'})")

    p.set_defaults(func=run)


def _add_inversion(sub):
    p = sub.add_parser("inversion", help="Part 1 of the lab: can an MLP learn arcsin, the inverse of sin?")
    p.add_argument("--output_dir", required=True, help="folder for the PNG figures, metrics.json and report.md")
    p.add_argument("--hidden", help="hidden widths of the main network, comma-separated (default 3,3: 1-3-3-1)")
    p.add_argument("--activation", help="activation of the main network: relu or tanh (default relu)")
    p.add_argument("--num_samples", type=int, help="training pairs, x ~ U[-1, 1], y = sin(x) (default 1000)")
    p.add_argument("--epochs", type=int, help="full-batch Adam steps per run (default 600)")
    p.add_argument("--seeds", help="comma-separated seeds, one run per seed and network (default 0,1,2,3,4)")

    def run(args):
        inversion = deferred("sd_course.inversion.arcsin")

        # Only the flags given are passed on; the defaults live in inversion.InversionConfig.
        given = {k: getattr(args, k) for k in ("hidden", "activation", "num_samples", "epochs", "seeds")}
        config = inversion.InversionConfig(
            output_dir=args.output_dir, **{k: v for k, v in given.items() if v is not None}
        )
        metrics = inversion.run_inversion(config)
        print(inversion.format_summary(metrics))

    p.set_defaults(func=run)


def _add_latents(sub):
    p = sub.add_parser("latents", help="the latent-space lesson: VAE channels, interpolation, DDIM inversion",
                       description="Figures and numbers of docs/latent_space.md: digits -> 4 latent channels -> "
                                   "reconstruction, pixel vs latent interpolation, DDIM inversion and noise slerp.")
    p.add_argument("--vae", default=None, help="an AutoencoderKL folder (training/train_vae.py) or a text-to-image "
                                               "pipeline folder (default: the shipped pipelines/mini-sd-mnist)")
    p.add_argument("--model", default=None, help="a pixel pipeline for the DDIM part (default: pipelines/ddpm-mnist; "
                                                 "'none' skips it)")
    p.add_argument("--dataset", default="builtin:mnist-2k:train", help="digits: NAME_OR_PATH[:split]")
    p.add_argument("--num_digits", type=int, default=6, help="digits in the figures")
    p.add_argument("--num_eval", type=int, default=1000, help="digits for the reconstruction numbers")
    p.add_argument("--num_inference_steps", type=int, default=50, help="DDIM steps of inversion and generation")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output_dir", default="figures/latents")
    add_sample_arguments(p, ["device"])

    def run(args):
        write_latent_lesson = deferred("sd_course.latent.latent_space").write_latent_lesson

        numbers = write_latent_lesson(args.vae, args.model, args.output_dir, args.dataset, args.num_digits,
                                      args.num_eval, args.num_inference_steps, args.seed, device=args.device)
        rec = numbers["reconstruction"]
        print(f"{numbers['pixels_per_image']} pixels -> {numbers['latent_numbers_per_image']} latent numbers "
              f"({numbers['compression']:.2f}x); reconstruction MSE {rec['mse']:.5f}, PSNR {rec['psnr_db']:.1f} dB; "
              f"scaled latent std {numbers['latents']['scaled']['std']:.3f}")
        if "ddim_inversion" in numbers:
            inv = numbers["ddim_inversion"]
            print(f"DDIM inversion ({inv['steps']} steps) and back: MSE {inv['mse']:.5f}, PSNR {inv['psnr_db']:.1f} dB")
        print(f"wrote {args.output_dir}/: channels.png interpolation.png"
              + (" ddim_inversion.png noise_path.png" if "ddim_inversion" in numbers else "") + " latents.json")

    p.set_defaults(func=run)


def _add_attention(sub):
    p = sub.add_parser("attention", help="the mini-SD's cross-attention maps: which token each latent position reads",
                       description="Sample a prompt once with a text-to-image pipeline, recording "
                                   "softmax(QK^T/sqrt(d)) of every cross-attention layer (conditional half, mean over "
                                   "heads): maps per token and step (attention.png), shares per layer "
                                   "(per_layer.png), attention.json.")
    p.add_argument("--model", default=None, help="a text-to-image pipeline folder (default: the shipped "
                                                 "pipelines/mini-sd-mnist)")
    add_sample_arguments(p, ["prompt", "scheduler", "num_inference_steps", "guidance_scale", "seed", "device"],
                         prompt="a handwritten digit seven", scheduler="ddim", num_inference_steps=25)
    p.add_argument("--num_rows", type=int, default=4, help="sampling steps shown in attention.png, evenly spaced")
    p.add_argument("--output_dir", default="figures/attention")

    def run(args):
        write_attention_lesson = deferred("sd_course.latent.attention_maps").write_attention_lesson

        numbers = write_attention_lesson(args.model, args.prompt, args.output_dir, args.num_inference_steps,
                                         args.guidance_scale, args.seed, args.scheduler, args.num_rows,
                                         device=args.device)
        print(numbers["summary"])
        print(f"wrote {args.output_dir}/: attention.png per_layer.png attention.json")

    p.set_defaults(func=run)


def _add_anatomy(sub):
    p = sub.add_parser("anatomy", help="the U-Nets' anatomy, measured: each block's shapes and parameters, the "
                                       "timestep path, where self- and cross-attention sit",
                       description="Run the pixel U-Net and the mini-SD's U-Net once each with forward hooks on every "
                                   "block and part: input and output shapes, parameter counts (they sum to the "
                                   "model's), the skips, the timestep-embedding path, each attention layer (self or "
                                   "cross, queries x keys or tokens, heads). Writes anatomy.png and anatomy.json, "
                                   "prints the table; a few seconds on a CPU.")
    p.add_argument("--pixel_model", default=None, help="a UNet2DModel pipeline folder or its unet/ (default: the "
                                                       "shipped pipelines/ddpm-mnist; 'none' leaves it out)")
    p.add_argument("--text_model", default=None, help="a text-to-image pipeline folder or its unet/ (default: the "
                                                      "shipped pipelines/mini-sd-mnist; 'none' leaves it out)")
    add_sample_arguments(p, ["prompt", "device"], prompt="a handwritten digit seven")
    p.add_argument("--output_dir", default="figures/anatomy")

    def run(args):
        anatomy = deferred("sd_course.app.anatomy")

        numbers = anatomy.write_anatomy_lesson(args.pixel_model, args.text_model, args.output_dir, args.prompt,
                                               device=args.device)
        print(numbers["table"])
        print(f"wrote {args.output_dir}/: anatomy.png anatomy.json ({numbers['seconds']} s)")

    p.set_defaults(func=run)


def _add_inpaint(sub):
    p = sub.add_parser("inpaint", help="fill the white part of a mask in a real image (RePaint with the pixel model)")
    p.add_argument("--model", default=None, help=MODEL_HELP)
    p.add_argument("--image", required=True, help="the image to complete, a PNG of the model's size (digits: 28x28 L)")
    p.add_argument("--mask", required=True, help="a black-and-white PNG of the same size, white = the part to fill; "
                   "or one of lower_half, upper_half, left_half, right_half, center")
    p.add_argument("--output", default="inpainted.png", help="the filled image (a row of fills if --num_images > 1)")
    p.add_argument("--scheduler", default="ddpm", help="ddpm (default) or ddim: inpainting needs a stateless step")
    p.add_argument("--num_inference_steps", type=int, default=None, help="denoising steps (default 100)")
    p.add_argument("--num_images", type=int, default=1, help="fills to make, seeds --seed, --seed + 1, ...")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resample", type=int, default=1,
                   help="RePaint resampling: repeat each step this many times, going back up one step in between")
    p.add_argument("--figure", default=None, help="also write original | mask | input | fills as one PNG")
    add_sample_arguments(p, ["device"])

    def run(args):
        write_inpainting = deferred("sd_course.app.figures").write_inpainting

        written = write_inpainting(args.model, args.image, args.mask, args.output, args.scheduler,
                                   args.num_inference_steps, args.num_images, args.seed, args.resample, args.figure,
                                   device=args.device)
        for path in written.values():
            print(f"wrote {path}")

    p.set_defaults(func=run)


def _add_predictions(sub):
    p = sub.add_parser("predictions", help="what the pixel model predicts at each t, and its loss per t against the "
                                           "exact denoiser of the training set",
                       description="One digit, one noise, several t: x_t, the predicted v, the eps and x_0 it implies "
                                   "and the true ones (predictions.png); the per-pixel v-MSE per t of the network and "
                                   "of the exact denoiser of a training set, on its digits and on others "
                                   "(loss_per_t.png); the numbers in predictions.json.")
    p.add_argument("--model", default=None, help=MODEL_HELP)
    p.add_argument("--train_dataset", default="builtin:mnist-2k:train",
                   help="the training set of the exact denoiser: NAME_OR_PATH[:split] (e.g. "
                        "../shared/data/mnist:train, the shipped pixel model's own training digits)")
    p.add_argument("--test_dataset", default=None, help="the other digits: NAME_OR_PATH[:split] (default: --num_digits "
                                                        "digits of --train_dataset, left out of the training set)")
    p.add_argument("--num_train", type=int, default=None,
                   help="use the first N images of --train_dataset (default all)")
    p.add_argument("--num_digits", type=int, default=32, help="digits per set in the loss curve")
    p.add_argument("--num_draws", type=int, default=2, help="noise draws per digit and t in the loss curve")
    p.add_argument("--timesteps", default="0,50,150,300,500,700,850,999", help="the columns of predictions.png")
    p.add_argument("--loss_timesteps", default="0,10,25,50,100,200,300,400,500,700,850,999",
                   help="the t of the loss curve")
    p.add_argument("--digit_index", type=int, default=0, help="which of the other digits predictions.png shows")
    p.add_argument("--seed", type=int, default=0, help="seed of the choice of digits and of the noise")
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--output_dir", default="figures/predictions")
    add_sample_arguments(p, ["device"])

    def run(args):
        predictions = deferred("sd_course.pixel.predictions")

        numbers = predictions.write_predictions_lesson(
            args.model, args.output_dir, args.train_dataset, args.test_dataset, args.num_train, args.num_digits,
            args.num_draws, args.timesteps, args.loss_timesteps, args.digit_index, args.seed, args.batch_size,
            device=args.device)
        print(predictions.format_summary(numbers))
        print(f"wrote {args.output_dir}/: predictions.png loss_per_t.png predictions.json")

    p.set_defaults(func=run)


def _add_push(sub):
    p = sub.add_parser("push", help="upload a pipeline or model folder to the Hugging Face Hub (checked, with a card)",
                       description="Check that the folder loads, render a model card README.md when it has none, "
                                   "then create the repo (if missing) and upload the folder in one commit, without "
                                   "checkpoints, snapshots and logs. Log in first with `hf auth login` (or set "
                                   "HF_TOKEN). The local folder is never modified.")
    p.add_argument("folder", help="a pipeline folder (model_index.json) or a model folder (config.json), e.g. "
                                  "pipelines/ddpm-mnist or a training run's --output_dir")
    p.add_argument("--repo_id", default=None, help="NAMESPACE/NAME on the Hub (default: the folder's name in your "
                                                   "namespace)")
    p.add_argument("--private", action="store_true", help="create the repository private (if it does not exist)")
    p.add_argument("--commit_message", default=None, help="default: 'Upload FOLDER with sd_course'")
    p.add_argument("--token", default=None, help="a Hub token (visible to other users and kept in your shell "
                                                 "history: prefer `hf auth login` or HF_TOKEN)")

    def run(args):
        push_folder = deferred("sd_course.publish.hub").push_folder

        print(f"pushed {args.folder} to " + push_folder(args.folder, args.repo_id, private=args.private,
                                                        commit_message=args.commit_message, token=args.token))

    p.set_defaults(func=run)


def _add_demo(sub):
    p = sub.add_parser("demo", help="the Gradio demo in your browser: sample, denoising, forward process",
                       description="Start the Gradio app (pip install 'sd_course[demo]') on this machine, or write it "
                                   "out as a Hugging Face Space folder with --write_space.")
    p.add_argument("--model", action="append", default=None,
                   help="a pipeline folder or Hub id to offer besides the shipped ones (repeatable)")
    p.add_argument("--no_shipped", action="store_true", help="offer only the --model ones")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 to share on your network)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--concurrency", type=int, default=2, help="requests computed at once (the rest wait)")
    add_sample_arguments(p, ["device"])
    p.add_argument("--max_queue", type=int, default=16,
                   help="requests that may wait; beyond, a request is answered 'busy, try again' at once")
    p.add_argument("--write_space", default=None, metavar="DIR",
                   help="write app.py, requirements.txt and README.md of a Hugging Face Space to DIR and exit")

    def run(args):
        demo = deferred("sd_course.app.demo")
        models = demo.models_on_offer(args.model, shipped=not args.no_shipped)
        if args.write_space:
            print(f"wrote the Space to {demo.write_space(args.write_space, models)}")
            return
        demo.launch(models=models, host=args.host, port=args.port, concurrency=args.concurrency,
                    max_queue=args.max_queue, device=args.device)

    p.set_defaults(func=run)


def _add_questions(sub):
    p = sub.add_parser("questions", help="the lab's questions, where each is answered; check or regenerate the index")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--check", action="store_true",
                       help="fail unless docs/questions.md and docs/derivations.md agree with the code")
    group.add_argument("--write", action="store_true",
                       help="regenerate docs/questions.md and the code references of docs/derivations.md")

    def run(args):
        course = deferred("sd_course.app.course")

        if not (args.check or args.write):
            print(course.format_questions(course.find_questions()[0]))
            return
        problems = course.check_or_write(write=args.write)
        quoted = deferred("sd_course.app.numbers").check_quotes(write=args.write)  # the numbers, as `results check`
        if problems or quoted:
            raise InputError(f"{len(problems) + len(quoted)} problem(s):\n" + "\n".join(problems + quoted))
        print(f"{course.QUESTIONS_MD}, {course.DERIVATIONS_MD} and the quoted numbers "
              + ("written" if args.write else "agree with the code and the results"))

    p.set_defaults(func=run)


def _add_results(sub):
    p = sub.add_parser("results", help="the measured numbers the prose quotes: check, re-render, list, re-run one")
    p.add_argument("action", choices=["check", "write", "list", "rerun", "retire"],
                   help="check: every quoted number equals its result and no result is stale; write: re-render "
                        "them; list: every result with its date, machine and status; rerun ID: measure it again; "
                        "retire ID --to FILE --reason TEXT: keep a copy of a result about a model no longer shipped")
    p.add_argument("result", nargs="?", default=None,
                   help="for rerun and retire: the result's id (see `sd-course results list`)")
    p.add_argument("--keep", default=None, help="for rerun: write the new result here instead of a temporary file")
    p.add_argument("--to", default=None, help="for retire: the new result file, e.g. benchmarks/results/first_X.json")
    p.add_argument("--reason", default=None, help="for retire: what it measured and why it is kept")

    def run(args):
        numbers = deferred("sd_course.app.numbers")

        if args.action == "list":
            for row in numbers.list_results():
                print(f"{row['id']}: {row['date']}, {row['device']}, quoted {row['quoted']}x, {row['status']}")
                print(f"    {row['command'] or '(no command recorded)'}")
            return
        if args.action == "retire":
            if not (args.result and args.to):
                raise InputError("retire needs a result id and --to, e.g. `sd-course results retire "
                                 "pipelines/mini-sd-mnist/metrics.json --to benchmarks/results/first_mini_sd.json "
                                 "--reason \"the first mini-SD, no longer shipped\"`")
            try:
                written = numbers.retire(args.result, args.to, args.reason or "")
            except numbers.QuoteError as e:
                raise InputError(str(e)) from e
            print(f"wrote {written} (retired: {args.reason.strip()}); point the quotes of the old model to it")
            return
        if args.action == "rerun":
            if not args.result:
                raise InputError("rerun needs a result id, e.g. `sd-course results rerun mini_sd_quick` "
                                 "(`sd-course results list` shows them)")
            try:
                holds, lines = numbers.rerun(args.result, keep=args.keep)
            except numbers.QuoteError as e:
                raise InputError(str(e)) from e
            print("\n".join(lines))
            print(f"{args.result}: " + ("holds" if holds else "does NOT hold"))
            if not holds:
                raise InputError(f"{args.result} no longer holds: see the lines above")
            return
        problems = numbers.check_quotes(write=args.action == "write")
        if problems:
            raise InputError(f"{len(problems)} problem(s):\n" + "\n".join(problems))
        count = len(numbers.find_quotes())
        print(f"{count} quoted numbers " + ("rendered from their results" if args.action == "write"
                                            else "agree with their results, none stale"))

    p.set_defaults(func=run)


def _add_handout(sub):
    p = sub.add_parser("handout", help="copy the project with every answer removed (the students' version)")
    p.add_argument("--output_dir", required=True, help="an empty folder (or --overwrite)")
    p.add_argument("--no_pipelines", action="store_true",
                   help="leave out the shipped pretrained pipelines (31 MB); the handout still installs")
    p.add_argument("--overwrite", action="store_true", help="replace the contents of --output_dir")

    def run(args):
        write_handout = deferred("sd_course.app.course").write_handout

        summary = write_handout(args.output_dir, pipelines=not args.no_pipelines, overwrite=args.overwrite)
        print(f"wrote the handout to {summary['output_dir']}: {summary['files']} files, "
              f"{summary['answers_removed']} answers removed, left out: {', '.join(summary['docs_left_out'])}"
              + ("" if summary["pipelines"] else ", pipelines/"))

    p.set_defaults(func=run)


def _add_derivations(sub):
    p = sub.add_parser("derivations", help="docs/derivations.md as a Word document with real equations (pandoc)")
    p.add_argument("--output", default="derivations.docx", help="the .docx to write")
    p.add_argument("--source", default=None, help="the markdown source (default docs/derivations.md)")

    def run(args):
        build_derivations = deferred("sd_course.app.course").build_derivations

        print(f"wrote {build_derivations(args.output, args.source)['output']}")

    p.set_defaults(func=run)


def _not_yet(name):
    def run(args):
        raise InputError(f"'sd-course {name}' is not implemented yet in this version of sd_course.")

    return run


COMMANDS = [
    _add_train,
    _add_sample,
    _add_trajectory,
    _add_forward,
    _add_schedules,
    _add_evaluate,
    _add_compare,
    _add_export,
    _add_inversion,
    _add_latents,
    _add_attention,
    _add_anatomy,
    _add_inpaint,
    _add_predictions,
    _add_questions,
    _add_results,
    _add_handout,
    _add_derivations,
    _add_push,
    _add_demo,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sd-course", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    # `train` hands all its flags to the training parser untouched (it has its own --help and --config).
    if argv and argv[0] == "train":
        args, rest = parser.parse_args(argv[:1]), argv[1:]
    else:
        args, rest = parser.parse_args(argv), None
    try:
        if getattr(args, "passthrough", False):
            args.func(args, rest)
        else:
            args.func(args)
    except InputError as e:
        print(f"sd-course {args.command}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
