"""Entry point for `accelerate launch` (and plain `python`): train an unconditional DDPM, save a diffusers pipeline.

    accelerate launch training/train_unconditional.py --config training/configs/mnist.yaml --output_dir runs/mnist
    accelerate launch --multi_gpu --num_processes 2 training/train_unconditional.py --config training/configs/mnist.yaml
    python training/train_unconditional.py --max_train_steps 200 --output_dir runs/quick
    python training/train_unconditional.py --help

All the logic lives in sd_course/training.py; this file only hands it the command line (as diffusers'
examples/unconditional_image_generation/train_unconditional.py does for its own loop).
"""

from sd_course.training import main


def evaluator(cfg):
    """Metrics during training (--eval_epochs K --eval_samples N): imported only when asked for."""
    from sd_course.evaluation import training_evaluator

    return training_evaluator(cfg)


if __name__ == "__main__":
    main(evaluate_factory=evaluator)
