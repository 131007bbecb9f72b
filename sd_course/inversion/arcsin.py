"""Part 1 of the lab: can a small MLP learn x = arcsin(y), the inverse of y = sin(x)?

Run it (about 18 s of CPU time: 20-35 s wall on a 2-core machine that others are using too):

    sd-course inversion --output_dir figures/inversion
    python -m sd_course inversion --output_dir figures/inversion --hidden 3,3 --activation relu \\
        --num_samples 1000 --epochs 600 --seeds 0,1,2,3,4

or from Python:

    from sd_course.inversion.arcsin import InversionConfig, run_inversion
    metrics = run_inversion(InversionConfig(output_dir="figures/inversion"))

What it does, top to bottom:

1. Sample x ~ U[-1, 1] and y = sin(x); train an MLP f(y) ~ x (the lab's 1 -> 3 -> 3 -> 1 ReLU net) with the MSE
   loss and Adam, once per seed, and the same for a wider ReLU net (1-32-32-1) and a wider tanh net.
2. Evaluate on a dense grid of y: MSE against the true arcsin(y) inside the training range
   [sin(-1), sin(1)] ~ [-0.84, 0.84], and outside it (up to +-1 where arcsin exists, up to +-1.5 where it doesn't,
   and at +-10 to see the far-out shape).
3. Make the function non-invertible (x ~ U[-pi, pi], so sin is many-to-one) and check that the MSE-optimal network
   predicts the conditional mean E[x | y] = sign(y) * pi/2, i.e. no inverse at all.
4. Write the figures (PNG), ``metrics.json`` and ``report.md`` into the output folder.

Q/A: the lab's discussion points. Numbers: the default run, seeds 0-4 (see docs/inversion.md and report.md)
------------------------------------------------------------------------------------------------------------
Q: How well does the network learn the inverse?
A: Inside the training range, well, if it trains at all. The 1-3-3-1 ReLU net learns it on 4 of 5 seeds, to an
   MSE of [6.2e-4](docs/figures/inversion/metrics.json#architectures.1-3-3-1%20relu.summary.mse_in_range.min) to
   [6.3e-4](docs/figures/inversion/metrics.json#architectures.1-3-3-1%20relu.per_seed.seed=0.mse_in_range): a piecewise-linear curve with a few kinks cannot bend
   like arcsin, so that is its floor. Seed 4 gets stuck at MSE [0.29](docs/figures/inversion/metrics.json#architectures.1-3-3-1%20relu.per_seed.seed=4.mse_in_range)
   (predicting x = 0 everywhere scores [0.285](docs/figures/inversion/metrics.json#baseline_mse_predict_zero)): 4 of its 6 ReLU units are
   negative on every training input from the start ("dead": output 0, gradient 0, they never come back), the
   other 2 die early in training, and the net is a constant. The mean,
   [5.8e-2](docs/figures/inversion/metrics.json#architectures.1-3-3-1%20relu.summary.mse_in_range.mean) +- [1.3e-1](docs/figures/inversion/metrics.json#architectures.1-3-3-1%20relu.summary.mse_in_range.std), is all
   failure: hence we report mean *and* spread, median and failures.
   Wider nets fix both: 1-32-32-1 ReLU [9.2e-6](docs/figures/inversion/metrics.json#architectures.1-32-32-1%20relu.summary.mse_in_range.mean) +-
   [3.6e-6](docs/figures/inversion/metrics.json#architectures.1-32-32-1%20relu.summary.mse_in_range.std), tanh [3.1e-5](docs/figures/inversion/metrics.json#architectures.1-32-32-1%20tanh.summary.mse_in_range.mean) +-
   [5.1e-6](docs/figures/inversion/metrics.json#architectures.1-32-32-1%20tanh.summary.mse_in_range.std), every seed (a wide ReLU net
   also ends with 24-30 of its 64 units dead, but has plenty left).
Cmd: sd-course inversion --output_dir figures/inversion
Fig: figures/inversion/inverse_fit.png

Q: What happens outside [-1, 1] (and outside the training range)?
A: Between 0.84 and 1 arcsin still exists, but it steepens (slope 1/sqrt(1 - y^2) -> infinity at y = 1) and the
   net never saw that: the MSE there is 1e2-3e3 times the in-range MSE, and f(+-1) of a wide net misses +-pi/2
   by ~0.4. Beyond |y| = 1 arcsin does not exist, yet the net answers anyway, with no sign that it is out of its
   depth: at
   |y| = 1.5 the wide nets say [1.62](docs/figures/inversion/metrics.json#architectures.1-32-32-1%20relu.summary.abs_prediction_at_pm1%2E5.mean) (ReLU) and
   [1.75](docs/figures/inversion/metrics.json#architectures.1-32-32-1%20tanh.summary.abs_prediction_at_pm1%2E5.mean) (tanh) on average, beyond pi/2 = 1.57, values
   arcsin never takes. Near the data both behave alike; far out they differ by construction: a ReLU net is
   piecewise linear, so past its last kink it is a straight line (at |y| = 10 the slope is still
   [0.60x](docs/figures/inversion/metrics.json#architectures.1-32-32-1%20relu.summary.slope_ratio_at_10.mean) the slope at the data's edge,
   |f| ~ [8.7](docs/figures/inversion/metrics.json#architectures.1-32-32-1%20relu.summary.abs_prediction_at_pm10.mean)); every tanh unit saturates, so a tanh net goes flat
   (slope ratio [0.002](docs/figures/inversion/metrics.json#architectures.1-32-32-1%20tanh.summary.slope_ratio_at_10.mean), |f| ~ [2.4](docs/figures/inversion/metrics.json#architectures.1-32-32-1%20tanh.summary.abs_prediction_at_pm10.mean)).
Cmd: sd-course inversion --output_dir figures/inversion
Fig: figures/inversion/extrapolation.png

Q: What does this imply for inverting more complex functions?
A: A network learns an inverse only where it saw data, only as well as its capacity (and its luck with the
   initialisation) allows, and only if the function is one-to-one. When several x give the same y, the MSE loss
   makes it predict the average of the preimages, E[x | y], which need not be a preimage at all: for sin on
   [-pi, pi] it is the constant pi/2 for every y > 0 (measured: MSE
   [1.2e-3](docs/figures/inversion/metrics.json#noninvertible.summary.mse_vs_conditional_mean_away_from_0.mean) against E[x | y],
   [1.0](docs/figures/inversion/metrics.json#noninvertible.summary.mse_vs_arcsin_away_from_0.mean) against arcsin),
   and sin(pi/2) = 1, not y. Complex forward maps (blurring, downsampling, projecting, adding noise) lose
   information and are many-to-one, so a one-shot MSE regression returns the blurry average.
Cmd: sd-course inversion --output_dir figures/inversion
Fig: figures/inversion/noninvertible.png

Q: How does function inversion relate to diffusion models?
A: The forward process x_0 -> x_t (add Gaussian noise) is the function to invert, and it is many-to-one in the
   extreme: a given noisy x_t could have come from very many images. A denoiser trained with the MSE loss learns
   exactly E[x_0 | x_t], the blurry average, just as our net learns E[x | y]. Diffusion models do not take that
   as the answer in one shot; they invert the noise in many small steps, where each step's posterior
   p(x_{t-1} | x_t) is narrow and nearly Gaussian (almost one-to-one, like arcsin on [-1, 1]), and they sample
   rather than average at each step, so they end on one sharp image instead of the mean of all of them.
Cmd: sd-course inversion --output_dir figures/inversion
Fig: figures/inversion/noninvertible.png
"""

