"""What a training entry point runs: parse the flags of one objective, train it with the one loop, push if asked.

    accelerate launch training/train_unconditional.py --config training/configs/mnist.yaml --output_dir runs/mnist
    sd-course train --config training/configs/mnist-quick.yaml --output_dir runs/quick

The loop (``sd_course/train/loop.py``) knows no objective, no metric and no Hub: this is where the three meet. Every
``training/*.py`` script is one call of :func:`main` with its objective.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Callable, Optional

from sd_course.core.errors import InputError
from sd_course.evaluate.evaluation import training_evaluator
from sd_course.publish.hub import check_can_push, push_training_output
from sd_course.train.config import parse_args
from sd_course.train.loop import train

logger = logging.getLogger("sd_course.train.loop")


def main(argv=None, *, objective_class, evaluate_factory: Optional[Callable] = training_evaluator) -> Path:
    """Parse the flags of ``objective_class`` (its ``config_class``), train, push to the Hub if asked; returns the
    output folder. ``evaluate_factory(cfg) -> evaluate`` builds the metrics hook of ``--eval_epochs`` (default: the
    shipped classifier's FID and friends; None: no metrics). Bad input ends in one line on stderr and exit 2."""
    try:
        cfg = parse_args(argv, objective_class.config_class, prog=f"{objective_class.name}.py",
                         description=objective_class.__doc__.splitlines()[0])
        evaluate = evaluate_factory(cfg) if (evaluate_factory and cfg.eval_epochs) else None
        if cfg.push_to_hub:  # a missing login or a bad repo id fails now, not after hours of training
            check_can_push(cfg.hub_model_id, cfg.hub_token, Path(cfg.output_dir))
        out = train(cfg, objective_class(cfg), evaluate)
        if cfg.push_to_hub and int(os.environ.get("RANK", "0")) == 0:  # one upload, from the main process
            url = push_training_output(out, cfg.hub_model_id, cfg.hub_token, cfg.hub_private_repo)
            logger.info(f"pushed {out} to {url}")
        return out
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2)
