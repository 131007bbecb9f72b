"""What the network predicts at each noise level, and how far its loss is from the lowest possible one.

    sd-course predictions --output_dir figures/predictions/
    sd-course predictions --model runs/mnist --train_dataset ../shared/data/mnist:train \\
        --test_dataset ../shared/data/mnist:test --output_dir figures/predictions/

writes (docs/sampling.md shows and explains each):

    predictions.png    one digit, one noise draw, several t: x_t, the predicted v, the eps and x_0 it implies, the
                       true v and eps, and the x_0 that the exact denoiser of the training digits predicts
    loss_per_t.png     the network's loss per t against that exact denoiser's, on training and on unseen digits
    predictions.json   the numbers of both figures, with their provenance (sd_course/core/provenance.py)

Part 1, what a v-prediction network outputs (Salimans & Ho 2022, "Progressive distillation", section 4 and
appendix D). Write ``c = sqrt(abar_t)`` and ``s = sqrt(1 - abar_t)`` (so c^2 + s^2 = 1, c = cos phi_t):

    1. x_t = c x_0 + s eps                  the forward process: ``scheduler.add_noise``
    2. v   = c eps - s x_0                  the training target: ``scheduler.get_velocity`` (same signs)
    3. v_hat = model(x_t, t)                what the shipped network outputs (``prediction_type`` v_prediction)
    4. x0_hat  = c x_t - s v_hat            (x_t, v) is (x_0, eps) rotated by the angle phi_t:
    5. eps_hat = s x_t + c v_hat            [x_t; v] = [[c, s], [-s, c]] [x_0; eps]; a rotation is undone by its
                                            transpose, [x_0; eps] = [[c, -s], [s, c]] [x_t; v]. With the true v,
                                            4 and 5 give x_0 and eps back exactly (the tests check it).
    6. the errors: eps - eps_hat = c (v - v_hat) and x_0 - x0_hat = -s (v - v_hat), so
       ||v - v_hat||^2 = ||eps - eps_hat||^2 / abar = (1 + 1/SNR_t) ||eps - eps_hat||^2
                       = ||x_0 - x0_hat||^2 / (1 - abar) = (1 + SNR_t) ||x_0 - x0_hat||^2,   SNR_t = abar / (1 - abar).

Every loss here is the per-pixel MSE of v_hat against v: the shipped model's training objective (``snr_gamma``
none). Multiply by abar_t for the eps-MSE, by 1 - abar_t for the x_0-MSE (step 6; predictions.json records both
factors). A model of another ``prediction_type`` is converted to v first (``predicted_v``).

Part 2, the lowest loss any function can reach. A training set of K images is the distribution
``p(x_0) = (1/K) sum_k delta(x_0 - mu_k)``, a Gaussian mixture with zero widths, whose exact denoiser
``sd_course.pixel.analytic.GaussianMixtureDenoiser`` computes (``empirical_denoiser``):

    7. r_k(x_t) = softmax_k( -||x_t - c mu_k||^2 / (2 s^2) )      which training image made x_t (log-sum-exp)
    8. E[x_0 | x_t] = sum_k r_k mu_k,   E[v | x_t] = (c x_t - E[x_0 | x_t]) / s        (step 4 solved for v)
    9. for any function f and any x_t, with v_k = (c x_t - mu_k) / s the v that image k would imply:
       E[||v - f(x_t)||^2 | x_t] = sum_k r_k ||v_k - f||^2 = sum_k r_k ||v_k - E[v | x_t]||^2 + ||E[v | x_t] - f||^2

so ``E[v | x_t]`` is below every other function at every x_t (``expected_loss_given_x_t``), hence in the training
objective ``E_{x_0, eps} ||v - f(x_t)||^2`` over those K images: the minimum the network is trained toward. The loss
curve measures it and the shipped network on the same draws (x_0, eps), on digits of the K and on other digits.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from matplotlib.colors import Normalize

from sd_course.core.data import load_images, to_model_range
from sd_course.core.device import resolve_device
from sd_course.core.errors import InputError, check_positive_int
from sd_course.core.images import check_output_dir
from sd_course.core.plots import _new_figure, _save_figure, _show, parse_timesteps
from sd_course.core.provenance import relative_to_root, write_result
from sd_course.pixel.analytic import GaussianMixtureDenoiser
from sd_course.pixel.pipeline import default_model_path, load_pipeline, x0_from_model_output

PREDICTION_TIMESTEPS = "0,50,150,300,500,700,850,999"
LOSS_TIMESTEPS = "0,10,25,50,100,200,300,400,500,700,850,999"
SIGNED_RANGE = 3.0  # v and eps are drawn on a blue-white-red scale from -3 to 3
LOSS_FLOOR = 1e-8  # the lowest loss drawn on the log axis


# ----------------------------------------------------------------------------------------------------------------
# Steps 1-6: the quantities at one t
# ----------------------------------------------------------------------------------------------------------------


def _column(alpha_bar, like: torch.Tensor) -> torch.Tensor:
    """``alpha_bar`` (a number or one per image) shaped to broadcast over (N, C, H, W), in float64."""
    alpha_bar = torch.as_tensor(alpha_bar, dtype=torch.float64, device=like.device)
    return alpha_bar.reshape(-1, *[1] * (like.ndim - 1))


def split_v(v_hat: torch.Tensor, x_t: torch.Tensor, alpha_bar) -> dict:
    """Steps 4 and 5: ``{"x0": c x_t - s v_hat, "eps": s x_t + c v_hat}`` in float64."""
    abar = _column(alpha_bar, x_t)
    c, s = abar.sqrt(), (1 - abar).sqrt()
    x_t, v_hat = x_t.to(torch.float64), v_hat.to(torch.float64)
    return {"x0": c * x_t - s * v_hat, "eps": s * x_t + c * v_hat}


def predicted_v(model_output: torch.Tensor, x_t: torch.Tensor, alpha_bar, prediction_type: str) -> torch.Tensor:
    """Any model's output as the v it implies (float64): v_hat = (c x_t - x0_hat) / s, step 4 solved for v."""
    if prediction_type == "v_prediction":
        return model_output.to(torch.float64)
    abar = _column(alpha_bar, x_t)
    x0_hat = x0_from_model_output(model_output.to(torch.float64), x_t.to(torch.float64), abar, prediction_type)
    return (abar.sqrt() * x_t.to(torch.float64) - x0_hat) / (1 - abar).sqrt()


