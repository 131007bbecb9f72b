"""The training loop end to end: real tiny U-Nets, real accelerate, real datasets, real files."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO, run_python, tiny_run_args
from safetensors.torch import load_file

from sd_course.app.launch import main as launch_main
from sd_course.core.errors import InputError
from sd_course.pixel.diffusion import DiffusionConfig, PixelDiffusion, training_target
from sd_course.pixel.pipeline import load_pipeline
from sd_course.train.config import parse_args as parse_any_config
from sd_course.train.loop import train


def main(argv):
    """What `python training/train_unconditional.py ARGV` runs."""
    return launch_main(argv, objective_class=PixelDiffusion)


def parse_args(argv):
    return parse_any_config(argv, DiffusionConfig)


ENTRY = str(REPO / "training" / "train_unconditional.py")


def unet_weights(path: Path) -> dict:
    return load_file(str(path / "unet" / "diffusion_pytorch_model.safetensors"))


def losses(run: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "logs" / "loss.jsonl").read_text().splitlines()]


def test_trains_on_real_mnist_and_loads_with_plain_diffusers(tmp_path, mnist_dir):
    out = tmp_path / "run"
    main(tiny_run_args(out, dataset_name=mnist_dir, max_train_samples=320, max_train_steps=40, train_batch_size=32,
                       resolution=28, learning_rate=2e-3, save_images_epochs=1, use_ema=True, ema_max_decay=0.9))
    curve = losses(out)
    assert len(curve) == 40
    assert sum(curve[-8:]) / 8 < 0.6 * sum(curve[:4]) / 4, curve  # the noise is being predicted, not guessed
    assert (out / "samples" / "epoch-0004.png").is_file()
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["global_step"] == 40 and summary["num_images"] == 320
    # A fresh process that imports only diffusers loads the folder and makes 28x28 1-channel images.
    code = (
        "import sys; from diffusers import DiffusionPipeline; "
        f"p = DiffusionPipeline.from_pretrained({str(out)!r}); "
        "im = p(batch_size=2, num_inference_steps=3, output_type='np').images; "
        "assert not any(m.startswith('sd_course') for m in sys.modules); "
        "print(type(p).__name__, im.shape, float(im.min()) >= 0, float(im.max()) <= 1)"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split()[:5] == ["DDPMPipeline", "(2,", "28,", "28,", "1)"]
    assert "True True" in result.stdout


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_training_targets(prediction_type):
    from diffusers import DDPMScheduler

    scheduler = DDPMScheduler(num_train_timesteps=100, prediction_type=prediction_type)
    x0, noise = torch.randn(3, 1, 4, 4), torch.randn(3, 1, 4, 4)
    t = torch.tensor([0, 50, 99])
    target = training_target(scheduler, x0, noise, t)
    abar = scheduler.alphas_cumprod[t].view(-1, 1, 1, 1)
    expected = {"epsilon": noise, "sample": x0,
                "v_prediction": abar.sqrt() * noise - (1 - abar).sqrt() * x0}[prediction_type]
    torch.testing.assert_close(target, expected)


def test_prediction_type_and_schedule_reach_the_saved_pipeline(tmp_path):
    out = tmp_path / "v"
    main(tiny_run_args(out, prediction_type="v_prediction", ddpm_beta_schedule="squaredcos_cap_v2", max_train_steps=2))
    config = json.loads((out / "scheduler" / "scheduler_config.json").read_text())
    assert config["prediction_type"] == "v_prediction"
    assert config["beta_schedule"] == "squaredcos_cap_v2"
    assert config["num_train_timesteps"] == 100
    # the default spacing is saved, so a sampler swapped in with from_config starts at pure noise, t = T-1
    assert config["timestep_spacing"] == "trailing"
    dpm = load_pipeline(str(out), "dpm++").scheduler
    dpm.set_timesteps(25)
    assert dpm.timesteps[0] == 99 and dpm.timesteps[-1] > 0


def test_leading_spacing_is_kept_when_asked_and_skips_the_noisiest_timesteps(tmp_path):
    out = tmp_path / "leading"
    main(tiny_run_args(out, timestep_spacing="leading", max_train_steps=1))
    dpm = load_pipeline(str(out), "dpm++").scheduler
    assert dpm.config.timestep_spacing == "leading"
    dpm.set_timesteps(25)
    assert dpm.timesteps[0] == 75  # (100 // 26) * 25: a quarter of the noise levels is never visited


def test_same_seed_same_weights_other_seed_other_weights(tmp_path):
    for name, seed in [("a", 0), ("b", 0), ("c", 1)]:
        main(tiny_run_args(tmp_path / name, seed=seed, max_train_steps=3))
    a, b, c = (unet_weights(tmp_path / n) for n in "abc")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_killed_and_resumed_run_ends_with_the_same_weights(tmp_path):
    """Kill -9 mid-epoch after a checkpoint, resume from `latest`: bit-identical to an uninterrupted run."""
    flags = dict(max_train_samples=96, train_batch_size=16, gradient_accumulation_steps=2, max_train_steps=7,
                 checkpointing_steps=2, checkpoints_total_limit=2, use_ema=True, ema_max_decay=0.9)
    main(tiny_run_args(tmp_path / "straight", **flags))

    killed = tmp_path / "killed"
    # The same thread count as this process: bit-identity needs the same order of float additions.
    env = {"SD_COURSE_FAULT": "step:5", "OMP_NUM_THREADS": str(torch.get_num_threads())}
    result = run_python([ENTRY, *tiny_run_args(killed, **flags)], env=env)
    assert result.returncode == -9, result.stderr[-2000:]  # really killed, by SIGKILL, after step 5
    assert not (killed / "model_index.json").exists()
    assert sorted(p.name for p in killed.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    assert len(losses(killed)) == 5

    main(tiny_run_args(killed, **flags, resume_from_checkpoint="latest"))
    straight, resumed = unet_weights(tmp_path / "straight"), unet_weights(killed)  # EMA weights
    assert straight.keys() == resumed.keys()
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
    assert losses(killed) == losses(tmp_path / "straight")  # the log was rewound to the checkpoint, then continued
    assert sorted(p.name for p in killed.glob("checkpoint-*")) == ["checkpoint-4", "checkpoint-6"]  # pruned to 2
    assert json.loads((killed / "train_summary.json").read_text())["resumed_from_step"] == 4
    assert json.loads((tmp_path / "straight" / "train_summary.json").read_text())["resumed_from_step"] is None


def test_two_processes_train_data_parallel(tmp_path):
    """`accelerate launch --multi_gpu --num_processes 2` on a CPU-only machine: gloo, one model, split batches."""
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           ENTRY, *tiny_run_args(out, max_train_samples=64, train_batch_size=8, max_train_steps=5)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=str(REPO))
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["num_processes"] == 2
    checksums = summary["param_checksum_per_process"]
    assert len(checksums) == 2 and checksums[0] == checksums[1]  # gradients were averaged: identical weights
    assert summary["first_epoch_samples_per_process"] == [32, 32]  # each rank saw half of the epoch ...
    assert summary["first_epoch_samples_seen_by_several_processes"] == 0  # ... and not the same half
    single = tmp_path / "single"
    main(tiny_run_args(single, max_train_samples=64, train_batch_size=8, max_train_steps=5))
    assert json.loads((single / "train_summary.json").read_text())["param_checksum_per_process"][0] != checksums[0]


def test_yaml_config_gives_defaults_and_flags_override(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("learning_rate: 0.01\ntrain_batch_size: 7\nuse_ema: true\n")
    cfg = parse_args(["--config", str(config), "--train_batch_size", "9", "--no-use_ema"])
    assert (cfg.learning_rate, cfg.train_batch_size, cfg.use_ema) == (0.01, 9, False)
    for name in ["mnist.yaml", "mnist-quick.yaml", "fashion_mnist.yaml", "cifar10.yaml"]:
        parse_args(["--config", str(REPO / "training" / "configs" / name)]).validate()


def test_the_run_records_its_recipe_and_keeps_it_when_resumed(tmp_path):
    """training_config.json names the --config the run was started with (repo-relative inside the repo, as given
    outside), for its model card's reproduce command; a resumed run keeps it, and the file loads back as --config."""
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("adam_beta1: 0.9\n")
    out = tmp_path / "run"
    flags = dict(max_train_steps=1, checkpointing_steps=1)
    main(["--config", str(recipe), *tiny_run_args(out, **flags)])
    recorded = json.loads((out / "training_config.json").read_text())
    assert recorded["config"] == str(recipe) and recorded["adam_beta1"] == 0.9
    # resumed from its own resolved configuration, then with flags only: still the recipe it started from
    main(["--config", str(out / "training_config.json"),
          *tiny_run_args(out, **dict(flags, max_train_steps=2), resume_from_checkpoint="latest")])
    main(tiny_run_args(out, **dict(flags, max_train_steps=3), resume_from_checkpoint="latest"))
    recorded = json.loads((out / "training_config.json").read_text())
    assert recorded["config"] == str(recipe) and recorded["max_train_steps"] == 3
    assert json.loads((out / "train_summary.json").read_text())["resumed_from_step"] == 2
    # a recipe of the repo is named from the repo's root, whatever the working directory
    assert parse_args(["--config", str(REPO / "training" / "configs" / "mnist-quick.yaml")]).config == \
        "training/configs/mnist-quick.yaml"
    assert parse_args([]).config is None