from __future__ import annotations

import math
import operator
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib import colormaps
from matplotlib.figure import Figure
from torch import nn
from tqdm import tqdm

from sd_course.core.errors import InputError
from sd_course.core.provenance import write_result

# ---------------------------------------------------------------------------------------------------------------
# 1. The problem and its constants
# ---------------------------------------------------------------------------------------------------------------
# Training inputs: x ~ U[-X_RANGE, X_RANGE] and y = sin(x). On [-1, 1] sin is strictly increasing, so it has an
# inverse there, arcsin. The network sees y in [sin(-1), sin(1)] ~ [-0.841, 0.841]: the "training range".
X_RANGE = 1.0
Y_LOW, Y_HIGH = math.sin(-X_RANGE), math.sin(X_RANGE)
# Outside the training range we look at y in [-1.5, 1.5]; arcsin only exists for |y| <= 1. Far out, at |y| = 10,
# the difference between activations becomes obvious (ReLU: straight line, tanh: flat).
Y_WIDE = 1.5
Y_FAR = 10.0
# The non-invertible case: x ~ U[-pi, pi], where sin is many-to-one (two preimages for every y != 0).
NONINVERTIBLE_X_RANGE = math.pi
# A seed "failed" when its in-range MSE is above this. For scale: predicting x = 0 everywhere gives 0.285 on the
# in-range grid (the mean of arcsin(y)^2), a good 1-3-3-1 net ~6e-4, a 1-32-32-1 net ~1e-5.
FAILED_MSE = 1e-2

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh}


@dataclass
class InversionConfig:
    """Everything a run depends on. Strings such as ``hidden="3,3"`` or ``seeds="0,1"`` are accepted too."""

    output_dir: str = "figures/inversion"  # where the PNG figures, metrics.json and report.md are written
    hidden: tuple = (3, 3)  # hidden widths of the main network: 1 -> 3 -> 3 -> 1, as in the lab
    activation: str = "relu"  # nonlinearity of the main network, as in the lab; "relu" or "tanh"
    num_samples: int = 1000  # training pairs (y, x), x ~ U[-1, 1], y = sin(x); fresh per seed
    epochs: int = 600  # full-batch Adam steps (one step sees all samples); converged by then, see the curves
    seeds: tuple = (0, 1, 2, 3, 4)  # each network is trained once per seed (data and init); we report mean and spread
    lr: float = 2e-2  # Adam learning rate, cosine-decayed to 0 over the epochs (a calm end: a precise minimum)
    # Also trained on the same seeds, to compare with the main network: wider, and smooth instead of piecewise linear.
    comparisons: tuple = (((32, 32), "relu"), ((32, 32), "tanh"))
    noninvertible_hidden: tuple = (32, 32)  # wide, so that capacity is not what stops it from inverting sin
    noninvertible_activation: str = "relu"  # (tanh gives the same picture)
    # Given y the target x is spread over two branches (a "noisy" target), so 1000 points get partly memorised;
    # 4000 make the fit follow the population optimum E[x | y].
    noninvertible_num_samples: int = 4000
    progress: bool = True  # show a tqdm progress bar over the training runs

    def __post_init__(self):
        # Validate up front: a typo should fail in a millisecond, not after training.
        if not isinstance(self.output_dir, (str, Path)) or not str(self.output_dir).strip():
            raise InputError(
                "--output_dir is empty; pass a folder for the figures, e.g. --output_dir figures/inversion"
            )
        self.hidden = parse_hidden(self.hidden, "--hidden")
        self.activation = parse_activation(self.activation, "--activation")
        self.num_samples = _positive_int(self.num_samples, "--num_samples", "1000")
        self.epochs = _positive_int(self.epochs, "--epochs", "600")
        self.seeds = parse_seeds(self.seeds)
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or not self.lr > 0:
            raise InputError(f"lr must be a positive number, e.g. 2e-2 (got {self.lr!r})")
        try:
            self.comparisons = tuple(
                (parse_hidden(h, "comparisons hidden"), parse_activation(a, "comparisons activation"))
                for h, a in self.comparisons
            )
        except (TypeError, ValueError) as e:
            if isinstance(e, InputError):
                raise
            raise InputError(
                f"comparisons must be a list of (hidden, activation) pairs, e.g. (((32, 32), 'tanh'),) "
                f"(got {self.comparisons!r})"
            ) from None
        self.noninvertible_hidden = parse_hidden(self.noninvertible_hidden, "noninvertible_hidden")
        self.noninvertible_activation = parse_activation(self.noninvertible_activation, "noninvertible_activation")
        self.noninvertible_num_samples = _positive_int(
            self.noninvertible_num_samples, "noninvertible_num_samples", "4000"
        )


def _as_int(value) -> int:
    """An int from an int, a numpy int or a string of digits; never from a float or a bool."""
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, str):
        return int(value.strip())
    return operator.index(value)  # raises TypeError for floats


def _int_list(value) -> tuple:
    items = value.split(",") if isinstance(value, str) else ([value] if not hasattr(value, "__iter__") else value)
    return tuple(_as_int(v) for v in items)


def parse_hidden(value, name: str = "--hidden") -> tuple:
    """``"3,3"`` or ``(3, 3)`` -> ``(3, 3)``: the hidden widths, all positive."""
    try:
        widths = _int_list(value)
    except (TypeError, ValueError):
        widths = ()
    if not widths or any(w <= 0 for w in widths):
        raise InputError(f"{name} must be comma-separated positive integers, e.g. 3,3 (got {value!r})")
    return widths


def parse_activation(value, name: str = "--activation") -> str:
    name_ok = isinstance(value, str) and value.strip().lower() in ACTIVATIONS
    if not name_ok:
        raise InputError(f"{name} must be one of {', '.join(ACTIVATIONS)} (got {value!r}); e.g. {name} tanh")
    return value.strip().lower()


def parse_seeds(value) -> tuple:
    """``"0,1,2"`` or ``(0, 1, 2)`` -> ``(0, 1, 2)``: non-negative, each once."""
    try:
        seeds = _int_list(value)
    except (TypeError, ValueError):
        seeds = ()
    if not seeds or any(s < 0 for s in seeds):
        raise InputError(f"--seeds must be comma-separated non-negative integers, e.g. 0,1,2,3,4 (got {value!r})")
    if len(set(seeds)) != len(seeds):
        raise InputError(f"--seeds lists a seed twice ({value!r}); list each seed once, e.g. 0,1,2,3,4")
    return seeds


