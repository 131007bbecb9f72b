"""`sd-course export`: a trained run -> a clean pipeline folder with logs, plots and a rendered model card."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import tiny_run_args

from sd_course.app.cli import main as cli_main
from sd_course.core.errors import InputError
from sd_course.latent.guidance import recommended_guidance


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A tiny 28x28 run (so that the MNIST metrics apply) with EMA, two epochs and their snapshots, its logs and a
    metrics JSON."""
    from sd_course.app.launch import main
    from sd_course.evaluate import evaluation
    from sd_course.pixel.diffusion import PixelDiffusion

    run = tmp_path_factory.mktemp("card") / "run"
    main(tiny_run_args(run, resolution=28, max_train_samples=32, max_train_steps=4, use_ema=True,
                       save_model_epochs=1), objective_class=PixelDiffusion)  # 2 steps per epoch: snapshots epoch-0001/, epoch-0002/
    evaluation.evaluate(model=str(run), reference="builtin:mnist-2k:train", num_reference=200, num_samples=20,
                     scheduler="ddim", num_inference_steps=2, output_json=str(run / "metrics.json"),
                     show_progress=False, print_table=False)
    return run


def test_export_writes_a_loadable_pipeline_with_card(trained_run, tmp_path):
    from diffusers import DiffusionPipeline
    from huggingface_hub import ModelCard

    out = tmp_path / "pipelines" / "ddpm-tiny"
    code = cli_main(["export", str(trained_run), "--output", str(out), "--metrics", str(trained_run / "metrics.json"),
                     "--dataset_id", "ylecun/mnist", "--license", "cc-by-sa-3.0", "--num_grid", "4",
                     "--scheduler", "ddim", "--num_inference_steps", "2"])
    assert code == 0
    for name in ("model_index.json", "unet/config.json", "unet/diffusion_pytorch_model.safetensors",
                 "scheduler/scheduler_config.json", "loss.jsonl", "loss.png", "samples.png", "README.md",
                 "metrics.json", "training_config.json", "train_summary.json"):
        assert (out / name).is_file(), name
    assert not list(out.parent.glob(".*export*")), "staging folders must be gone"
    assert not list(out.rglob("*.bin")) and not list(out.rglob("*.pkl")), "weights only as safetensors"

    card = ModelCard.load(out / "README.md")
    data = card.data.to_dict()
    assert data["library_name"] == "diffusers"
    assert data["pipeline_tag"] == "unconditional-image-generation"
    assert data["license"] == "cc-by-sa-3.0" and data["datasets"] == ["ylecun/mnist"]
    assert "diffusers" in data["tags"]
    fid = json.loads((trained_run / "metrics.json").read_text())["fid_mnist_classifier"]
    result = data["model-index"][0]["results"][0]
    assert result["metrics"][0]["type"] == "fid" and result["metrics"][0]["value"] == pytest.approx(fid, rel=1e-3)
    summary = json.loads((trained_run / "train_summary.json").read_text())
    text = card.text
    assert f"{summary['global_step']} optimisation steps" in text
    assert "`fid_mnist_classifier`" in text and "20 samples" in text
    assert 'with 2 steps (`timestep_spacing="trailing"`), against' in text  # the spacing training saved
    assert summary["hardware"] in text and "{{" not in text  # every template field was filled
    assert summary["resumed_from_step"] is None and "resumed" not in text
    assert DiffusionPipeline.from_pretrained(str(out)).unet.config.sample_size == 28


def test_the_card_says_where_a_resumed_runs_wall_clock_starts(trained_run, tmp_path):
    """A resumed run's wall clock covers its last session only: the card names the step training resumed from."""
    import shutil

    from huggingface_hub import ModelCard

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    summary = json.loads((run / "train_summary.json").read_text())
    (run / "train_summary.json").write_text(json.dumps(dict(summary, resumed_from_step=2)))
    out = tmp_path / "resumed"
    assert cli_main(["export", str(run), "--output", str(out), "--num_grid", "2", "--scheduler", "ddim",
                     "--num_inference_steps", "2"]) == 0
    assert "in all (with sample grids and snapshots) in its last session (resumed from step 2)" in \
        ModelCard.load(out / "README.md").text


