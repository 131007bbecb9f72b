"""Entry point for `accelerate launch` (and plain `python`): train an unconditional DDPM, save a diffusers pipeline.

    accelerate launch training/train_unconditional.py --config training/configs/mnist.yaml --output_dir runs/mnist
    accelerate launch --multi_gpu --num_processes 2 training/train_unconditional.py --config training/configs/mnist.yaml
    python training/train_unconditional.py --max_train_steps 200 --output_dir runs/quick
    python training/train_unconditional.py --help

The objective lives in sd_course/pixel/diffusion.py, the loop in sd_course/train/loop.py; this file only hands them the
command line (as diffusers'
examples/unconditional_image_generation/train_unconditional.py does for its own loop).
"""

from sd_course.app.launch import main
from sd_course.pixel.diffusion import PixelDiffusion

if __name__ == "__main__":
    main(objective_class=PixelDiffusion)