def _positive_int(value, name: str, example: str) -> int:
    try:
        n = _as_int(value)
    except (TypeError, ValueError):
        n = 0
    if n <= 0:
        raise InputError(f"{name} must be a positive integer, e.g. {name} {example} (got {value!r})")
    return n


def prepare_output_dir(path) -> Path:
    """Create the folder and make sure we can write into it, before any training time is spent."""
    out = Path(path).expanduser()
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".sd_course_write_test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise InputError(
            f"--output_dir {str(out)!r} is not a writable folder ({e.strerror or e}); "
            f"pass a folder you can write to, e.g. --output_dir figures/inversion"
        ) from None
    return out


# ---------------------------------------------------------------------------------------------------------------
# 2. Data and model
# ---------------------------------------------------------------------------------------------------------------
def sample_pairs(num_samples: int, x_range: float, generator: torch.Generator):
    """x ~ U[-x_range, x_range], y = sin(x), as (N, 1) columns. The network's input is y, its target is x."""
    x = x_range * (2 * torch.rand(num_samples, 1, generator=generator) - 1)
    return torch.sin(x), x


def make_mlp(hidden, activation: str) -> nn.Sequential:
    """1 -> hidden[0] -> ... -> hidden[-1] -> 1, with the activation after every hidden layer, none at the end
    (the output x is unbounded). Default PyTorch init: weights and biases ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    layers, width = [], 1
    for h in hidden:
        layers += [nn.Linear(width, h), ACTIVATIONS[activation]()]
        width = h
    layers.append(nn.Linear(width, 1))
    return nn.Sequential(*layers)


def architecture_name(hidden, activation: str) -> str:
    return "-".join(str(w) for w in (1, *hidden, 1)) + f" {activation}"


@torch.no_grad()
def count_dead_units(model: nn.Sequential, y: torch.Tensor):
    """ReLU units whose pre-activation is <= 0 for *every* input in y. Such a unit outputs 0 and, since
    relu'(z) = 0 for z < 0, gets zero gradient: it can never come back. None for a net without ReLUs."""
    layers = list(model)
    if not any(isinstance(layer, nn.ReLU) for layer in layers):
        return None
    dead, h = 0, y
    for layer, nxt in zip(layers, layers[1:] + [None]):
        h = layer(h)
        if isinstance(nxt, nn.ReLU):
            dead += int((h <= 0).all(dim=0).sum())
    return dead


# ---------------------------------------------------------------------------------------------------------------
# 3. Training: minimise the MSE  L(theta) = 1/N sum_i (f_theta(y_i) - x_i)^2  with full-batch Adam
# ---------------------------------------------------------------------------------------------------------------
def _adam(params, lr: float):
    try:  # one fused kernel per step: ~25% faster for these tiny nets (CPU support since torch 2.4)
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.Adam(params, lr=lr)