def test_export_refuses_bad_input_and_keeps_a_good_folder(trained_run, tmp_path):
    from sd_course.publish.export import export_pipeline

    out = export_pipeline(trained_run, tmp_path / "good", num_grid=2, scheduler="ddim", num_inference_steps=2,
                          show_progress=False)
    before = (out / "README.md").read_bytes()
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(InputError, match="could not read metrics.*sd-course evaluate --output_json"):
        export_pipeline(trained_run, out, metrics_json=tmp_path / "broken.json", num_grid=2)
    with pytest.raises(InputError, match="not a trained pipeline folder"):
        export_pipeline(tmp_path / "nothing-here", tmp_path / "other")
    with pytest.raises(InputError, match="unknown scheduler"):
        export_pipeline(trained_run, out, scheduler="no-such-sampler", num_grid=2)
    with pytest.raises(InputError, match="must be positive"):
        export_pipeline(trained_run, out, num_grid=0)
    with pytest.raises(InputError, match="must differ from the run folder"):
        export_pipeline(trained_run, trained_run)
    with pytest.raises(InputError, match="template .* not found; pass --template"):
        export_pipeline(trained_run, out, template=tmp_path / "no-template.md", num_grid=2, scheduler="ddim",
                        num_inference_steps=2, show_progress=False)
    assert (out / "README.md").read_bytes() == before and (out / "model_index.json").is_file()
    assert not list(tmp_path.glob(".*export*"))


def test_export_of_a_snapshot_reads_the_run_up_to_its_epoch(trained_run, tmp_path):
    from huggingface_hub import ModelCard

    from sd_course.publish.export import export_pipeline

    out = export_pipeline(trained_run / "epoch-0001", tmp_path / "epoch1", num_grid=2, scheduler="ddim",
                          num_inference_steps=2, show_progress=False)
    losses = [json.loads(line) for line in (out / "loss.jsonl").read_text().splitlines()]
    assert [r["step"] for r in losses] == [1, 2]  # epoch 1 of the run: its first two steps only
    summary = json.loads((out / "train_summary.json").read_text())
    assert (summary["epochs"], summary["global_step"], summary["snapshot_of_run_epochs"]) == (1, 2, 2)
    assert json.loads((out / "training_config.json").read_text())["max_train_steps"] == 4
    text = ModelCard.load(out / "README.md").text
    assert "the snapshot after epoch 1 of a 2-epoch run" in text and "2 optimisation steps" in text