def v_mse_factors(alpha_bar: float) -> dict:
    """Step 6: what the v-MSE is multiplied by to give the eps-MSE and the x_0-MSE at this t."""
    return {"eps_mse_per_v_mse": float(alpha_bar), "x0_mse_per_v_mse": float(1 - alpha_bar)}


def _model_v(model, scheduler, x_t: torch.Tensor, t: int, batch_size: int) -> torch.Tensor:
    """The model's output at (x_t, t) as v (float64, on the CPU), in batches; an exact denoiser's at the scheduler's
    own abar_t (its forward clamps abar_t at 2^-24, as the samplers need; the loss must use diffusers' value)."""
    abar = float(scheduler.alphas_cumprod[t])
    if isinstance(model, GaussianMixtureDenoiser):
        return optimal_v(model, x_t, abar)
    prediction_type = model.config.get("prediction_type") or scheduler.config.prediction_type
    device = model.device
    out = []
    with torch.no_grad():
        for start in range(0, len(x_t), batch_size):
            x = x_t[start:start + batch_size]
            y = model(x.to(device, model.dtype), torch.full((len(x),), t, device=device)).sample
            out.append(predicted_v(y.float().cpu(), x, abar, prediction_type))
    return torch.cat(out)


def predictions_at(model, scheduler, x0: torch.Tensor, timesteps: list[int], eps: torch.Tensor,
                   denoiser: GaussianMixtureDenoiser | None = None) -> dict:
    """Steps 1-6 for images ``x0`` (N, C, H, W, model range) and one noise ``eps`` of the same shape, at each t.

    Returns ``{"t", "alpha_bar", "x_t", "v", "eps", "v_hat", "eps_hat", "x0_hat"}`` (tensors (T, N, C, H, W), the
    same eps at every t) and, when ``denoiser`` is given, ``"x0_optimal"``: its E[x_0 | x_t]."""
    record = {k: [] for k in ("x_t", "v", "eps", "v_hat", "eps_hat", "x0_hat", "x0_optimal")}
    alpha_bars = []
    for t in timesteps:
        tt = torch.full((len(x0),), int(t), dtype=torch.long)
        x_t = scheduler.add_noise(x0, eps, tt)  # step 1
        v = scheduler.get_velocity(x0, eps, tt)  # step 2
        abar = float(scheduler.alphas_cumprod[t])
        v_hat = _model_v(model, scheduler, x_t, int(t), len(x0))  # step 3
        implied = split_v(v_hat, x_t, abar)  # steps 4, 5
        for key, value in (("x_t", x_t), ("v", v), ("eps", eps), ("v_hat", v_hat), ("eps_hat", implied["eps"]),
                           ("x0_hat", implied["x0"])):
            record[key].append(value.float())
        if denoiser is not None:
            record["x0_optimal"].append(split_v(_model_v(denoiser, scheduler, x_t, int(t), len(x0)), x_t, abar)["x0"]
                                        .float())
        alpha_bars.append(abar)
    out = {k: torch.stack(v) for k, v in record.items() if v}
    return {"t": [int(t) for t in timesteps], "alpha_bar": alpha_bars, **out}


