"""Classifier-free guidance, measured: prompt accuracy and FID against the guidance scale (the classic trade-off).

    python benchmarks/guidance_sweep.py --model pipelines/mini-sd-mnist --reference ../shared/data/mnist:test

For each scale w in 1, 1.5, 2, 3, 5, 8 (DPM-Solver++ 25 steps): --num_samples images asking for each digit in turn
with the training phrasings, and as many with held-out phrasings (never seen in training); the shipped classifier
reads each one. Prints a table and draws guidance.png (prompt accuracy and FID against w).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sd_course.core.device import device_argument, resolve_device
from sd_course.core.options import DEVICE_HELP
from sd_course.core.provenance import write_result
from sd_course.evaluate import evaluation, metrics


def plot(rows: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    w = [r["guidance_scale"] for r in rows]
    ax.plot(w, [r["prompt_accuracy"] for r in rows], "o-", label="prompt accuracy (training phrasings)")
    ax.plot(w, [r["prompt_accuracy_heldout"] for r in rows], "s--", label="prompt accuracy (held-out phrasings)")
    ax.set_xscale("log")
    ax.set_xticks(w, [f"{x:g}" for x in w])
    ax.minorticks_off()
    ax.set_xlabel("guidance scale w"), ax.set_ylabel("prompt accuracy")
    ax2 = ax.twinx()
    ax2.plot(w, [r["fid"] for r in rows], "^:", color="C3", label="FID (classifier features)")
    ax2.set_ylabel("FID", color="C3")
    fig.legend(loc="lower center", fontsize=8, ncol=2)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.savefig(path, dpi=110)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="pipelines/mini-sd-mnist")
    p.add_argument("--reference", default="ylecun/mnist:test")
    p.add_argument("--scales", default="1,1.5,2,3,5,8")
    p.add_argument("--num_samples", type=int, default=500)
    p.add_argument("--num_inference_steps", type=int, default=25)
    p.add_argument("--scheduler", default="dpm++")
    p.add_argument("--device", default="auto", type=device_argument, help=DEVICE_HELP)
    p.add_argument("--output_json", default=None)
    p.add_argument("--output_plot", default="guidance.png")
    p.add_argument("--plot_from", default=None, help="redraw the plot from an --output_json of an earlier run")
    args = p.parse_args(argv)
    if args.plot_from:
        with open(args.plot_from) as f:
            saved = json.load(f)
        plot(saved["rows"] if isinstance(saved, dict) else saved, args.output_plot)
        return
    fid = f"fid_{metrics.FEATURE_NAME}"
    rows = []
    for scale in [float(s) for s in args.scales.split(",")]:
        r = evaluation.evaluate_text_to_image(args.model, args.reference, args.num_samples, 0, args.scheduler,
                                           args.num_inference_steps, scale, show_progress=False, device=args.device)
        rows.append({"guidance_scale": scale, "prompt_accuracy": r["prompt_accuracy"],
                     "prompt_accuracy_heldout": r["prompt_accuracy_heldout"], "fid": r[fid],
                     "precision": r[f"precision_{metrics.FEATURE_NAME}"], "recall": r[f"recall_{metrics.FEATURE_NAME}"],
                     "worst_digit": min(range(10), key=lambda d: r["train_templates"]["prompt_accuracy_per_digit"][d]),
                     "worst_digit_accuracy": min(r["train_templates"]["prompt_accuracy_per_digit"])})
        print(json.dumps(rows[-1]), flush=True)
    print("\n| w | prompt acc. (train phrasings) | prompt acc. (held-out) | FID | precision | recall |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['guidance_scale']:g} | {r['prompt_accuracy']:.3f} | {r['prompt_accuracy_heldout']:.3f} | "
              f"{r['fid']:.1f} | {r['precision']:.3f} | {r['recall']:.3f} |")
    plot(rows, args.output_plot)
    print(f"wrote {args.output_plot}")
    if args.output_json:  # the rows, with the command, the weights' hashes, the device and the date
        inputs = [args.model] if Path(args.model).exists() else []  # a Hub id: its weights are not hashed here
        write_result(args.output_json, dict(model=args.model, scheduler=args.scheduler, steps=args.num_inference_steps,
                                            num_samples=args.num_samples, rows=rows),
                     inputs=[*inputs, "sd_course/assets/mnist-classifier/model.safetensors"],
                     device=resolve_device(args.device))


if __name__ == "__main__":
    main()