def train_mlp(y: torch.Tensor, x: torch.Tensor, hidden, activation: str, *, epochs: int, lr: float, seed: int):
    """Fit f(y) ~ x. Returns (model, dead ReLU units at init (or None), loss per epoch). Same seed, same numbers."""
    with torch.random.fork_rng(devices=[]):  # seed the init without disturbing the caller's global RNG
        torch.manual_seed(seed)
        model = make_mlp(hidden, activation)
    dead_at_init = count_dead_units(model, y)
    opt = _adam(model.parameters(), lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)  # lr -> 0 at the last epoch
    losses = []
    for _ in range(epochs):
        loss = F.mse_loss(model(y), x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        schedule.step()
        losses.append(loss.item())
    return model, dead_at_init, losses


@torch.no_grad()
def predict(model: nn.Module, y) -> np.ndarray:
    """f(y) for a 1-D numpy array of y."""
    return model(torch.as_tensor(np.asarray(y), dtype=torch.float32).reshape(-1, 1)).reshape(-1).numpy()


# ---------------------------------------------------------------------------------------------------------------
# 4. Evaluation of the invertible case, on dense grids of y
# ---------------------------------------------------------------------------------------------------------------
# Inside the training range: what the net was trained for.
GRID_IN = np.linspace(Y_LOW, Y_HIGH, 2001)
# Outside the training range but where arcsin exists: [-1, sin(-1)) and (sin(1), 1].
GRID_GAP = np.concatenate([np.linspace(-1.0, Y_LOW, 201)[:-1], np.linspace(Y_HIGH, 1.0, 201)[1:]])
# Everything we plot: [-1.5, 1.5], arcsin undefined for |y| > 1.
GRID_WIDE = np.linspace(-Y_WIDE, Y_WIDE, 3001)
GRID_UNIT = np.linspace(-1.0, 1.0, 2001)
GRID_FAR = np.linspace(-Y_FAR, Y_FAR, 2001)


def _slope(model, y0: float, h: float = 1e-2) -> float:
    """Central difference (f(y0 + h) - f(y0 - h)) / 2h."""
    lo, hi = predict(model, [y0 - h, y0 + h])
    return float((hi - lo) / (2 * h))


def _slope_ratio(model, y_far: float) -> float | None:
    """|slope at |y| = y_far| / |slope at the edge of the training range|, averaged over both sides: how much of
    its slope the net keeps far out. Constant for a straight continuation (whatever its direction), -> 0 for a
    saturating net. None for a net that is already flat at the edge (a dead one)."""
    ratios = []
    for sign in (-1, 1):
        edge = _slope(model, sign * Y_HIGH)
        if abs(edge) > 1e-6:
            ratios.append(abs(_slope(model, sign * y_far) / edge))
    return float(np.mean(ratios)) if ratios else None


def evaluate_inverse(model: nn.Module) -> dict:
    """MSE against arcsin in and out of the training range, and how the net behaves where arcsin does not exist."""
    mse_in = float(np.mean((predict(model, GRID_IN) - np.arcsin(GRID_IN)) ** 2))
    mse_out = float(np.mean((predict(model, GRID_GAP) - np.arcsin(GRID_GAP)) ** 2))
    f_pm1 = predict(model, [-1.0, 1.0])
    f_wide = predict(model, [-Y_WIDE, Y_WIDE])
    f_far = predict(model, [-Y_FAR, Y_FAR])
    return {
        "mse_in_range": mse_in,  # y in [sin(-1), sin(1)], 2001 points, vs arcsin(y)
        "mse_out_of_range": mse_out,  # y in [-1, sin(-1)) U (sin(1), 1], 400 points, vs arcsin(y)
        "error_at_y_-1_and_+1": [float(f_pm1[0] + math.pi / 2), float(f_pm1[1] - math.pi / 2)],
        "prediction_at_y_-1.5_and_+1.5": [float(f_wide[0]), float(f_wide[1])],  # arcsin only reaches +-pi/2
        "prediction_at_y_-10_and_+10": [float(f_far[0]), float(f_far[1])],
        # The same, as one number per seed (mean over the two sides), for the summaries:
        "abs_error_at_pm1": float(np.mean(np.abs(f_pm1 - np.array([-math.pi / 2, math.pi / 2])))),
        "abs_prediction_at_pm1.5": float(np.mean(np.abs(f_wide))),  # > pi/2: a value arcsin never takes
        "abs_prediction_at_pm10": float(np.mean(np.abs(f_far))),
        # Linear vs saturating: a ReLU net keeps a constant slope out to infinity, a tanh net's slope dies away.
        "slope_ratio_at_1.5": _slope_ratio(model, Y_WIDE),
        "slope_ratio_at_10": _slope_ratio(model, Y_FAR),
    }


def summarize(values) -> dict:
    """mean, sample std (ddof=1), median, min, max over seeds, ignoring missing values."""
    v = np.array([x for x in values if x is not None and math.isfinite(x)], dtype=np.float64)
    if v.size == 0:
        return {"mean": None, "std": None, "median": None, "min": None, "max": None, "n": 0}
    std = float(v.std(ddof=1)) if v.size > 1 else 0.0
    return {"mean": float(v.mean()), "std": std, "median": float(np.median(v)), "min": float(v.min()),
            "max": float(v.max()), "n": int(v.size)}


def train_and_evaluate(hidden, activation: str, seed: int, config: InversionConfig) -> dict:
    """One run of the invertible experiment: fresh data and init from ``seed``, train, evaluate."""
    generator = torch.Generator().manual_seed(seed)
    y, x = sample_pairs(config.num_samples, X_RANGE, generator)
    model, dead_at_init, losses = train_mlp(y, x, hidden, activation, epochs=config.epochs, lr=config.lr, seed=seed)
    metrics = {"seed": seed, "final_train_loss": losses[-1], **evaluate_inverse(model)}
    metrics["dead_units_at_init"] = dead_at_init
    metrics["dead_units_after_training"] = count_dead_units(model, y)
    curves = {"losses": losses, "pred_unit": predict(model, GRID_UNIT), "pred_wide": predict(model, GRID_WIDE),
              "pred_far": predict(model, GRID_FAR)}
    return {"metrics": metrics, "curves": curves}


# ---------------------------------------------------------------------------------------------------------------
# 5. The non-invertible case: x ~ U[-pi, pi], y = sin(x)
# ---------------------------------------------------------------------------------------------------------------
# The MSE is minimised, over *all* functions f, by the conditional mean f*(y) = E[x | y]:
#     E[(f(y) - x)^2] = E[(f(y) - E[x|y])^2] + E[Var(x | y)],
# the second term does not depend on f. Here it has a closed form. For y in (0, 1] the preimages of y in
# [-pi, pi] are a = arcsin(y) and pi - a; p(x | y) is proportional to p(x) / |cos x| at each preimage, and
# |cos a| = |cos(pi - a)|, so both are equally likely: E[x | y] = (a + pi - a) / 2 = pi/2, whatever y > 0 is.
# For y < 0 the preimages are a = arcsin(y) and -pi - a: E[x | y] = -pi/2. So f* is a step, sign(y) * pi/2.
# It is not an inverse: sin(f*(y)) = sign(y), not y.
# The best achievable MSE: Var(x | y) = (pi/2 - arcsin|y|)^2, and arcsin|sin x| ~ U[0, pi/2] when
# x ~ U[-pi, pi], so E[Var(x | y)] = E[u^2], u ~ U[0, pi/2] = (pi/2)^2 / 3 = pi^2 / 12 ~ 0.822.
# For comparison, the best constant (0) scores Var(x) = pi^2 / 3 ~ 3.29.
BAYES_MSE = math.pi**2 / 12
VAR_X = math.pi**2 / 3
# Away from the jump at y = 0 (a continuous net needs some room to go from -pi/2 to pi/2):
JUMP_MARGIN = 0.1
GRID_AWAY = GRID_UNIT[np.abs(GRID_UNIT) >= JUMP_MARGIN]


def conditional_mean_sin(y) -> np.ndarray:
    """E[x | y] for x ~ U[-pi, pi], y = sin(x): pi/2 for y > 0, -pi/2 for y < 0 (0 at y = 0, a null set)."""
    return np.sign(np.asarray(y, dtype=np.float64)) * math.pi / 2


def binned_conditional_mean(x: np.ndarray, y: np.ndarray, num_bins: int = 40) -> dict:
    """Estimate E[x | y] by averaging x over bins of y. An even number of bins keeps y = 0 on a bin edge,
    so no bin straddles the jump."""
    edges = np.linspace(-1.0, 1.0, num_bins + 1)
    which = np.clip(np.digitize(y, edges) - 1, 0, num_bins - 1)
    counts = np.bincount(which, minlength=num_bins)
    means = np.bincount(which, weights=x, minlength=num_bins) / np.maximum(counts, 1)
    sq = np.bincount(which, weights=x**2, minlength=num_bins) / np.maximum(counts, 1)
    stderr = np.sqrt(np.maximum(sq - means**2, 0) / np.maximum(counts, 1))
    return {"centers": (edges[:-1] + edges[1:]) / 2, "means": means, "counts": counts, "stderr": stderr}


def check_conditional_mean(num_samples: int = 200_000, num_bins: int = 40, seed: int = 0) -> dict:
    """Numerical check of the closed form: bin many samples of (y, x) and compare the bin means with pi/2 * sign."""
    generator = torch.Generator().manual_seed(seed)
    y, x = sample_pairs(num_samples, NONINVERTIBLE_X_RANGE, generator)
    x, y = x.reshape(-1).double().numpy(), y.reshape(-1).double().numpy()
    bins = binned_conditional_mean(x, y, num_bins)
    diff = bins["means"] - conditional_mean_sin(bins["centers"])
    return {
        "num_samples": num_samples,
        "num_bins": num_bins,
        "max_abs_diff_bin_mean_vs_closed_form": float(np.abs(diff).max()),
        "max_abs_z_score": float(np.abs(diff / bins["stderr"]).max()),  # |diff| in standard errors; ~2-3 is chance
        "empirical_mse_of_closed_form": float(np.mean((conditional_mean_sin(y) - x) ** 2)),  # should be ~ pi^2/12
        "bayes_mse_pi2_over_12": BAYES_MSE,
        "bin_centers": bins["centers"].tolist(),
        "bin_means": bins["means"].tolist(),
    }


def train_noninvertible(seed: int, config: InversionConfig) -> dict:
    """Train the wide net on x ~ U[-pi, pi] and compare it with E[x | y] and with the 'true' branch arcsin(y)."""
    generator = torch.Generator().manual_seed(seed)
    y, x = sample_pairs(config.noninvertible_num_samples, NONINVERTIBLE_X_RANGE, generator)
    model, _, losses = train_mlp(
        y, x, config.noninvertible_hidden, config.noninvertible_activation,
        epochs=config.epochs, lr=config.lr, seed=seed,
    )
    y_test, x_test = sample_pairs(100_000, NONINVERTIBLE_X_RANGE, torch.Generator().manual_seed(10_000 + seed))
    test_mse = float(np.mean((predict(model, y_test.reshape(-1).numpy()) - x_test.reshape(-1).numpy()) ** 2))
    f_away = predict(model, GRID_AWAY)
    metrics = {
        "seed": seed,
        "final_train_loss": losses[-1],
        "test_mse": test_mse,  # fresh samples; the floor is pi^2/12
        "mse_vs_conditional_mean_away_from_0": float(np.mean((f_away - conditional_mean_sin(GRID_AWAY)) ** 2)),
        "max_abs_dev_from_conditional_mean_away_from_0": float(
            np.abs(f_away - conditional_mean_sin(GRID_AWAY)).max()
        ),
        "mse_vs_arcsin_away_from_0": float(np.mean((f_away - np.arcsin(GRID_AWAY)) ** 2)),  # the principal inverse
        "mse_vs_conditional_mean_all_y": float(
            np.mean((predict(model, GRID_UNIT) - conditional_mean_sin(GRID_UNIT)) ** 2)
        ),
    }
    sample_idx = slice(0, 2000)  # a few training points for the scatter plot
    curves = {
        "losses": losses,
        "pred_unit": predict(model, GRID_UNIT),
        "train_y": y[sample_idx].reshape(-1).numpy(),
        "train_x": x[sample_idx].reshape(-1).numpy(),
    }
    return {"metrics": metrics, "curves": curves}


# ---------------------------------------------------------------------------------------------------------------
# 6. Figures (matplotlib's object API: Figure + savefig renders with Agg, no pyplot state, no display needed)
# ---------------------------------------------------------------------------------------------------------------
def _figure(ncols: int, nrows: int = 1, width: float = 4.6, height: float = 4.0):
    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def _seed_color(i: int):
    return colormaps["tab10"](i % 10)


def _shade_training_range(ax, label=True):
    ax.axvspan(Y_LOW, Y_HIGH, color="tab:green", alpha=0.12, lw=0,
               label=f"training range of y [{Y_LOW:.2f}, {Y_HIGH:.2f}]" if label else None)


def _fmt(v, spec=".1e"):
    return "n/a" if v is None else format(v, spec)


def plot_inverse_fit(results: dict, summary: dict, path: Path):
    """Predicted x against the true arcsin(y), y in [-1, 1]: the diagonal is a perfect inverse."""
    fig, axes = _figure(len(results))
    true_x = np.arcsin(GRID_UNIT)
    for ax, (name, runs) in zip(axes[0], results.items()):
        ax.axvspan(-X_RANGE, X_RANGE, color="tab:green", alpha=0.12, lw=0, label="training range x in [-1, 1]")
        ax.plot(true_x, true_x, color="black", lw=2.5, alpha=0.6, label="perfect inverse: x = arcsin(y)")
        for i, run in enumerate(runs):
            m = run["metrics"]
            ax.plot(true_x, run["curves"]["pred_unit"], color=_seed_color(i), lw=1.2,
                    label=f"seed {m['seed']}: MSE {m['mse_in_range']:.1e}")
        s = summary[name]["mse_in_range"]
        ax.set_title(f"{name}\nin-range MSE {s['mean']:.1e} ± {s['std']:.1e} (mean ± std)", fontsize=10)
        ax.set_xlabel("true x = arcsin(y)")
        ax.set_ylabel("predicted x = f(y)")
        ax.set_xlim(-math.pi / 2, math.pi / 2)
        ax.legend(fontsize=7, loc="upper left")
        ax.grid(alpha=0.3)
    fig.suptitle("Does f(y) invert sin? Predicted vs true x for y in [-1, 1] (shaded: where training data was)")
    fig.savefig(path, dpi=100)


def plot_inverse_error(results: dict, path: Path):
    """|f(y) - arcsin(y)| on a log scale: small inside the training range, growing fast outside it."""
    fig, axes = _figure(len(results), width=4.6, height=3.6)
    for ax, (name, runs) in zip(axes[0], results.items()):
        _shade_training_range(ax)
        for i, run in enumerate(runs):
            err = np.abs(run["curves"]["pred_unit"] - np.arcsin(GRID_UNIT))
            ax.semilogy(GRID_UNIT, np.maximum(err, 1e-7), color=_seed_color(i), lw=1,
                        label=f"seed {run['metrics']['seed']}")
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("y")
        ax.set_ylabel("|f(y) - arcsin(y)|")
        ax.set_xlim(-1, 1)
        ax.set_ylim(1e-5, 3)
        ax.legend(fontsize=7, loc="lower left")
        ax.grid(alpha=0.3)
    fig.suptitle("Absolute error against arcsin(y): the error jumps as soon as y leaves the training range")
    fig.savefig(path, dpi=100)


def plot_training_curves(results: dict, noninv: list, config: InversionConfig, path: Path):
    fig, axes = _figure(len(results) + 1, width=4.0, height=3.6)
    epochs = np.arange(1, config.epochs + 1)
    for ax, (name, runs) in zip(axes[0], results.items()):
        for i, run in enumerate(runs):
            ax.semilogy(epochs, run["curves"]["losses"], color=_seed_color(i), lw=1,
                        label=f"seed {run['metrics']['seed']}")
        ax.set_title(f"{name}: x ~ U[-1, 1]", fontsize=10)
    ax = axes[0][-1]
    for i, run in enumerate(noninv):
        ax.semilogy(epochs, run["curves"]["losses"], color=_seed_color(i), lw=1, label=f"seed {run['metrics']['seed']}")
    ax.axhline(BAYES_MSE, color="black", ls="--", lw=1, label=f"floor E[Var(x|y)] = pi²/12 = {BAYES_MSE:.3f}")
    name = architecture_name(config.noninvertible_hidden, config.noninvertible_activation)
    ax.set_title(f"{name}: x ~ U[-pi, pi] (non-invertible)", fontsize=10)
    for ax in axes[0]:
        ax.set_xlabel("epoch (full-batch Adam step)")
        ax.set_ylabel("training MSE")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3, which="both")
    fig.suptitle("Training curves (lr cosine-decayed to 0); a flat curve from the start is a stuck seed")
    fig.savefig(path, dpi=100)