# ----------------------------------------------------------------------------------------------------------------
# Steps 7-9: the exact denoiser of a training set, and the loss per t
# ----------------------------------------------------------------------------------------------------------------


def empirical_denoiser(images: torch.Tensor, scheduler) -> GaussianMixtureDenoiser:
    """The exact denoiser of the empirical distribution of ``images`` (uint8, or floats in [-1, 1]): one delta
    (a Gaussian of width 0) per image, uniform weights; it outputs what ``scheduler.config.prediction_type`` says."""
    x0 = to_model_range(images) if images.dtype == torch.uint8 else images
    return GaussianMixtureDenoiser(x0, 0.0, scheduler)


def optimal_v(denoiser: GaussianMixtureDenoiser, x_t: torch.Tensor, alpha_bar: float) -> torch.Tensor:
    """Steps 7-8: ``E[v | x_t] = (c x_t - E[x_0 | x_t]) / s`` for x_t (N, C, H, W) at ``alpha_bar``; float64."""
    n = x_t.shape[0]
    x = x_t.reshape(n, -1).to(torch.float64)
    abar = torch.full((n, 1), float(alpha_bar), dtype=torch.float64)
    x0 = denoiser.posterior_mean(x, abar)
    return ((abar.sqrt() * x - x0) / (1 - abar).sqrt()).reshape(x_t.shape)


def expected_loss_given_x_t(prediction_v: torch.Tensor, x_t: torch.Tensor, alpha_bar,
                            denoiser: GaussianMixtureDenoiser) -> torch.Tensor:
    """Step 9: ``E[||v - f(x_t)||^2 | x_t] / D`` for x_t drawn from the denoiser's *training set* (deltas), for each
    image (N,), float64. The average over which training image made x_t is exact, so the exact denoiser's own
    prediction gives the lowest value at every x_t, not only on average."""
    if bool((denoiser.stds != 0).any()):
        raise InputError("expected_loss_given_x_t needs the denoiser of a training set (stds 0: empirical_denoiser)")
    n = x_t.shape[0]
    x = x_t.reshape(n, -1).to(torch.float64)
    abar = torch.as_tensor(alpha_bar, dtype=torch.float64).reshape(-1, 1).expand(n, 1)
    c, s = abar.sqrt(), (1 - abar).sqrt()
    r = denoiser.posterior_weights(x, abar)  # (N, K), step 7
    # ||v_k - f||^2 = ||(c x_t - s f) - mu_k||^2 / s^2: a distance to each training image, without an (N, K, D) tensor
    u = c * x - s * prediction_v.reshape(n, -1).to(torch.float64)
    dist2 = u.pow(2).sum(1, keepdim=True) - 2 * u @ denoiser.means.T + denoiser.means.pow(2).sum(1)[None]
    return (r * dist2.clamp_min(0)).sum(1) / s[:, 0].pow(2) / x.shape[1]


def loss_per_t(model, scheduler, x0: torch.Tensor, timesteps: list[int], eps: torch.Tensor,
               batch_size: int = 64) -> list[float]:
    """The mean per-pixel ``||v - v_hat||^2`` of ``model`` at each t, over the images ``x0`` (N, C, H, W) and their
    noise draws ``eps`` (the same eps at every t, so two models compared on one set see the same draws)."""
    losses = []
    for t in timesteps:
        tt = torch.full((len(x0),), int(t), dtype=torch.long)
        x_t, v = scheduler.add_noise(x0, eps, tt), scheduler.get_velocity(x0, eps, tt)
        v_hat = _model_v(model, scheduler, x_t, int(t), batch_size)
        losses.append(float((v.to(torch.float64) - v_hat).pow(2).mean()))
    return losses


