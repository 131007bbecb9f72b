"""The ``sd-course`` command line. It only parses arguments and calls the modules; no logic of its own.

    sd-course train      --config training/configs/mnist.yaml --output_dir runs/mnist
    sd-course sample     --model runs/mnist --scheduler dpm++ --num_inference_steps 20 --output grid.png
    sd-course trajectory --model runs/mnist --output_dir figures/
    sd-course forward    --image digit.png --timesteps 0,100,250,500,999 --output forward.png
    sd-course schedules  --output schedules.png
    sd-course evaluate   --model runs/mnist --reference ylecun/mnist:test --num_samples 1000
    sd-course compare    runs/a runs/b --num_samples 500
    sd-course inversion  --output_dir figures/inversion

Each sub-command is declared by one ``_add_<name>`` function below: its arguments, then the function it calls.
Modules are imported inside the handlers so that ``sd-course --help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys

from sd_course.errors import InputError


def _add_train(sub):
    p = sub.add_parser(
        "train",
        help="train an unconditional DDPM (same flags as training/train_unconditional.py)",
        add_help=False,
    )

    def run(args, rest):
        from sd_course import training

        training.main(rest)

    p.set_defaults(func=run, passthrough=True)


def _add_sample(sub):
    p = sub.add_parser("sample", help="sample images from a pipeline with any compatible scheduler")
    p.set_defaults(func=_not_yet("sample"))


def _add_trajectory(sub):
    p = sub.add_parser("trajectory", help="save x_t and predicted x0 along the reverse process (PNG strip + GIF)")
    p.set_defaults(func=_not_yet("trajectory"))


def _add_forward(sub):
    p = sub.add_parser("forward", help="show the forward noising q(x_t | x_0) of a real image")
    p.set_defaults(func=_not_yet("forward"))


def _add_schedules(sub):
    p = sub.add_parser("schedules", help="plot alpha_bar_t, beta_t and log-SNR of the beta schedules")
    p.set_defaults(func=_not_yet("schedules"))


def _add_evaluate(sub):
    p = sub.add_parser("evaluate", help="FID / KID / precision / recall of a model or a folder of samples")
    p.set_defaults(func=_not_yet("evaluate"))


def _add_compare(sub):
    p = sub.add_parser("compare", help="one metrics table and a side-by-side grid for several models")
    p.set_defaults(func=_not_yet("compare"))


def _add_inversion(sub):
    p = sub.add_parser("inversion", help="Part 1 of the lab: can an MLP learn arcsin, the inverse of sin?")
    p.set_defaults(func=_not_yet("inversion"))


def _not_yet(name):
    def run(args):
        raise InputError(f"'sd-course {name}' is not implemented yet in this version of sd_course.")

    return run


COMMANDS = [
    _add_train,
    _add_sample,
    _add_trajectory,
    _add_forward,
    _add_schedules,
    _add_evaluate,
    _add_compare,
    _add_inversion,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sd-course", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    # `train` hands all its flags to the training parser untouched (it has its own --help and --config).
    if argv and argv[0] == "train":
        args, rest = parser.parse_args(argv[:1]), argv[1:]
    else:
        args, rest = parser.parse_args(argv), None
    try:
        if getattr(args, "passthrough", False):
            args.func(args, rest)
        else:
            args.func(args)
    except InputError as e:
        print(f"sd-course {args.command}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