def test_cli_train_is_the_same_loop(tmp_path):
    from sd_course.app.cli import main as cli

    assert cli(["train", *tiny_run_args(tmp_path / "cli", max_train_steps=1)]) == 0
    assert (tmp_path / "cli" / "model_index.json").is_file()


# ---------------------------------------------------------------------------------------------------------------
# Bad input: a clear error, and nothing lost
# ---------------------------------------------------------------------------------------------------------------


def expect_error(argv, *fragments):
    with pytest.raises(InputError) as info:
        cfg = parse_args(argv)
        train(cfg, PixelDiffusion(cfg))
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)
    return str(info.value)


def test_output_dir_holding_another_run_is_refused_and_kept(tmp_path):
    out = tmp_path / "run"
    main(tiny_run_args(out, max_train_steps=2))
    before = unet_weights(out)
    expect_error(tiny_run_args(out, max_train_steps=2, seed=5), "--overwrite_output_dir", "--resume_from_checkpoint")
    assert all(torch.equal(before[k], v) for k, v in unet_weights(out).items())
    main(tiny_run_args(out, max_train_steps=2, seed=5, overwrite_output_dir=True))
    assert not all(torch.equal(before[k], v) for k, v in unet_weights(out).items())


def test_kill_while_saving_the_pipeline_keeps_the_old_one(tmp_path):
    out = tmp_path / "run"
    main(tiny_run_args(out, max_train_steps=2))
    before = unet_weights(out)
    result = run_python([ENTRY, *tiny_run_args(out, max_train_steps=3, seed=7, overwrite_output_dir=True)],
                        env={"SD_COURSE_FAULT": "pipeline-save"})
    assert result.returncode == -9
    assert (out / ".pipeline-new").is_dir()  # the new pipeline was written beside the old one ...
    after = unet_weights(out)  # ... and the old one is still whole
    assert all(torch.equal(before[k], after[k]) for k in before)
    result = run_python(f"from diffusers import DiffusionPipeline; DiffusionPipeline.from_pretrained({str(out)!r})")
    assert result.returncode == 0, result.stderr[-2000:]