# ----------------------------------------------------------------------------------------------------------------
# The figures
# ----------------------------------------------------------------------------------------------------------------

PREDICTION_ROWS = (
    ("x_t", "x_t", "image"),
    ("v_hat", "v̂ = model(x_t, t)", "signed"),
    ("v", "v (true)", "signed"),
    ("eps_hat", "ε̂ = s x_t + c v̂", "signed"),
    ("eps", "ε (true)", "signed"),
    ("x0_hat", "x̂0 = c x_t − s v̂", "image"),
    ("x0_optimal", "x̂0 of the exact\ndenoiser of the\ntraining set", "image"),
)


def predictions_figure(record: dict, x0: torch.Tensor, index: int = 0, title: str = ""):
    """Rows: the quantities of steps 1-5 (and the exact denoiser's x_0 when recorded) for image ``index``;
    columns: the clean digit, then one per t. v and eps on a signed colour scale, images in grey."""
    rows = [r for r in PREDICTION_ROWS if r[0] in record]
    cols = len(record["t"]) + 1
    fig = _new_figure(1.2 * cols + 2.4, 1.2 * len(rows) + 0.9)
    axes = fig.subplots(len(rows), cols, squeeze=False)
    norm = Normalize(-SIGNED_RANGE, SIGNED_RANGE)
    shown = None
    for r, (key, label, kind) in enumerate(rows):
        axes[r, 0].set_ylabel(label, fontsize=8.5, rotation=0, ha="right", va="center")
        if kind == "image" and key != "x_t":
            _show(axes[r, 0], x0[index])
        else:
            axes[r, 0].set_xticks([])
            axes[r, 0].set_yticks([])
            for spine in axes[r, 0].spines.values():
                spine.set_visible(False)
        for c in range(1, cols):
            value = record[key][c - 1, index]
            if kind == "image":
                _show(axes[r, c], value)
            else:
                shown = axes[r, c].imshow(value[0].numpy(), cmap="RdBu_r", norm=norm, interpolation="nearest")
                axes[r, c].set_xticks([])
                axes[r, c].set_yticks([])
    axes[0, 0].set_title("clean x_0", fontsize=9)
    for c, (t, abar) in enumerate(zip(record["t"], record["alpha_bar"]), start=1):
        mse = float((record["v"][c - 1, index] - record["v_hat"][c - 1, index]).pow(2).mean())
        axes[0, c].set_title(f"t={t}\nᾱ={abar:.5g}\nv-MSE {mse:.3g}", fontsize=8.5)
    if shown is not None:
        fig.colorbar(shown, ax=axes[:, -1], shrink=0.5, label="v, ε (signed)")
    fig.suptitle(title or "What the network predicts at each t (c = √ᾱ, s = √(1−ᾱ))", fontsize=10)
    return fig


def loss_figure(numbers: dict):
    """The loss per t (log scale) of the network and of the exact denoiser, on training and on unseen digits."""
    rows = numbers["loss_per_t"]
    t = [row["t"] for row in rows]
    fig = _new_figure(9.5, 5.0)
    ax = fig.subplots()
    mixture = numbers["mixture"]
    lines = (("network_train", "network, on digits of the training set", "tab:blue", "-", "o"),
             ("optimal_train", "exact denoiser of the training set, on its digits", "tab:orange", "-", "s"),
             ("network_heldout", "network, on digits outside the set", "tab:blue", "--", "o"),
             ("optimal_heldout", "exact denoiser, on digits outside the set", "tab:orange", "--", "s"))
    for key, label, color, style, marker in lines:
        values = [max(row[key], LOSS_FLOOR) for row in rows]  # an exact 0 cannot go on a log axis
        ax.plot(t, values, color=color, ls=style, marker=marker, ms=3.5, label=label)
    ax.set(xlabel="t (training timestep)", yscale="log",
           ylabel="per-pixel MSE of v̂  (log scale)\nε-MSE = ᾱ × this, x0-MSE = (1−ᾱ) × this")
    ax.set_title(f"Loss per t of {numbers['model_name']} and the minimum of the training loss, "
                 f"{numbers['num_samples_per_t']} draws (x_0, ε) per t and line\ntraining set: "
                 f"{mixture['dataset']} ({mixture['num_images']:,} digits); outside: {numbers['heldout_digits']}",
                 fontsize=9.5)
    ax.text(0.01, 0.02, f"values below {LOSS_FLOOR:g} (float rounding of an exact 0) are drawn at {LOSS_FLOOR:g}",
            transform=ax.transAxes, fontsize=7.5, color="grey")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8.5)
    return fig