def plot_mse_per_seed(results: dict, summary: dict, path: Path):
    """One dot per seed: the spread between seeds is the point (dead ReLU units)."""
    fig, axes = _figure(1, width=7.5, height=4.2)
    ax = axes[0][0]
    names = list(results)
    for j, name in enumerate(names):
        for key, marker, dx, color, label in (
            ("mse_in_range", "o", -0.12, "tab:blue", "in range [-0.84, 0.84]"),
            ("mse_out_of_range", "^", 0.12, "tab:red", "out of range, 0.84 < |y| <= 1"),
        ):
            vals = [run["metrics"][key] for run in results[name]]
            ax.scatter(np.full(len(vals), j + dx), vals, marker=marker, color=color, alpha=0.75, zorder=3,
                       label=label if j == 0 else None)
            ax.hlines(summary[name][key]["mean"], j + dx - 0.1, j + dx + 0.1, color=color, lw=2)
            for v, run in zip(vals, results[name]):
                ax.annotate(str(run["metrics"]["seed"]), (j + dx, v), xytext=(5, -3), textcoords="offset points",
                            fontsize=7)
    ax.axhline(FAILED_MSE, color="gray", ls=":", lw=1, label=f"'failed seed' threshold {FAILED_MSE:g}")
    ax.set_yscale("log")
    ax.set_xticks(range(len(names)), names)
    ax.set_xlim(-0.6, len(names) - 0.4)
    ax.set_ylabel("MSE against arcsin(y)  (dash: mean)")
    ax.set_title("MSE per seed (numbers: seeds)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both", axis="y")
    fig.savefig(path, dpi=100)


