"""Entry point for `accelerate launch` (and plain `python`): train the digit autoencoder, save an AutoencoderKL folder.

    accelerate launch --num_cpu_threads_per_process 2 training/train_vae.py --config training/configs/vae-mnist.yaml \
        --dataset_name ../shared/data/mnist --output_dir runs/vae-mnist
    python training/train_vae.py --max_train_steps 200 --output_dir runs/vae-quick    # the bundled 2,000 digits
    python training/train_vae.py --help

The objective lives in sd_course/latent/autoencoder.py, the loop (checkpoints, resume, EMA, logs) in sd_course/train/loop.py.
Load the result with diffusers alone: ``AutoencoderKL.from_pretrained('runs/vae-mnist')``.
"""

from sd_course.app.launch import main
from sd_course.latent.autoencoder import Autoencoder

if __name__ == "__main__":
    main(objective_class=Autoencoder)
