"""The refiner's U-Net: a small 2D convolutional network that redraws the atlas region's border.

This is the model of ``model='unet'``, the default of
:func:`bmeviz.region_refine.train_refiner`. The net sees each slice at about 1.2 mm in-plane
(``unet_pixel_mm``; 2x2 means of the 0.6-mm SIJ pixels) as five channels: the T1 of the slice
and of its two neighbours (relative to the marrow under the atlas region, as the boosting
refiner's), the atlas probability, and the signed distance to the atlas region (per 10 mm). It
gives the probability of the drawn region. It is redrawn only within ``band_mm`` of the atlas
border; outside the band the atlas region stands, as with the boosting model.

Training uses random square crops of ``unet_crop_mm``, centred in the border band of each
training atlas's own atlas outline (:func:`~bmeviz.region_refine.train_refiner` makes the
outlines as a new scan would get them). The loss is the cross-entropy inside the band, and the
crops get left-right flips and a random T1 gain. Prediction averages each slice with its mirror
image. It runs with PyTorch on the CPU, with a fixed seed and a fixed thread count
(``unet_threads``): the same folder and parameters give the same weights.

Measured leave-one-out on the 7 SIJ T1 scans (docs/region.md): mean Dice 0.909 with 1200
training steps, the probability smoothed across slices (``unet_smooth_mm``, applied by the
:class:`~bmeviz.region_refine.Refiner`) and the atlases fused where they reach (0.883 with 600
steps and neither) against 0.82 for the boosting refiner and 0.70-0.76 for the atlas region.
That takes about 3 min of training on 2 cores (1200 steps) and 1.5 s to apply. The weights are
kept as NumPy arrays, so a file can be read without PyTorch; applying it needs PyTorch.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np

from .errors import ParameterError

__all__ = ["require_torch", "train_unet", "unet_probability"]

N_CHANNELS = 5  # T1 above, T1, T1 below, atlas probability, signed distance


def require_torch():
    """The torch module, or a ParameterError that says how to get it."""
    try:
        import torch
    except ImportError:
        raise ParameterError("the U-Net refiner needs PyTorch (the CPU build is enough): pip install 'bmeviz[unet]'; "
                             "or train the boosting refiner instead (model='boosting', bmeviz region-refiner "
                             "--model boosting)") from None
    return torch


def factor(spacing, p: dict) -> int:
    """In-plane pixels per net pixel: ``unet_pixel_mm`` in this scan's pixels (at least 1)."""
    return max(1, int(round(float(p["unet_pixel_mm"]) / float(np.mean(spacing[1:])))))


