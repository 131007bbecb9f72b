"""Entry point for `accelerate launch` (and plain `python`): train a mini Stable Diffusion, save a StableDiffusionPipeline.

    accelerate launch --num_cpu_threads_per_process 2 training/train_text_to_image.py \
        --config training/configs/mini-sd-mnist.yaml --dataset_name ../shared/data/mnist --output_dir runs/mini-sd
    accelerate launch --multi_gpu --num_processes 2 training/train_text_to_image.py --config ...   # data-parallel
    python training/train_text_to_image.py --help

The flags are those of diffusers' examples/text_to_image/train_text_to_image.py where the concept is the same
(--caption_column, --resolution, --train_batch_size, --use_ema, --snr_gamma, --noise_offset, --validation_prompts,
--checkpointing_steps, --resume_from_checkpoint, --mixed_precision, --push_to_hub, ...). The objective lives in
sd_course/latent/text_to_image.py, the loop in sd_course/train/loop.py.
"""

from sd_course.app.launch import main
from sd_course.latent.text_to_image import TextToImage

if __name__ == "__main__":
    main(objective_class=TextToImage)