# ----------------------------------------------------------------------------------------------------------------
# The command
# ----------------------------------------------------------------------------------------------------------------


def _digit_sets(train_dataset: str, test_dataset: str | None, num_digits: int, num_train: int | None,
                generator: torch.Generator) -> dict:
    """The training set of the exact denoiser, ``num_digits`` of its digits, and ``num_digits`` digits outside it
    (the first of a seeded shuffle of ``test_dataset``; without one, of ``train_dataset``, left out of the set)."""
    images, labels = load_images(train_dataset, num_images=num_train, default_split="train", show_progress=False)
    order = torch.randperm(len(images), generator=generator)
    if test_dataset is None:
        if len(images) < 2 * num_digits + 1:
            raise InputError(f"{train_dataset} has {len(images)} images: too few to hold out --num_digits "
                             f"{num_digits} and keep as many for training")
        held, kept = order[:num_digits], order[num_digits:]
        test, test_labels = images[held], labels[held] if labels is not None else None
        held_source = f"{num_digits} digits of {train_dataset} left out of it"
        kept = kept.sort().values
        images, labels = images[kept], labels[kept] if labels is not None else None
        order = torch.randperm(len(images), generator=generator)
    else:
        test, test_labels = load_images(test_dataset, default_split="test", show_progress=False)
        if len(test) < num_digits:
            raise InputError(f"{test_dataset} has {len(test)} images, fewer than --num_digits {num_digits}")
        pick = torch.randperm(len(test), generator=generator)[:num_digits]
        test, test_labels = test[pick], test_labels[pick] if test_labels is not None else None
        held_source = f"{num_digits} digits of {test_dataset}"
    if len(images) < num_digits:
        raise InputError(f"{train_dataset} has {len(images)} images, fewer than --num_digits {num_digits}")
    train_pick = order[:num_digits]
    return dict(mixture=images, train=images[train_pick],
                train_labels=labels[train_pick] if labels is not None else None, heldout=test,
                heldout_labels=test_labels, heldout_source=held_source)