def plot_extrapolation(results: dict, summary: dict, path: Path):
    """Top: y in [-1.5, 1.5], where arcsin stops existing at |y| = 1. Bottom: zoomed out to |y| = 10."""
    fig, axes = _figure(len(results), nrows=2, width=4.6, height=4.0)
    inside = np.abs(GRID_WIDE) <= 1
    for col, (name, runs) in enumerate(results.items()):
        s = summary[name]
        for row, (grid, key, lim) in enumerate(((GRID_WIDE, "pred_wide", Y_WIDE), (GRID_FAR, "pred_far", Y_FAR))):
            ax = axes[row][col]
            _shade_training_range(ax, label=row == 0)
            for sign in (-1, 1):
                ax.axvspan(sign * 1.0, sign * lim, color="gray", alpha=0.15, lw=0,
                           label="|y| > 1: arcsin undefined" if sign == 1 and row == 0 else None)
            ax.axhline(math.pi / 2, color="black", ls=":", lw=1, label="±pi/2: range of arcsin" if row == 0 else None)
            ax.axhline(-math.pi / 2, color="black", ls=":", lw=1)
            ax.plot(GRID_WIDE[inside], np.arcsin(GRID_WIDE[inside]), color="black", lw=2.5, alpha=0.6,
                    label="arcsin(y)" if row == 0 else None)
            for i, run in enumerate(runs):
                ax.plot(grid, run["curves"][key], color=_seed_color(i), lw=1.2,
                        label=f"seed {run['metrics']['seed']}" if row == 0 else None)
            ax.set_xlim(-lim, lim)
            ax.set_xlabel("y")
            ax.set_ylabel("x = f(y)")
            ax.grid(alpha=0.3)
        axes[0][col].set_ylim(-2.6, 2.6)
        axes[0][col].set_title(
            f"{name}\nMSE for 0.84<|y|<=1: {_fmt(s['mse_out_of_range']['mean'])}; "
            f"|f(±1.5)| = {_fmt(s['abs_prediction_at_pm1.5']['mean'], '.2f')}", fontsize=9)
        axes[0][col].legend(fontsize=6.5, loc="upper left")
        axes[1][col].set_ylim(-12, 12)
        axes[1][col].set_title(
            "zoomed out: |slope| at |y|=10 / |slope| at edge of data\n"
            f"= {_fmt(s['slope_ratio_at_10']['median'], '.3f')} (median over seeds)",
            fontsize=9)
    fig.suptitle("Outside the data: no net follows arcsin up to ±pi/2 at |y| = 1, and all of them answer where "
                 "arcsin\nis undefined (|y| > 1, gray); far out a ReLU net is a straight line, a tanh net goes flat")
    fig.savefig(path, dpi=100)


def plot_noninvertible(noninv: list, check: dict, config: InversionConfig, path: Path):
    fig, axes = _figure(2, width=6.0, height=4.6)
    ax = axes[0][0]
    c0 = noninv[0]["curves"]
    ax.scatter(c0["train_y"], c0["train_x"], s=3, color="gray", alpha=0.25, label="training samples (y, x)")
    y_pos = GRID_UNIT[GRID_UNIT > 0]
    y_neg = GRID_UNIT[GRID_UNIT < 0]
    ax.plot(GRID_UNIT, np.arcsin(GRID_UNIT), color="tab:green", ls="--", lw=1.2,
            label="arcsin(y): the principal inverse")
    for y_half, sign in ((y_pos, 1), (y_neg, -1)):
        ax.plot(y_half, np.full_like(y_half, sign * math.pi / 2), color="black", lw=3, alpha=0.7,
                label="E[x | y] = sign(y)·pi/2 (closed form)" if sign == 1 else None)
    ax.plot(check["bin_centers"], check["bin_means"], "o", ms=4, color="tab:orange",
            label=f"E[x | y] by binning {check['num_samples']:,} samples")
    for i, run in enumerate(noninv):
        ax.plot(GRID_UNIT, run["curves"]["pred_unit"], color=_seed_color(i), lw=1.2,
                label=f"net, seed {run['metrics']['seed']}")
    ax.set_xlabel("y = sin(x)")
    ax.set_ylabel("x")
    ax.set_xlim(-1.02, 1.02)
    ax.set_title("x ~ U[-pi, pi]: the MSE-optimal f(y) is the conditional mean, not an inverse", fontsize=10)
    ax.legend(fontsize=7, loc="upper left")
    ax.grid(alpha=0.3)
    ax = axes[0][1]
    epochs = np.arange(1, config.epochs + 1)
    for i, run in enumerate(noninv):
        ax.plot(epochs, run["curves"]["losses"], color=_seed_color(i), lw=1, label=f"seed {run['metrics']['seed']}")
    ax.axhline(BAYES_MSE, color="black", ls="--", lw=1, label=f"best possible: pi²/12 = {BAYES_MSE:.3f}")
    ax.axhline(VAR_X, color="gray", ls=":", lw=1, label=f"best constant (0): pi²/3 = {VAR_X:.2f}")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training MSE")
    ax.set_title("Training MSE stops at the irreducible spread E[Var(x | y)]", fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, which="both")
    fig.savefig(path, dpi=100)


# ---------------------------------------------------------------------------------------------------------------
# 7. The report (report.md), with the measured numbers
# ---------------------------------------------------------------------------------------------------------------
def format_summary(metrics: dict) -> str:
    """A short plain-text table for the terminal."""
    lines = [f"{'architecture':<18} {'MSE in range (mean ± std)':<28} {'MSE 0.84<|y|<=1 (mean ± std)':<30} "
             "failed seeds"]
    for name, a in metrics["architectures"].items():
        i, o = a["summary"]["mse_in_range"], a["summary"]["mse_out_of_range"]
        lines.append(f"{name:<18} {i['mean']:.2e} ± {i['std']:.2e}{'':<8} {o['mean']:.2e} ± {o['std']:.2e}{'':<10} "
                     f"{a['failed_seeds']}")
    n = metrics["noninvertible"]
    lines.append(
        f"non-invertible ({n['architecture']}): MSE vs E[x|y] (|y|>={JUMP_MARGIN}) "
        f"{n['summary']['mse_vs_conditional_mean_away_from_0']['mean']:.2e}, vs arcsin "
        f"{n['summary']['mse_vs_arcsin_away_from_0']['mean']:.2f}; test MSE "
        f"{n['summary']['test_mse']['mean']:.3f} (floor pi^2/12 = {BAYES_MSE:.3f})"
    )
    lines.append(f"runtime {metrics['runtime_s']:.1f} s; wrote {metrics['output_dir']}")
    return "\n".join(lines)