def _down(a: np.ndarray, f: int) -> np.ndarray:
    """Means of ``f`` x ``f`` in-plane blocks (the last two axes; odd edges padded by repetition)."""
    a = np.asarray(a, np.float32)
    if f == 1:
        return a
    h, w = a.shape[-2:]
    a = np.pad(a, [(0, 0)] * (a.ndim - 2) + [(0, -h % f), (0, -w % f)], mode="edge")
    return a.reshape(a.shape[:-2] + (a.shape[-2] // f, f, a.shape[-1] // f, f)).mean((-3, -1))


def channels(x: np.ndarray, fused: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """The net's input, ``(slices, 5, rows, columns)``: normalised T1 ``x`` above, at and below
    each slice, the atlas probability ``fused`` and the signed distance ``sd`` (mm) / 10."""
    above = np.concatenate([x[:1], x[:-1]])
    below = np.concatenate([x[1:], x[-1:]])
    c = np.stack([np.clip(above, 0, 3), np.clip(x, 0, 3), np.clip(below, 0, 3), np.asarray(fused, np.float32),
                  np.clip(sd / 10.0, -1.5, 1.5)], 1)
    return c.astype(np.float32)


def net_input(image: np.ndarray, spacing, fused: np.ndarray, p: dict) -> tuple[np.ndarray, np.ndarray]:
    """The net's channels on its grid (:func:`channels` of the normalised T1, block means) and the
    signed distance (mm) to the atlas region on the scan's grid: the same for training and use."""
    from .region_refine import _normalised, _signed

    sd = _signed(fused, spacing, p)
    return _down(channels(_normalised(image, fused), fused, sd), factor(spacing, p)), sd


def _network(torch, width: int, depth: int):
    """A U-Net: ``depth`` 2x2 poolings, ``width`` features at full size, doubled at each level;
    two 3x3 convolutions with batch norm and ReLU per level; bilinear upsampling."""
    nn = torch.nn

    def block(ci, co):
        return nn.Sequential(nn.Conv2d(ci, co, 3, padding=1, bias=False), nn.BatchNorm2d(co), nn.ReLU(inplace=True),
                             nn.Conv2d(co, co, 3, padding=1, bias=False), nn.BatchNorm2d(co), nn.ReLU(inplace=True))

    class UNet(nn.Module):
        def __init__(self):
            super().__init__()
            ch = [width * 2 ** k for k in range(depth + 1)]
            self.down = nn.ModuleList([block(N_CHANNELS, ch[0])] + [block(ch[k], ch[k + 1]) for k in range(depth)])
            self.up = nn.ModuleList([block(ch[k + 1] + ch[k], ch[k]) for k in reversed(range(depth))])
            self.head = nn.Conv2d(ch[0], 1, 1)

        def forward(self, x):
            skips = []
            for k, level in enumerate(self.down):
                x = level(x if k == 0 else torch.nn.functional.max_pool2d(x, 2))
                skips.append(x)
            x = skips.pop()
            for level in self.up:
                s = skips.pop()
                x = torch.nn.functional.interpolate(x, size=s.shape[-2:], mode="bilinear", align_corners=False)
                x = level(torch.cat([x, s], 1))
            return self.head(x)[:, 0]

    return UNet()


class _threads:
    """``torch.set_num_threads(n)`` for a block, then back (the weights depend on the thread count)."""

    def __init__(self, torch, n: int):
        self.torch, self.n = torch, n

    def __enter__(self):
        self.old = self.torch.get_num_threads()
        self.torch.set_num_threads(self.n)

    def __exit__(self, *exc):
        self.torch.set_num_threads(self.old)


def train_unet(samples: list[tuple[np.ndarray, np.ndarray, np.ndarray]], spacing_mm: float, p: dict,
               say: Callable[[str], None] | None = None) -> dict:
    """Train the net on ``samples``: per atlas outline, its channels, its drawn region (as a
    fraction per net pixel) and its band (bool), all on the net's grid of ``spacing_mm`` pixels.
    Returns the model (a dict of its shape and its weights as NumPy arrays)."""
    torch = require_torch()
    F = torch.nn.functional
    width, depth = int(p["unet_width"]), int(p["unet_depth"])
    iters, batch = int(p["unet_iterations"]), int(p["unet_batch"])
    crop = max(2 ** depth, int(float(p["unet_crop_mm"]) / spacing_mm) // 2 ** depth * 2 ** depth)
    h = crop // 2
    seed = int(p.get("unet_seed", 0))
    rng = np.random.default_rng(seed)
    centres, padded = [], []
    for s, (X, y, band) in enumerate(samples):
        pts = np.argwhere(band)
        if len(pts):
            pts = pts[np.sort(rng.choice(len(pts), min(len(pts), 20000), replace=False))]
            centres.append(np.c_[np.full(len(pts), s), pts])
        pad = ((0, 0), (h, h), (h, h))
        padded.append((np.pad(X, ((0, 0), (0, 0)) + pad[1:]), np.pad(y, pad), np.pad(band.astype(np.float32), pad)))
    if not centres:
        raise ParameterError("the U-Net has nothing to learn: no atlas outline has a border band")
    centres = np.concatenate(centres)
    t0 = time.perf_counter()
    with _threads(torch, int(p["unet_threads"])):
        torch.manual_seed(seed)
        net = _network(torch, width, depth)
        lr = float(p["unet_lr"])
        opt = torch.optim.AdamW(net.parameters(), lr, weight_decay=1e-4)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=iters, pct_start=0.1)
        net.train()
        for it in range(iters):
            xb, yb, bb = [], [], []
            for s, z, r, c in centres[rng.integers(len(centres), size=batch)]:
                X, y, b = padded[s]
                xs, ys, bs = X[z, :, r:r + crop, c:c + crop], y[z, r:r + crop, c:c + crop], b[z, r:r + crop, c:c + crop]
                if rng.random() < 0.5:  # left-right mirror: the joint is nearly symmetric
                    xs, ys, bs = xs[..., ::-1], ys[..., ::-1], bs[..., ::-1]
                xs = xs.copy()
                xs[:3] *= np.float32(np.exp(rng.normal(0.0, 0.1)))  # the marrow reference is never exact
                xb.append(xs)
                yb.append(ys)
                bb.append(bs)
            x = torch.from_numpy(np.ascontiguousarray(np.stack(xb)))
            y, b = (torch.from_numpy(np.ascontiguousarray(np.stack(v))) for v in (yb, bb))
            loss = (F.binary_cross_entropy_with_logits(net(x), y, reduction="none") * b).sum() / b.sum().clamp(min=1)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            if say and ((it + 1) % 200 == 0 or it + 1 == iters):
                say(f"U-Net: iteration {it + 1}/{iters}, loss {loss.item():.3f}, {time.perf_counter() - t0:.0f} s")
    state = {k: v.detach().cpu().numpy().copy() for k, v in net.state_dict().items()}
    return {"kind": "unet", "width": width, "depth": depth, "state": state}


def unet_probability(model: dict, X: np.ndarray, shape, spacing, p: dict) -> np.ndarray:
    """The net's probability (float32) on the scan's grid of ``shape``, from its input ``X``
    (:func:`net_input`)."""
    torch = require_torch()
    f = factor(spacing, p)
    with _threads(torch, int(p["unet_threads"])), torch.no_grad():
        net = _network(torch, int(model["width"]), int(model["depth"]))
        net.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in model["state"].items()})
        net.eval()
        out = []
        for z in range(0, len(X), 5):
            xb = torch.from_numpy(np.ascontiguousarray(X[z:z + 5]))
            prob = torch.sigmoid(net(xb))
            if p.get("unet_flip", True):  # the mean with the mirrored slice
                prob = 0.5 * (prob + torch.sigmoid(net(xb.flip(-1))).flip(-1))
            if f > 1:
                prob = torch.nn.functional.interpolate(prob[:, None], scale_factor=f, mode="bilinear",
                                                       align_corners=False)[:, 0]
            out.append(prob.numpy()[:, : shape[1], : shape[2]])
    return np.concatenate(out).astype(np.float32)