def test_the_epoch_ladder_goes_from_compare_into_the_card_and_back(trained_run, tmp_path):
    """`sd-course compare RUN` scores every snapshot with its steps and training minutes; `export --ladder` puts that
    table into the card; the exported rungs, compared again, still know their epoch and their run."""
    from huggingface_hub import ModelCard

    scoring = ["--num_samples", "8", "--num_inference_steps", "2", "--scheduler", "ddim", "--reference",
               "builtin:mnist-2k:train", "--num_reference", "100", "--kid_subsets", "2", "--grid_columns", "2"]
    ladder = tmp_path / "ladder"
    assert cli_main(["compare", str(trained_run), *scoring, "--output_dir", str(ladder),
                     "--floor", "builtin:mnist-2k:train"]) == 0
    compared = json.loads((ladder / "compare.json").read_text())
    results, floor = compared["results"], compared["floor"]
    assert [(r["epoch"], r["step"]) for r in results] == [(1, 2), (2, 4)]
    assert 0 < results[0]["train_minutes"] < results[1]["train_minutes"]
    assert floor["n"] == 8 and floor["fid_mnist_classifier"] < results[1]["fid_mnist_classifier"]

    rungs = []
    for snapshot in ("epoch-0001", "epoch-0002"):
        rungs.append(tmp_path / "pipelines" / snapshot)
        assert cli_main(["export", str(trained_run / snapshot), "--output", str(rungs[-1]), "--ladder", str(ladder),
                         "--num_grid", "2", "--scheduler", "ddim", "--num_inference_steps", "2"]) == 0
    assert (rungs[-1] / "ladder.png").stat().st_size > 10_000 and (rungs[-1] / "ladder.json").is_file()
    text = ModelCard.load(rungs[-1] / "README.md").text
    fid = results[1]["fid_mnist_classifier"]
    times = fid / floor["fid_mnist_classifier"]
    assert f"| 2 | 4 | {results[1]['train_minutes']:.1f} | {fid:.1f} | {times:.1f} |" in text and "| 1 | 2 |" in text
    # no --metrics: each rung's own row of the ladder is its evaluation, with the floor beside it
    own = json.loads((rungs[0] / "metrics.json").read_text())
    assert own["fid_mnist_classifier"] == results[0]["fid_mnist_classifier"] and own["epoch"] == 1
    assert own["reference"] == compared["reference"] and own["floor"] == floor
    assert f"against 100 images of `builtin:mnist-2k:train`" in text  # the ladder's own provenance
    device = "cuda" if torch.cuda.is_available() else "cpu"
    assert f", sampled on `{device}`) against 100 images" in text and {r["device"] for r in results} == {device}
    assert f"**{times:.2f}x** the floor" in text and "| metric | value | real-data floor |" in text

    again = tmp_path / "again"
    assert cli_main(["compare", *map(str, rungs), *scoring, "--output_dir", str(again)]) == 0
    shipped = json.loads((again / "compare.json").read_text())["results"]
    assert [(r["epoch"], r["step"]) for r in shipped] == [(1, 2), (2, 4)]
    assert shipped[0]["run"] == shipped[1]["run"] == str(trained_run)  # one line in metrics_vs_epoch.png
    assert shipped[1]["fid_mnist_classifier"] == pytest.approx(fid)  # the same weights, the same seeds
    assert (again / "metrics_vs_epoch.png").is_file()


def test_export_puts_the_scheduler_table_and_its_recommendation_into_the_card(trained_run, tmp_path, capsys):
    """`export --samplers` merges benchmarks/scheduler_table.py results (here two files, as for the fast schedulers
    and DDPM's 1000 steps run apart), sorts them by FID and recommends the best, and the fewest model calls within 1.5x
    of it (of those, the lowest FID: a slightly faster measured images/s is timing noise)."""
    from huggingface_hub import ModelCard

    def row(name, steps, fid, images_per_s):
        return {"scheduler": name, "class": f"{name}Scheduler", "steps": steps, "model_calls": steps, "fid": fid,
                "precision": 0.8, "recall": 0.9, "class_min": 0.07, "class_max": 0.12, "images_per_s": images_per_s,
                "timestep_spacing": "trailing"}

    args = {"num_samples": 200, "reference": "mnist:test"}
    fast = tmp_path / "fast.json"
    fast.write_text(json.dumps({"args": args, "rows": [row("dpm++", 25, 46.0, 4.9), row("euler-a", 50, 30.8, 2.5),
                                                        row("pndm", 50, 34.3, 2.1), row("unipc", 25, 38.0, 5.0),
                                                        row("dpm++-2m-sde", 25, 33.0, 4.8)]}))
    slow = tmp_path / "ddpm.json"
    slow.write_text(json.dumps({"args": args, "rows": [row("ddpm", 1000, 26.0, 0.18)]}))
    out = tmp_path / "card"
    assert cli_main(["export", str(trained_run), "--output", str(out), "--samplers", str(fast), str(slow),
                     "--num_grid", "2", "--scheduler", "ddim", "--num_inference_steps", "2"]) == 0
    text = ModelCard.load(out / "README.md").text
    assert "## Which sampler, how many steps?" in text
    assert 'Every sampler places its steps with `timestep_spacing="trailing"`.' in text
    # dpm++ is faster but 46.0 > 1.5 x 26.0; unipc has as few calls and a faster clock, but a higher FID
    assert ("**Recommended**: `ddpm` 1000 steps for the best digits (FID 26.0, 0.18 images/s); `dpm++-2m-sde` 25 "
            "steps when time matters (FID 33.0, 4.8 images/s: the fewest model calls, 25, within 1.5x") in text
    table = [line.split("|")[1].strip() for line in text.splitlines() if line.startswith("| `")]
    assert table == ["`ddpm` (ddpmScheduler)", "`euler-a` (euler-aScheduler)", "`dpm++-2m-sde` (dpm++-2m-sdeScheduler)",
                     "`pndm` (pndmScheduler)", "`unipc` (unipcScheduler)", "`dpm++` (dpm++Scheduler)"]  # sorted by FID
    assert len(json.loads((out / "samplers.json").read_text())["rows"]) == 6

    # without --samplers the section is left out; tables measured differently are refused, the card kept
    plain = tmp_path / "plain"
    assert cli_main(["export", str(trained_run), "--output", str(plain), "--num_grid", "2", "--scheduler", "ddim",
                     "--num_inference_steps", "2"]) == 0
    assert "Which sampler" not in ModelCard.load(plain / "README.md").text
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"args": {**args, "num_samples": 500}, "rows": [row("ddim", 50, 40.0, 2.7)]}))
    before = (out / "README.md").read_bytes()
    capsys.readouterr()
    assert cli_main(["export", str(trained_run), "--output", str(out), "--samplers", str(fast), str(other)]) == 2
    assert "tables differ in num_samples, reference" in capsys.readouterr().err
    (tmp_path / "list.json").write_text("[]")
    assert cli_main(["export", str(trained_run), "--output", str(out), "--samplers", str(tmp_path / "list.json")]) == 2
    assert "expected the --output_json of benchmarks/scheduler_table.py" in capsys.readouterr().err
    assert (out / "README.md").read_bytes() == before