def _pm(s: dict, spec: str = ".1e") -> str:
    return f"{_fmt(s['mean'], spec)} ± {_fmt(s['std'], spec)}"


def _in_range_bullet(name: str, a: dict) -> str:
    per_seed, failed = a["per_seed"], a["failed_seeds"]
    ok = [p["mse_in_range"] for p in per_seed if p["seed"] not in failed]
    text = f"- {name}: {len(per_seed) - len(failed)} of {len(per_seed)} seeds learn it"
    if ok:
        text += f" (MSE {min(ok):.1e} to {max(ok):.1e})"
    if failed:
        worst = max(p["mse_in_range"] for p in per_seed if p["seed"] in failed)
        text += f"; failed seeds {failed} (MSE up to {worst:.2f})"
    dead = [p["dead_units_after_training"] for p in per_seed]
    if dead[0] is not None:
        units = sum(a["hidden"])
        text += f"; dead ReLU units (of {units}) after training, per seed: {dead}"
    return text + "."


def _outside_bullet(name: str, a: dict) -> str:
    s = a["summary"]
    ratio = (s["mse_out_of_range"]["median"] or 0) / max(s["mse_in_range"]["median"] or 0, 1e-12)
    f15 = s["abs_prediction_at_pm1.5"]["mean"]
    r10 = s["slope_ratio_at_10"]["median"]  # median: a failed seed should not decide the verdict
    far = "n/a (flat at the edge)" if r10 is None else (
        f"median slope ratio {r10:.3f}: it goes flat (saturates)" if r10 < 0.05
        else f"median slope ratio {r10:.2f}: it keeps going in a straight line")
    side = "beyond" if f15 > math.pi / 2 else "within"
    return (f"- {name}: MSE for 0.84 < abs(y) <= 1 is {ratio:,.0f}x the in-range MSE (medians); "
            f"abs(f(±1.5)) = {f15:.2f}, {side} pi/2; far out (abs(y) = 10) {far}.")


def write_report(metrics: dict, path: Path):
    """report.md: the lab's four discussion points, answered with this run's numbers."""
    cfg = metrics["config"]
    archs = metrics["architectures"]
    n = metrics["noninvertible"]
    ns = n["summary"]
    chk = n["conditional_mean_check"]
    rows = []
    for name, a in archs.items():
        s = a["summary"]
        rows.append(
            f"| {name} | {_pm(s['mse_in_range'])} | {_fmt(s['mse_in_range']['median'])} | "
            f"{_fmt(s['mse_in_range']['min'])} / {_fmt(s['mse_in_range']['max'])} | {len(a['failed_seeds'])} of "
            f"{len(a['per_seed'])} | {_pm(s['mse_out_of_range'])} |"
        )
    ext_rows = []
    for name, a in archs.items():
        s = a["summary"]
        ext_rows.append(
            f"| {name} | {_pm(s['abs_error_at_pm1'], '.2f')} | {_pm(s['abs_prediction_at_pm1.5'], '.2f')} | "
            f"{_pm(s['slope_ratio_at_1.5'], '.2f')} | {_pm(s['slope_ratio_at_10'], '.3f')} | "
            f"{_pm(s['abs_prediction_at_pm10'], '.1f')} |"
        )
    nl = "\n"
    # handout: replace with: text = "# Part 1\n\nYour answers to the four questions; the numbers are in metrics.json.\n"
    text = f"""# Part 1: can an MLP learn x = arcsin(y)?

Produced by `sd_course.inversion.arcsin` in {metrics['runtime_s']:.1f} s. Settings: {cfg['num_samples']} samples
x ~ U[-1, 1], y = sin(x); full-batch Adam, lr {cfg['lr']:g} cosine-decayed to 0 over {cfg['epochs']} epochs;
seeds {', '.join(map(str, cfg['seeds']))} (each seed draws its own data and initialisation). MSE is against the
true arcsin(y) on a dense grid of y; "mean ± std" is over seeds (sample std). A seed counts as failed when its
in-range MSE is above {FAILED_MSE:g}; predicting x = 0 everywhere scores {metrics['baseline_mse_predict_zero']:.3f}.

## 1. How well does the network learn the inverse?

| network | in-range MSE, mean ± std | median | min / max | failed seeds | MSE for 0.84 < abs(y) <= 1 |
|---|---|---|---|---|---|
{nl.join(rows)}

{nl.join(_in_range_bullet(name, a) for name, a in archs.items())}

A ReLU unit whose input is negative for every training y outputs 0 and gets zero gradient, so it never comes back.
With 3 units per layer, losing a few leaves a coarse piecewise-linear curve (an MSE floor even for good seeds)
or a constant (a failed seed), so the mean is dominated by the failures: look at the median and the count.
Figures: `inverse_fit.png`, `inverse_error.png`, `mse_per_seed.png`, `training_curves.png`.

## 2. What happens outside [-1, 1]?

| network | abs(f(±1) - arcsin(±1)) | abs(f(±1.5)) | slope ratio at abs(y)=1.5 | slope ratio at abs(y)=10 | abs(f(±10)) |
|---|---|---|---|---|---|
{nl.join(ext_rows)}

(mean ± std over seeds of the mean over the two sides. Slope ratio: abs(slope there) / abs(slope at the edge of
the training data, abs(y) = 0.84), i.e. how much slope the net keeps far out; nets flat at the edge are left out.)

{nl.join(_outside_bullet(name, a) for name, a in archs.items())}

Between 0.84 and 1 arcsin exists, but the net never saw it, and arcsin's slope 1/sqrt(1 - y²) blows up at 1:
the net falls short of arcsin(±1) = ±pi/2. Beyond abs(y) = 1 arcsin is undefined, yet the net answers anyway,
with nothing to say it is out of its depth. A ReLU net is piecewise linear, so past its last kink it is exactly a
straight line; every tanh unit saturates, so a tanh net ends up flat. Figure: `extrapolation.png`.

## 3. A non-invertible function, and what it implies for inverting complex functions

x ~ U[-pi, pi]: every y != 0 has two preimages, arcsin(y) and sign(y)·pi - arcsin(y), equally likely, so
E[x | y] = sign(y)·pi/2, and the best possible MSE is E[Var(x | y)] = pi²/12 = {BAYES_MSE:.3f}.
Numerical check: binning {chk['num_samples']:,} samples into {chk['num_bins']} bins of y, the bin means differ
from sign(y)·pi/2 by at most {chk['max_abs_diff_bin_mean_vs_closed_form']:.3f} (at most
{chk['max_abs_z_score']:.1f} standard errors); the closed form's MSE on those samples is
{chk['empirical_mse_of_closed_form']:.3f}.

The {n['architecture']} net ({cfg['noninvertible_num_samples']} samples, same seeds), on a grid of y with
abs(y) >= {JUMP_MARGIN} (a continuous net needs room to jump from -pi/2 to pi/2):
MSE against E[x | y] = {_pm(ns['mse_vs_conditional_mean_away_from_0'])} (max deviation
{_pm(ns['max_abs_dev_from_conditional_mean_away_from_0'], '.2f')}), against the principal inverse arcsin(y)
= {_pm(ns['mse_vs_arcsin_away_from_0'], '.2f')}. Test MSE on fresh samples {_pm(ns['test_mse'], '.3f')} vs the floor
{BAYES_MSE:.3f} (a constant prediction scores {VAR_X:.2f}).
The net learns the average of the two branches, and sin(pi/2) = 1: its answer is a preimage of y = ±1 only.
So a network inverts a function only where it saw data, only as well as its capacity (and its luck with the
initialisation) allows, and only where the function is one-to-one; where several x give the same y, the MSE
makes it predict the mean of the preimages, which need not be a preimage at all. Figure: `noninvertible.png`.

## 4. How does this relate to diffusion models?

Adding noise, x_0 -> x_t, is the function a diffusion model inverts, and it is many-to-one: many clean images
are compatible with one noisy x_t. A denoiser trained with the MSE predicts E[x_0 | x_t], exactly as our net
predicts E[x | y]: a blurry average of the compatible images, not one of them. Diffusion models therefore do not
invert the noise in one shot; they take many small steps, each undoing a little noise, where the distribution
of x_(t-1) given x_t is narrow and close to Gaussian (close to invertible, like arcsin on [-1, 1]), and they
sample at each step instead of taking the average, so they end on one sharp image.
"""
    # handout: end
    path.write_text(text)


