"""How good is the digit autoencoder? Reconstruction error, what the classifier still reads, FID, latents, speed.

    python benchmarks/vae_quality.py --vae pipelines/mini-sd-mnist/vae --dataset_name ../shared/data/mnist
    python benchmarks/vae_quality.py --dataset_name ylecun/mnist --device cuda      # on a GPU (speed is the GPU's)

On the 10,000 test digits (28x28, padded to 32 for the VAE, cropped back for every number):
* reconstruction MSE (pixels in [0, 1]) and PSNR;
* the shipped classifier's accuracy on the originals and on the reconstructions (what the 256 latent numbers keep
  of the digit's identity);
* fid_mnist_classifier of the reconstructions of train[:10000] against the test set, next to the real-data floor
  FID(train[:10000] vs test) at the same n: a perfect autoencoder scores the floor; the same in the features of the
  autoencoder's perceptual network (an autoencoder trained with it must not fit those features alone);
* latent statistics before and after scaling (after: std ~1, what the diffusion model needs);
* encode and decode speed, images/s (batch 256, on ``--device``: the GPU when there is one, as the result says).
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from sd_course.core.data import load_images, to_uint8
from sd_course.core.device import device_argument, resolve_device
from sd_course.core.errors import InputError
from sd_course.core.options import DEVICE_HELP
from sd_course.evaluate import metrics
from sd_course.core.provenance import write_result
from sd_course.evaluate.classifier import accuracy, load_classifier
from sd_course.latent.autoencoder import DEFAULT_PERCEPTUAL_NETWORK, decode, encode, load_vae, prepare_images
from sd_course.latent.latent_space import latent_statistics, reconstruct, reconstruction_metrics


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--vae", default=None, help="AutoencoderKL folder (default: the shipped one)")
    p.add_argument("--dataset_name", default="ylecun/mnist", help="Hub id or local folder with train and test splits")
    p.add_argument("--num_images", type=int, default=10000)
    p.add_argument("--device", default="auto", type=device_argument, help=DEVICE_HELP)
    p.add_argument("--output_json", default=None)
    args = p.parse_args(argv)
    from sd_course.latent.text_to_image import default_vae_path

    device = resolve_device(args.device)
    try:  # a wrong folder or dataset is one line, before any work
        vae = load_vae(args.vae or default_vae_path()).to(device)
        test, labels = load_images(f"{args.dataset_name}:test", num_images=args.num_images)
        train, _ = load_images(f"{args.dataset_name}:train", num_images=args.num_images)
    except InputError as e:
        p.error(str(e))
    classifier = metrics.load_feature_extractor()

    t0 = time.time()
    latents, recon_test = reconstruct(vae, test)
    _, recon_train = reconstruct(vae, train)
    result = {"vae": str(args.vae or default_vae_path()), "n": len(test), **reconstruction_metrics(test, recon_test),
              "classifier_accuracy_originals": accuracy(classifier, test, labels),
              "classifier_accuracy_reconstructions": accuracy(classifier, recon_test, labels),
              "latents": latent_statistics(vae, latents), "seconds_reconstructing": round(time.time() - t0, 1)}
    reference = metrics.prepare_reference(f"{args.dataset_name}:test", classifier, show_progress=False)
    fid = f"fid_{metrics.FEATURE_NAME}"
    result["fid_reconstructions_of_train"] = metrics.score_images(recon_train, reference, classifier)[fid]
    result["fid_floor_train_vs_test"] = metrics.score_images(train, reference, classifier)[fid]
    result["fid_reconstructions_of_test"] = metrics.score_images(recon_test, reference, classifier)[fid]
    result["fid_over_floor"] = result["fid_reconstructions_of_train"] / result["fid_floor_train_vs_test"]
    result["accuracy_drop_points"] = 100 * (result["classifier_accuracy_originals"] -
                                            result["classifier_accuracy_reconstructions"])
    # The same FID in the features of the autoencoder's perceptual network (sd_course/assets/mnist-perceptual): an
    # autoencoder trained with that network's perceptual term could fit its features more than the metrics' ones
    perceptual = load_classifier(DEFAULT_PERCEPTUAL_NETWORK)
    reference_p = metrics.prepare_reference(f"{args.dataset_name}:test", perceptual, show_progress=False)
    result["perceptual_features"] = {
        "fid_reconstructions_of_train": metrics.score_images(recon_train, reference_p, perceptual)[fid],
        "fid_floor_train_vs_test": metrics.score_images(train, reference_p, perceptual)[fid]}
    result["perceptual_features"]["fid_over_floor"] = (result["perceptual_features"]["fid_reconstructions_of_train"] /
                                                       result["perceptual_features"]["fid_floor_train_vs_test"])

    x = prepare_images(test[:2048], vae)
    with torch.no_grad():
        encode(vae, x[:256]), decode(vae, encode(vae, x[:256]))  # warm-up
        t0 = time.time()
        z = encode(vae, x)
        result["encode_images_per_s"] = round(len(x) / (time.time() - t0), 1)
        t0 = time.time()
        to_uint8(decode(vae, z))
        result["decode_images_per_s"] = round(len(x) / (time.time() - t0), 1)
    result["threads"] = torch.get_num_threads()
    print(json.dumps(result, indent=2))
    if args.output_json:  # with the command, the weights' hashes, the device and the date
        write_result(args.output_json, result, inputs=[str(args.vae or default_vae_path()),
                                                       "sd_course/assets/mnist-classifier/model.safetensors"],
                     device=device)


if __name__ == "__main__":
    main()
