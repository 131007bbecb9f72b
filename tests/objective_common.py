"""The common test base of every training objective (as diffusers' ``SchedulerCommonTest`` serves its schedulers).

An objective plugs into the one loop (sd_course/train/loop.py); each subclass (tests/test_objectives.py) says which
objective, which entry point, which tiny flags and how plain diffusers loads what it saves, and inherits the promises
every objective keeps:

1. it trains under ``accelerate launch`` (a real launcher, a real child process);
2. a run killed with SIGKILL after a checkpoint and resumed with ``--resume_from_checkpoint latest`` ends with exactly
   the weights of a run that never stopped;
3. what it saves loads with diffusers alone, in a fresh process that never imports sd_course.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
from conftest import REPO, as_flags, run_python
from safetensors.torch import load_file

from sd_course.app.launch import main


class ObjectiveCommonTest:
    objective_class = None  # the Objective subclass
    entry = ""  # its training/train_*.py entry point
    weight_files: tuple[str, ...] = ()  # saved safetensors files, relative to the output folder
    kill_after_step = 3  # SIGKILL after this optimisation step (a checkpoint every 2 steps)
    # Python that loads the saved folder {folder!r} with diffusers alone and prints "ok" (and what else it checks)
    load_code = ""

    def flags(self, output_dir: Path, context: dict, **overrides) -> dict:
        """The tiny run's flags as a dict (``context``: what the ``objective_context`` fixture provides)."""
        raise NotImplementedError

    def argv(self, output_dir: Path, context: dict, **overrides) -> list[str]:
        values = dict(self.flags(output_dir, context), logger="none", save_model_epochs=0, save_images_epochs=0,
                      lr_warmup_steps=0, output_dir=str(output_dir))
        values.update(overrides)
        return as_flags(values)

    def train(self, argv: list[str]) -> Path:
        return main(argv, objective_class=self.objective_class)

    def weights(self, folder: Path) -> dict:
        return {f"{name}:{key}": tensor for name in self.weight_files
                for key, tensor in load_file(str(folder / name)).items()}

    # ---- the promises ------------------------------------------------------------------------------------------------

    def test_killed_under_accelerate_launch_then_resumed_is_bit_exact(self, tmp_path, objective_context):
        resume = dict(max_train_steps=6, checkpointing_steps=2, checkpoints_total_limit=2, max_train_samples=48)
        straight = self.train(self.argv(tmp_path / "straight", objective_context, **resume))

        killed = tmp_path / "killed"
        launch = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", "--num_machines", "1",
                  "--mixed_precision", "no", "--dynamo_backend", "no",
                  "--num_cpu_threads_per_process", str(torch.get_num_threads()),  # the same float arithmetic
                  str(REPO / "training" / self.entry), *self.argv(killed, objective_context, **resume)]
        env = {**os.environ, "SD_COURSE_FAULT": f"step:{self.kill_after_step}"}
        result = subprocess.run(launch, capture_output=True, text=True, timeout=300, cwd=str(REPO), env=env)
        assert result.returncode != 0, "the child was not killed"
        checkpoints = sorted(p.name for p in killed.glob("checkpoint-*"))
        assert checkpoints == ["checkpoint-2"], (checkpoints, result.stderr[-2000:])
        assert not any((killed / name).exists() for name in self.weight_files)  # no final model from a killed run

        self.train(self.argv(killed, objective_context, **resume, resume_from_checkpoint="latest"))
        a, b = self.weights(straight), self.weights(killed)
        assert a.keys() == b.keys() and a
        assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])][:5]

    def test_saved_folder_loads_with_plain_diffusers_in_a_fresh_process(self, tmp_path, objective_context):
        out = self.train(self.argv(tmp_path / "run", objective_context, max_train_steps=2))
        code = ("import sys\n" + self.load_code.format(folder=str(out)) +
                "\nassert not any(m == 'sd_course' or m.startswith('sd_course.') for m in sys.modules), 'imported'"
                "\nprint('ok')")
        result = run_python(code)
        assert result.returncode == 0, result.stderr[-2000:]
        assert result.stdout.strip().endswith("ok")