def test_sampler_table_names_the_device_of_each_speed_when_devices_are_mixed():
    """benchmarks/scheduler_table.py --device records where each row sampled; a card merging rows measured on a GPU
    and on the CPU must not present their images/s as comparable."""
    from sd_course.publish.cards import samplers_markdown

    def row(name, fid, images_per_s, device):
        return {"scheduler": name, "class": "X", "steps": 25, "model_calls": 25, "fid": fid, "precision": 0.8,
                "recall": 0.9, "class_min": 0.07, "class_max": 0.12, "images_per_s": images_per_s,
                "timestep_spacing": "trailing", "device": device}

    args = {"num_samples": 1000}
    mixed = samplers_markdown({"args": args, "rows": [row("euler-a", 5.3, 238.0, "cuda"), row("dpm++-sde", 6.0, 1.3, "cpu")]})
    assert "on the device each row names" in mixed and "(FID 5.3, 238 images/s on cuda)" in mixed
    assert "| 238 (cuda) |" in mixed and "| 1.3 (cpu) |" in mixed
    one = samplers_markdown({"args": args, "rows": [row("euler-a", 5.3, 2.5, "cpu"), row("dpm++", 9.0, 5.0, "cpu")]})
    assert "measured them on its machine (`cpu`)" in one and "| 2.5 |" in one and "(cpu)" not in one.split("**")[0]


