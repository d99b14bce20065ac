"""The fusion step as it was before it was batched: one gather, roll, mask and scatter per (image, pair), in
the order of the batcher's calls. The reference the batched step (`fusion`) must equal."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from semanticdraw_cli import control
from semanticdraw_cli.batching import Batching, chunks, padding
from semanticdraw_cli.fusion import FusionSetup, conditioning
from semanticdraw_cli.schedule import draw, renoise
from semanticdraw_cli.step_index import centring_shift
from semanticdraw_cli.tiles import window_index


def at(window, canvas: torch.Tensor) -> tuple:
    index = window_index(window, *canvas.shape[-2:])
    return index if isinstance(index[0], slice) else tuple(torch.from_numpy(i) for i in index)


def sample_per_pair(denoiser, setup: FusionSetup, x: torch.Tensor, generators: Sequence[torch.Generator]):
    """Every step's (canvas latent, fused x0), pair by pair."""
    batching = Batching(setup.max_batch, setup.pad_batches)
    shifts = {}
    if setup.method == "semanticdraw":
        masks = setup.masks.cpu() > 0
        for i in range(min(setup.bootstrap_steps, setup.table.steps)):
            for j, pair in enumerate(setup.plan[i]):
                shifts[i, j] = centring_shift(masks[i, pair.region][at(pair.window, masks)])
    states = []
    for i in range(setup.table.steps):
        step = _multidiffusion_step if setup.method == "multidiffusion" else _fusion_step
        x, x0 = step(denoiser, setup, x, i, generators, batching, shifts)
        states.append((x, x0))
    return states


def _predict(denoiser, setup, step, inputs, pairs, batching, shifts=None):
    outputs, start = [], 0
    while start < len(inputs):
        end = min(start + batching.size, len(inputs))
        try:
            out = _call(denoiser, setup, step, inputs[start:end], pairs[start:end], batching,
                        shifts[start:end] if shifts else [])
        except torch.cuda.OutOfMemoryError:
            if end - start == 1:
                raise
            batching.halve(end - start)
            continue
        outputs.append(out)
        start = end
    return torch.cat(outputs)


def _call(denoiser, setup, step, inputs, pairs, batching, shifts):
    count, extra = len(inputs), padding(len(inputs), batching)
    inputs, pairs, shifts = inputs + inputs[-1:] * extra, pairs + pairs[-1:] * extra, shifts + shifts[-1:] * extra
    x0 = denoiser.predict_x0(torch.stack(inputs), setup.table, step, conditioning(setup, pairs, step, shifts))
    return x0[:count]


def _fusion_step(denoiser, setup, x, i, generators, batching, shifts_of):
    table, images = setup.table, len(x)
    a, s = table.signal[i], table.noise[i]
    masks = setup.masks[i]
    bootstrapping = i < setup.bootstrap_steps
    if bootstrapping:
        mix = min(max(setup.bootstrap_mix - i, 0.0), 1.0)
        base = setup.base if setup.base is not None else x
        eps = draw(generators, tuple(x.shape[1:]), x.device)
        if setup.region_noise is not None:
            eps = setup.region_noise.compose(eps, i)
        bg = a * (mix * setup.white + (1.0 - mix) * base) + s * eps
    num, den = torch.zeros_like(x), torch.zeros_like(x[:, :1])
    items = [(k, j) for k in range(images) for j in range(len(setup.plan[i]))]
    for chunk in chunks(items, setup.plan[i], batching.size, setup.variants, control.call_key(setup.controls, i)):
        pairs = [setup.plan[i][j] for _, j in chunk]
        inputs, shifts = [], []
        for (k, j), pair in zip(chunk, pairs):
            rows, cols = at(pair.window, x)
            x_rv = x[k][:, rows, cols]
            if bootstrapping:
                m = masks[pair.region][rows, cols]
                x_rv = m * x_rv + (1.0 - m) * bg[k][:, rows, cols]
                x_rv = torch.roll(x_rv, shifts_of[i, j], dims=(-2, -1))
                shifts.append(shifts_of[i, j])
            inputs.append(x_rv)
        x0 = _predict(denoiser, setup, i, inputs, pairs, batching, shifts).float()
        for n, ((k, j), pair) in enumerate(zip(chunk, pairs)):
            rows, cols = at(pair.window, x)
            w = masks[pair.region][rows, cols][None]
            x0_rv = x0[n]
            if bootstrapping:
                x0_rv = torch.roll(x0_rv, (-shifts[n][0], -shifts[n][1]), dims=(-2, -1))
                leak = (x0_rv - bg[k][:, rows, cols]).pow(2).mean(dim=0, keepdim=True)
                w = w * (2.0 * torch.sigmoid(leak / setup.leak_sensitivity) - 1.0)
            w = w * setup.weights[i][j]
            num[k][:, rows, cols] += w * x0_rv
            den[k][:, rows, cols] += w
    x0 = torch.where(den > 0, num / den.clamp_min(1e-12), setup.fill)
    pull = True if setup.pull_to_fill is None else setup.pull_to_fill[i]
    if pull is not False:
        covered = den.clamp(0.0, 1.0)
        pulled = covered * x0 + (1.0 - covered) * setup.fill
        x0 = pulled if pull is True else torch.where(pull, pulled, x0)
    return renoise(x, x0, i, generators, table), x0


def _multidiffusion_step(denoiser, setup, x, i, generators, batching, _shifts):
    table, images = setup.table, len(x)
    last = i == table.steps - 1
    masks = setup.masks[i]
    fresh = None
    if table.stochastic and not last:
        shapes = [(x.shape[1], p.window.height, p.window.width) for p in setup.plan[i]]
        fresh = [[torch.randn(shape, generator=g) for shape in shapes] for g in generators]
    num, x0_num = torch.zeros_like(x), torch.zeros_like(x)
    den = torch.zeros_like(x[:, :1])
    items = [(k, j) for k in range(images) for j in range(len(setup.plan[i]))]
    for chunk in chunks(items, setup.plan[i], batching.size, setup.variants, control.call_key(setup.controls, i)):
        pairs = [setup.plan[i][j] for _, j in chunk]
        inputs = [x[k][(slice(None), *at(p.window, x))] for (k, _), p in zip(chunk, pairs)]
        x0 = _predict(denoiser, setup, i, inputs, pairs, batching).float()
        for n, ((k, j), pair) in enumerate(zip(chunk, pairs)):
            rows, cols = at(pair.window, x)
            if table.stochastic and last:
                stepped = x0[n]
            elif table.stochastic:
                stepped = table.signal[i + 1] * x0[n] + table.noise[i + 1] * fresh[k][j]
            else:
                eps = (inputs[n] - table.signal[i] * x0[n]) / table.noise[i]
                stepped = table.signal[i + 1] * x0[n] + table.noise[i + 1] * eps
            w = masks[pair.region][rows, cols][None] * setup.weights[i][j]
            num[k][:, rows, cols] += w * stepped
            x0_num[k][:, rows, cols] += w * x0[n]
            den[k][:, rows, cols] += w
    fill = setup.fill.expand_as(x)
    passthrough = table.signal[i + 1] * fill + table.noise[i + 1] * (x - table.signal[i] * fill) / table.noise[i]
    x0 = torch.where(den > 0, x0_num / den.clamp_min(1e-12), fill)
    x = torch.where(den > 0, num / den.clamp_min(1e-12), passthrough)
    return x, x0
