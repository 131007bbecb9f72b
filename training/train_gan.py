"""Entry point for `accelerate launch` (and plain `python`): train the DCGAN baseline, save its generator.

    accelerate launch --num_cpu_threads_per_process 2 training/train_gan.py --config training/configs/gan-mnist.yaml \
        --dataset_name ../shared/data/mnist --output_dir runs/gan
    python training/train_gan.py --max_train_steps 200 --output_dir runs/gan-quick    # the bundled 2,000 digits
    python training/train_gan.py --help

The objective lives in sd_course/gan/dcgan.py, the loop (checkpoints, resume, logs) in sd_course/train/loop.py: the same one
that trains the diffusion models. Sample the result with `sd-course sample --model runs/gan`, score it with
`sd-course evaluate --model runs/gan`.
"""

from sd_course.app.launch import main
from sd_course.evaluate.evaluation import training_evaluator
from sd_course.gan.dcgan import GAN

if __name__ == "__main__":
    main(objective_class=GAN, evaluate_factory=training_evaluator)