def tiny_text_run(run: Path) -> Path:
    """A text-to-image run as training leaves it, from tiny untrained parts (1x32x32 digits, 4x16x16 latents):
    snapshots epoch-0001/ and epoch-0002/ (the final pipeline is epoch 2's), its loss log and summary, and a
    training_config.json that records its recipe."""
    import shutil

    from diffusers import DDPMScheduler

    from sd_course.core.models import build_conditional_unet, build_text_encoder, build_vae
    from sd_course.latent.text import digit_prompts, train_tokenizer
    from sd_course.latent.text_to_image import make_pipeline

    for epoch in (1, 2):
        torch.manual_seed(epoch)
        tokenizer = train_tokenizer([text for _, text in digit_prompts()] + [""], max_length=16)
        text_encoder = build_text_encoder("tiny-sd", vocab_size=len(tokenizer.get_vocab()), max_length=16,
                                          bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                                          pad_token_id=tokenizer.pad_token_id)
        unet = build_conditional_unet("tiny-sd", 16, 4, text_encoder.config.hidden_size)
        make_pipeline(build_vae("tiny-vae", resolution=32), tokenizer, text_encoder, unet,
                      DDPMScheduler(num_train_timesteps=100, clip_sample=False)
                      ).save_pretrained(run / f"epoch-{epoch:04d}")
    shutil.copytree(run / "epoch-0002", run, dirs_exist_ok=True)
    (run / "logs").mkdir()
    (run / "logs" / "loss.jsonl").write_text("".join(
        json.dumps(dict(step=step, epoch=(step - 1) // 2, loss=0.5, train_seconds=30.0 * step)) + "\n"
        for step in range(1, 5)))
    (run / "train_summary.json").write_text(json.dumps(dict(
        global_step=4, epochs=2, num_images=32, train_seconds=120.0, images_per_s=1.1, hardware="a test machine",
        software="torch")))
    (run / "training_config.json").write_text(json.dumps(dict(
        config="training/configs/mini-sd-quick.yaml", train_batch_size=16, learning_rate=1e-3, caption_dropout=0.1,
        tokenizer_max_length=16, output_dir=str(run))))
    return run


def test_a_text_to_image_runs_ladder_and_recipe_go_into_its_card(tmp_path):
    """`sd-course compare RUN` over a text-to-image run's snapshots, then `export RUN --ladder DIR`: ladder.json,
    ladder.png and a ladder table with prompt accuracy in the card, whose reproduce command names the run's recipe.
    The ladder scores the training phrasings only, so it does not stand for --metrics (held-out ones are missing)."""
    from huggingface_hub import ModelCard

    from sd_course.latent.text_to_image import load_text_to_image_pipeline
    from sd_course.publish.cards import RunRecord, _text_to_image_card
    from sd_course.publish.export import export_text_to_image

    run = tiny_text_run(tmp_path / "run")
    ladder = tmp_path / "ladder"
    assert cli_main(["compare", str(run), "--num_samples", "10", "--num_inference_steps", "2", "--reference",
                     "builtin:mnist-2k:train", "--num_reference", "100", "--kid_subsets", "2", "--grid_columns", "2",
                     "--output_dir", str(ladder)]) == 0
    compared = json.loads((ladder / "compare.json").read_text())
    rows = compared["results"]
    assert [(r["epoch"], r["step"], r["guidance_scale"]) for r in rows] == [(1, 2, 2.0), (2, 4, 2.0)]

    out = tmp_path / "mini-sd-tiny"
    assert cli_main(["export", str(run), "--output", str(out), "--ladder", str(ladder)]) == 0
    assert json.loads((out / "ladder.json").read_text()) == compared
    assert (out / "ladder.png").read_bytes() == (ladder / "metrics_vs_epoch.png").read_bytes()
    text = ModelCard.load(out / "README.md").text
    device = "cuda" if torch.cuda.is_available() else "cpu"
    assert "## The epoch ladder: what do more epochs buy?" in text and f", guidance 2, sampled on `{device}`)" in text
    assert "| recall | classes (min-max %) | prompt accuracy |" in text
    for r in rows:
        assert f"| {r['epoch']} | {r['step']} | {r['train_minutes']:.1f} | {r['fid_mnist_classifier']:.1f} |" in text
        assert [line for line in text.splitlines() if line.startswith(f"| {r['epoch']} | {r['step']} |")][0] \
            .endswith(f"| {r['prompt_accuracy']:.3f} |")
    assert ("training/train_text_to_image.py --config training/configs/mini-sd-quick.yaml "
            "--output_dir runs/mini-sd-tiny") in text
    assert "## Evaluation" not in text and not (out / "metrics.json").exists()

    assert "guidance_scale=2)" in text and "inference" not in ModelCard.load(out / "README.md").data.to_dict()

    # a ladder row with every number of the Evaluation table (held-out accuracy too) stands for --metrics; the card
    # then recommends the guidance those numbers were measured at, where sd-course and the Hub read it
    compared["results"][1].update(prompt_accuracy_heldout=0.5, guidance_scale=3.0)
    (ladder / "compare.json").write_text(json.dumps(compared))
    full = export_text_to_image(run, tmp_path / "full", ladder_dir=ladder, seeds=1, show_progress=False)
    card = ModelCard.load(full / "README.md")
    assert "0.500 on held-out phrasings" in card.text
    assert json.loads((full / "metrics.json").read_text())["epoch"] == 2
    assert card.data.to_dict()["inference"] == {"parameters": {"guidance_scale": 3.0}}
    assert 'num_inference_steps=25, guidance_scale=3).images[0]' in card.text and "guidance 3](samples.png)" in card.text
    assert recommended_guidance(full) == 3.0

    # no recipe recorded: the shipped mini-SD's; a second stage keeps its two-stage text
    pipe = load_text_to_image_pipeline(str(run))
    for config, expected in (({}, "--config training/configs/mini-sd-mnist.yaml --output_dir runs/mini-sd\n"),
                             ({"config": "x.yaml", "pretrained_model_name_or_path": "runs/mini-sd"},
                              "--config training/configs/mini-sd-mnist-robust.yaml --pretrained_model_name_or_path")):
        card = _text_to_image_card(pipe, RunRecord(config=config), None, None, "here", "apache-2.0", None, "m")
        assert expected in card.text and "x.yaml" not in card.text
        assert "No ladder: run `sd-course compare RUN" in card.text
    # a recipe that reads a trained autoencoder says to train that first
    card = _text_to_image_card(pipe, RunRecord(config={"config": "training/configs/mini-sd-mnist-100.yaml",
                                                       "vae_name_or_path": "runs/vae-sharp",
                                                       "dataset_name": "../shared/data/mnist"}),
                               None, None, "here", "apache-2.0", "ylecun/mnist", "m").text
    assert "--config training/configs/mini-sd-mnist-100.yaml --dataset_name ylecun/mnist --output_dir runs/m" in card
    assert "It reads the autoencoder in `runs/vae-sharp`: train that first" in card


def test_a_card_reproduces_a_run_by_its_recipe_naming_only_the_data_it_changed(trained_run):
    """The reproduce command of a card: the recipe the run recorded, plus --dataset_name only where the run read
    other data than the recipe names (a local copy of a Hub dataset: the Hub id the card was exported with)."""
    from sd_course.publish.cards import LAUNCH, RunRecord, card_facts, recipe_command

    def command(recorded, dataset_id=None, recipe="training/configs/mnist-quick.yaml"):
        return recipe_command("training/train_unconditional.py", recipe, recorded, "runs/q", dataset_id)

    plain = f"{LAUNCH} training/train_unconditional.py --config training/configs/mnist-quick.yaml --output_dir runs/q"
    assert command({}) == plain == command({"dataset_name": "builtin:mnist-2k"}, "ylecun/mnist")  # as the recipe says
    assert command({"dataset_name": None, "seed": 0}) == plain  # none named: the bundled digits, as the recipe says
    assert command({"dataset_name": None}, "ylecun/mnist", recipe="training/configs/mnist.yaml").endswith(
        "mnist.yaml --dataset_name builtin:mnist-2k --output_dir runs/q")  # the bundled subset, not all of MNIST
    assert "--train_data_dir my/digits --output_dir" in command({"train_data_dir": "my/digits"}, "ylecun/mnist")
    assert command({"dataset_name": "../shared/data/mnist"}, "ylecun/mnist") == plain.replace(
        " --output_dir", " --dataset_name ylecun/mnist --output_dir")  # a local copy: the Hub's name of it
    assert "--dataset_name ../shared/data/mnist --output_dir" in command({"dataset_name": "../shared/data/mnist"})
    assert "--dataset_name ylecun/mnist" in command({"dataset_name": "ylecun/mnist"}, recipe="nowhere.yaml")

    # a pixel card reproduces with the recipe its run recorded, else with the resolved training_config.json
    config = json.loads((trained_run / "training_config.json").read_text())
    recorded = {**config, "config": "training/configs/mnist-quick.yaml", "dataset_name": "builtin:mnist-2k"}
    facts = card_facts(trained_run, RunRecord(config=recorded), None, "pipelines/ddpm-q", None, None, {})
    assert facts["train_command"] == plain.replace("runs/q", "runs/ddpm-q") + "  # the recipe this run was started with"
    facts = card_facts(trained_run, RunRecord(config=config), None, "pipelines/ddpm-q", None, None, {})
    assert facts["train_command"].startswith("sd-course train --config training_config.json")