# ---------------------------------------------------------------------------------------------------------------
# 8. The whole experiment
# ---------------------------------------------------------------------------------------------------------------
def _finite_or_none(obj):
    """NaN/inf (a diverged run) -> None, so that metrics.json stays valid JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_or_none(v) for v in obj]
    return obj


def architectures(config: InversionConfig) -> list:
    """The main network first, then the comparisons, without duplicates."""
    archs = []
    for arch in ((config.hidden, config.activation), *config.comparisons):
        if arch not in archs:
            archs.append(arch)
    return archs


def run_inversion(config: InversionConfig | None = None, **overrides) -> dict:
    """Train, evaluate, plot and report. Returns the metrics (also written to ``metrics.json``)."""
    if config is None:
        config = InversionConfig(**overrides)
    elif overrides:
        raise InputError("pass either an InversionConfig or keyword overrides to run_inversion, not both")
    out = prepare_output_dir(config.output_dir)
    start = time.perf_counter()
    archs = architectures(config)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tensors of 1000 x 32: handing work to other threads costs more than it saves
    try:
        bar = tqdm(total=len(config.seeds) * (len(archs) + 1), desc="inversion runs", disable=not config.progress)
        results = {}
        for hidden, activation in archs:
            name = architecture_name(hidden, activation)
            results[name] = []
            for seed in config.seeds:
                bar.set_postfix_str(f"{name}, seed {seed}")
                results[name].append(train_and_evaluate(hidden, activation, seed, config))
                bar.update()
        noninv = []
        for seed in config.seeds:
            bar.set_postfix_str(f"non-invertible, seed {seed}")
            noninv.append(train_noninvertible(seed, config))
            bar.update()
        bar.close()
    finally:
        torch.set_num_threads(threads)
    check = check_conditional_mean()

    # Summaries over seeds.
    summary = {}
    arch_metrics = {}
    for (hidden, activation), (name, runs) in zip(archs, results.items()):
        per_seed = [r["metrics"] for r in runs]
        keys = ("mse_in_range", "mse_out_of_range", "final_train_loss", "abs_error_at_pm1",
                "abs_prediction_at_pm1.5", "abs_prediction_at_pm10", "slope_ratio_at_1.5", "slope_ratio_at_10")
        summary[name] = {k: summarize([p[k] for p in per_seed]) for k in keys}
        arch_metrics[name] = {
            "hidden": list(hidden),
            "activation": activation,
            "summary": summary[name],
            "failed_seeds": [p["seed"] for p in per_seed if p["mse_in_range"] > FAILED_MSE],
            "per_seed": per_seed,
        }
    noninv_per_seed = [r["metrics"] for r in noninv]
    noninv_keys = ("final_train_loss", "test_mse", "mse_vs_conditional_mean_away_from_0",
                   "max_abs_dev_from_conditional_mean_away_from_0", "mse_vs_arcsin_away_from_0",
                   "mse_vs_conditional_mean_all_y")
    cfg = asdict(config)
    cfg["output_dir"] = str(config.output_dir)
    metrics = {
        "config": cfg,
        "output_dir": str(out),
        "runtime_s": None,
        "grids": {"in_range": [Y_LOW, Y_HIGH, len(GRID_IN)], "out_of_range": "[-1, sin(-1)) U (sin(1), 1], 400 points",
                  "beyond_domain": [-Y_WIDE, Y_WIDE]},
        "baseline_mse_predict_zero": float(np.mean(np.arcsin(GRID_IN) ** 2)),
        "failed_mse_threshold": FAILED_MSE,
        "architectures": arch_metrics,
        "noninvertible": {
            "architecture": architecture_name(config.noninvertible_hidden, config.noninvertible_activation),
            "x_range": [-math.pi, math.pi],
            "closed_form": "E[x|y] = sign(y) * pi/2",
            "bayes_mse_pi2_over_12": BAYES_MSE,
            "var_x_pi2_over_3": VAR_X,
            "jump_margin": JUMP_MARGIN,
            "conditional_mean_check": check,
            "summary": {k: summarize([p[k] for p in noninv_per_seed]) for k in noninv_keys},
            "per_seed": noninv_per_seed,
        },
    }

    plot_inverse_fit(results, summary, out / "inverse_fit.png")
    plot_inverse_error(results, out / "inverse_error.png")
    plot_mse_per_seed(results, summary, out / "mse_per_seed.png")
    plot_training_curves(results, noninv, config, out / "training_curves.png")
    plot_extrapolation(results, summary, out / "extrapolation.png")
    plot_noninvertible(noninv, check, config, out / "noninvertible.png")
    metrics["runtime_s"] = round(time.perf_counter() - start, 2)
    write_result(out / "metrics.json", _finite_or_none(metrics))  # with the command, machine and date
    write_report(metrics, out / "report.md")
    return metrics