def write_predictions_lesson(model: str | None = None, output_dir: str = "figures/predictions",
                             train_dataset: str = "builtin:mnist-2k:train", test_dataset: str | None = None,
                             num_train: int | None = None, num_digits: int = 32, num_draws: int = 2,
                             timesteps: str = PREDICTION_TIMESTEPS, loss_timesteps: str = LOSS_TIMESTEPS,
                             digit_index: int = 0, seed: int = 0, batch_size: int = 64,
                             device: str | None = "auto") -> dict:
    """Both parts; returns the numbers (also written to ``<output_dir>/predictions.json`` with their provenance).

    ``train_dataset``: the training set of the exact denoiser (its first ``num_train`` images, default all);
    ``test_dataset``: where the unseen digits come from (default: ``num_digits`` digits of ``train_dataset`` left
    out of that set). The loss uses ``num_digits`` x ``num_draws`` draws (x_0, eps) per t and set; Part 1 shows
    unseen digit ``digit_index`` with one eps of ``seed``."""
    for name, value in (("num_digits", num_digits), ("num_draws", num_draws), ("batch_size", batch_size)):
        check_positive_int(value, name)
    if num_train is not None:
        check_positive_int(num_train, "num_train")
    if not 0 <= int(digit_index) < num_digits:
        raise InputError(f"--digit_index must be in 0..{num_digits - 1} (one of the --num_digits other digits), "
                         f"got {digit_index}")
    out = check_output_dir(output_dir)
    model = str(model) if model is not None else default_model_path()
    pipe = load_pipeline(model, device=device)
    unet, scheduler = pipe.unet.eval(), pipe.scheduler
    num_steps = len(scheduler.alphas_cumprod)
    shown_t, loss_t = parse_timesteps(timesteps, num_steps), parse_timesteps(loss_timesteps, num_steps)

    generator = torch.Generator().manual_seed(int(seed))
    sets = _digit_sets(train_dataset, test_dataset, num_digits, num_train, generator)
    denoiser = empirical_denoiser(sets["mixture"], scheduler)

    # Part 1: one unseen digit, one eps, several t
    x0_shown = to_model_range(sets["heldout"][digit_index:digit_index + 1])
    eps_shown = torch.randn(x0_shown.shape, generator=generator)
    record = predictions_at(unet, scheduler, x0_shown, shown_t, eps_shown, denoiser)
    shown_rows = []
    for i, (t, abar) in enumerate(zip(record["t"], record["alpha_bar"])):
        def mse(truth, guess):
            return float((truth - guess).double().pow(2).mean())

        # measured separately, so the JSON shows step 6: eps_mse = abar v_mse, x0_mse = (1 - abar) v_mse
        shown_rows.append(dict(t=t, alpha_bar=abar, v_mse=mse(record["v"][i], record["v_hat"][i]),
                               eps_mse=mse(record["eps"][i], record["eps_hat"][i]),
                               x0_mse=mse(x0_shown, record["x0_hat"][i]),
                               optimal_x0_mse=mse(x0_shown, record["x0_optimal"][i])))

    # Part 2: the loss per t, network and exact denoiser on the same draws
    losses = {}
    for name in ("train", "heldout"):
        x0 = to_model_range(sets[name]).repeat(num_draws, 1, 1, 1)
        eps = torch.randn(x0.shape, generator=generator)
        losses[f"network_{name}"] = loss_per_t(unet, scheduler, x0, loss_t, eps, batch_size)
        losses[f"optimal_{name}"] = loss_per_t(denoiser, scheduler, x0, loss_t, eps, batch_size)
    loss_rows = []
    for i, t in enumerate(loss_t):
        abar = float(scheduler.alphas_cumprod[t])
        loss_rows.append(dict(t=t, alpha_bar=abar, log_snr=math.log(abar / (1 - abar)),
                              **{key: values[i] for key, values in losses.items()}, **v_mse_factors(abar)))

    label = sets["heldout_labels"][digit_index] if sets["heldout_labels"] is not None else None
    numbers = dict(
        model=relative_to_root(model) if Path(model).exists() else model, model_name=model.rstrip("/").split("/")[-1],
        prediction_type=unet.config.get("prediction_type") or scheduler.config.prediction_type,
        loss="per-pixel MSE of v_hat against v = sqrt(abar) eps - sqrt(1 - abar) x_0 (the shipped model's training "
             "objective); eps-MSE = abar x this, x0-MSE = (1 - abar) x this",
        mixture=dict(dataset=train_dataset, num_images=len(sets["mixture"])),
        train_digits=f"{num_digits} digits of the training set (each set: a torch.randperm of --seed)",
        heldout_digits=sets["heldout_source"], num_digits=num_digits, num_draws=num_draws,
        num_samples_per_t=num_digits * num_draws, seed=int(seed),
        loss_per_t=loss_rows,
        predictions=dict(digit_index=int(digit_index), label=int(label) if label is not None else None,
                         rows=shown_rows),
    )
    digit = f"a {label}" if label is not None else "a digit"
    title = (f"{numbers['model_name']}: {digit} from outside the training set, one ε, at each t   (c = √ᾱ, "
             f"s = √(1−ᾱ); last row: the exact denoiser of the {len(sets['mixture']):,} training digits)")
    _save_figure(predictions_figure(record, x0_shown, 0, title), out / "predictions.png")
    _save_figure(loss_figure(numbers), out / "loss_per_t.png")
    inputs = [] if model.startswith("analytic:") else [model]  # the weights: the numbers go stale when they change
    write_result(out / "predictions.json", numbers, inputs=inputs, device=resolve_device(device))
    return numbers


def format_summary(numbers: dict) -> str:
    """The loss table of ``numbers`` as text: what ``sd-course predictions`` prints."""
    lines = [f"per-pixel v-MSE of {numbers['model_name']} and of the exact denoiser of {numbers['mixture']['dataset']} "
             f"({numbers['mixture']['num_images']:,} digits), {numbers['num_samples_per_t']} draws per t and set",
             f"{'t':>5} {'abar':>9}   {'network':>9} {'exact':>9}   {'network':>9} {'exact':>9}",
             f"{'':>5} {'':>9}   {'(training digits)':>19}   {'(other digits)':>19}"]
    for row in numbers["loss_per_t"]:
        lines.append(f"{row['t']:>5} {row['alpha_bar']:>9.3g}   {row['network_train']:>9.3g} "
                     f"{row['optimal_train']:>9.3g}   {row['network_heldout']:>9.3g} {row['optimal_heldout']:>9.3g}")
    return "\n".join(lines)