def test_interrupted_swap_is_finished_by_recovery(tmp_path):
    from diffusers import DDPMPipeline, DDPMScheduler

    from sd_course.core.checkpoints import (
        BACKUP,
        COMPLETE,
        STAGING,
        recover_pipeline,
        save_pipeline,
    )
    from sd_course.core.models import build_unet

    torch.manual_seed(0)
    old, new = (DDPMPipeline(unet=build_unet("tiny"), scheduler=DDPMScheduler(num_train_timesteps=10)) for _ in "ab")
    save_pipeline(old, tmp_path)
    new.save_pretrained(tmp_path / STAGING)
    (tmp_path / STAGING / COMPLETE).touch()
    (tmp_path / BACKUP).mkdir()  # simulate a crash half-way through the swap: model_index.json and unet moved aside
    for name in ("model_index.json", "unet"):
        shutil.move(str(tmp_path / name), str(tmp_path / BACKUP / name))
    shutil.move(str(tmp_path / STAGING / "unet"), str(tmp_path / "unet"))
    recover_pipeline(tmp_path)
    loaded = DDPMPipeline.from_pretrained(tmp_path)
    expected = new.unet.state_dict()
    assert all(torch.equal(expected[k], v) for k, v in loaded.unet.state_dict().items())
    assert not (tmp_path / STAGING).exists() and not (tmp_path / BACKUP).exists()


def test_resume_from_missing_or_corrupt_checkpoint(tmp_path):
    out = tmp_path / "run"
    expect_error(tiny_run_args(out, resume_from_checkpoint=str(tmp_path / "nope")), "does not exist")
    main(tiny_run_args(out, max_train_steps=2, checkpointing_steps=2))
    ckpt = out / "checkpoint-2"
    (ckpt / "model.safetensors").write_bytes(b"\x00" * 100)  # a damaged disk, a copy cut short...
    expect_error(tiny_run_args(out, max_train_steps=4, resume_from_checkpoint="latest"), "corrupt", "checkpoint-2")
    (ckpt / "optimizer.bin").unlink()
    expect_error(tiny_run_args(out, max_train_steps=4, resume_from_checkpoint=str(ckpt)), "missing", "optimizer.bin")


class _Payload:  # what a hostile checkpoint could hold: unpickling it would write a file
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "code ran"))


def test_a_checkpoint_that_holds_more_than_tensors_is_refused_without_running_it(tmp_path):
    """accelerate's checkpoints hold pickles (random_states_0.pkl, optimizer.bin); resuming reads them with
    weights_only, so a checkpoint copied from elsewhere cannot run code: it is refused in one line, nothing ran."""
    import pickle

    out = tmp_path / "run"
    main(tiny_run_args(out, max_train_steps=2, checkpointing_steps=2))
    marker = tmp_path / "pwned"
    for name in ("random_states_0.pkl", "optimizer.bin"):
        original = (out / "checkpoint-2" / name).read_bytes()
        (out / "checkpoint-2" / name).write_bytes(pickle.dumps(_Payload(marker)))
        message = expect_error(tiny_run_args(out, max_train_steps=4, resume_from_checkpoint="latest"),
                               "checkpoint-2", "holds more than tensors")
        assert "\n" not in message and not marker.exists(), name
        (out / "checkpoint-2" / name).write_bytes(original)
    main(tiny_run_args(out, max_train_steps=4, resume_from_checkpoint="latest"))  # the real one resumes
    assert json.loads((out / "train_summary.json").read_text())["resumed_from_step"] == 2


def test_resolution_the_model_cannot_downsample(tmp_path):
    expect_error(tiny_run_args(tmp_path / "r", model_config_name_or_path="mnist", resolution=30),
                 "multiple of 4", "--resolution 28 or 32")


def test_unknown_dataset_and_bad_values(tmp_path):
    expect_error(tiny_run_args(tmp_path / "d", dataset_name="./no/such/folder"), "does not exist")
    expect_error(tiny_run_args(tmp_path / "d", dataset_name="nobody-xyz/no-such-dataset"), "could not load dataset")
    expect_error(tiny_run_args(tmp_path / "d", train_batch_size=0), "--train_batch_size must be positive")
    with pytest.raises(SystemExit):  # argparse: an invalid choice lists the valid ones
        parse_args(["--ddpm_beta_schedule", "cosine"])
    config = tmp_path / "bad.yaml"
    config.write_text("learning_rat: 0.1\n")
    with pytest.raises(InputError, match="unknown option"):
        parse_args(["--config", str(config)])


def test_metrics_during_training_are_logged(tmp_path):
    from sd_course.app.cli import main as cli

    out = tmp_path / "eval"
    assert cli(["train", *tiny_run_args(out, resolution=28, max_train_steps=4, eval_epochs=1, eval_samples=12,
                                        eval_reference="builtin:mnist-2k:train")]) == 0
    records = [json.loads(line) for line in (out / "logs" / "eval.jsonl").read_text().splitlines()]
    assert len(records) == 1 and records[0]["step"] == 4
    assert records[0]["fid_mnist_classifier"] > 0 and 0 <= records[0]["recall_mnist_classifier"] <= 1


@pytest.mark.parametrize("native", [True, False])
def test_bf16_on_a_cpu_without_native_bf16_warns_and_names_the_fix(tmp_path, monkeypatch, caplog, native):
    """bf16 autocast is ~3x slower than fp32 on a CPU that only emulates it (no AVX512-BF16 or AMX): say so."""
    from accelerate.state import AcceleratorState

    from sd_course.train import loop as training

    monkeypatch.setattr(training, "cpu_has_native_bf16", lambda: native)
    cfg = DiffusionConfig(mixed_precision="bf16", output_dir=str(tmp_path / "run"))
    try:
        with caplog.at_level("WARNING", logger="sd_course.train.loop"):
            accelerator, _ = training.make_accelerator(cfg, tmp_path / "run")
        assert accelerator.mixed_precision == "bf16"  # a warning, not a refusal: the user may want bf16 anyway
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)
    warned = "--mixed_precision no" in caplog.text
    assert warned != native, caplog.text
    assert ("no native bf16" in training.describe_hardware(torch.device("cpu"))) != native


@pytest.mark.parametrize("native, expected", [(True, "bf16"), (False, "no")])
def test_mixed_precision_auto_is_bf16_only_where_the_cpu_computes_it(tmp_path, monkeypatch, native, expected):
    """--mixed_precision auto (the recipes' default): bf16 on a CPU with AMX or AVX512-BF16, fp32 elsewhere; the run
    records what it used."""
    from sd_course.train import loop

    monkeypatch.setattr(loop, "cpu_has_native_bf16", lambda: native)
    assert loop.resolve_mixed_precision("auto", use_cpu=True) == expected
    assert loop.resolve_mixed_precision("no", use_cpu=True) == "no"
    out = tmp_path / "run"
    main(tiny_run_args(out, max_train_steps=1, mixed_precision="auto"))
    assert json.loads((out / "train_summary.json").read_text())["mixed_precision"] == expected
    assert json.loads((out / "training_config.json").read_text())["mixed_precision"] == "auto"
