"""What gradient matching buys in monocular depth: MiDaS's loss with and without its gradient term, on real data.

    python examples/depth.py                    # about a minute on a quiet 2-core CPU
    python examples/depth.py --steps 1500 --alpha 1.0

The data is the Middlebury 2014 "motorcycle" stereo pair that ships with scikit-image
(``skimage.data.stereo_motorcycle()``: the left image and its ground-truth disparity, 93% valid,
``inf`` in the holes), at half resolution. A depth network's output is simulated from the truth:
the inverse depth under an unknown scale and shift, blurred, with noise. A small refinement
network (the image and that prediction in, a corrected prediction out) is trained on crops from
the left part of the scene and evaluated on the right part, which it never saw: once with
``ScaleAndShiftInvariantLoss(alpha=0)`` (the data term alone), once with ``alpha=0.5`` (plus the
multi-scale gradient-matching term), from the same seed. Both are scored after per-image
least-squares alignment (``scale_and_shift``): AbsRel and the accuracy ``delta < 1.25`` of depth,
and the gradient error: the mean error of the disparity's forward differences between neighbouring
valid pixels (pixels of disparity per pixel), everywhere and at depth edges (where the true
disparities of the two differ by more than ``--edge-step``, 1 px).
It prints a table and writes ``depth.png`` (image, ground truth, input, both predictions, error
maps) and ``results.json`` into ``--output-dir``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from torch import Tensor, nn

import torchgrad
from torchgrad.losses import ScaleAndShiftInvariantLoss, scale_and_shift

# ---------------------------------------------------------------------------------------------
# Data: the motorcycle scene, and a simulated depth network's output.


def gaussian_blur(x: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur of ``(N, C, H, W)`` maps, reflecting at the border."""
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype)
    kernel = torch.exp(-(t**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    c = x.shape[1]
    x = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    x = F.conv2d(x, kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


class Scene:
    """The left image ``(3, H, W)`` in [0, 1], the true disparity ``(1, H, W)`` (0 in the holes), its ``mask``, and
    ``blurred``: the disparity with its holes filled, blurred as a depth network's output is (half resolution)."""

    def __init__(self, blur: float) -> None:
        from skimage.data import stereo_motorcycle

        left, _, disparity = stereo_motorcycle()
        image = torch.from_numpy(np.ascontiguousarray(left)).permute(2, 0, 1).float()[None] / 255
        disparity = torch.from_numpy(np.ascontiguousarray(disparity)).float()[None, None]
        valid = torch.isfinite(disparity)
        self.image = F.avg_pool2d(image, 2)[0]
        # the half-resolution disparity: the mean of the valid values of each 2x2 block, valid if all four are
        total = F.avg_pool2d(torch.where(valid, disparity, 0), 2)
        self.mask = F.avg_pool2d(valid.float(), 2)[0] == 1
        self.disparity = torch.where(self.mask, total[0], 0)
        self.largest = float(self.disparity.max())
        # a network predicts everywhere: fill the holes from their surroundings (normalised convolution), then blur
        weight = gaussian_blur(self.mask[None].float(), 4.0)
        filled = torch.where(self.mask, self.disparity, gaussian_blur(self.disparity[None], 4.0)[0] / weight[0])
        self.blurred = gaussian_blur(filled[None], blur)[0]


def simulated_prediction(blurred: Tensor, g: torch.Generator, noise: float) -> Tensor:
    """What a depth network gives: the blurred inverse depth under a random scale and shift, with noise."""
    scale = math.exp(torch.empty(1).uniform_(-1.0, 1.0, generator=g).item())
    shift = torch.empty(1).uniform_(-0.5, 0.5, generator=g).item() * float(blurred.mean())
    prediction = scale * blurred + shift
    return prediction + noise * float(prediction.std()) * torch.randn(blurred.shape, generator=g)


def network_input(image: Tensor, prediction: Tensor) -> Tensor:
    """The image and the prediction, normalised per sample (its scale and shift are unknown): ``(N, 4, H, W)``."""
    mean = prediction.mean((-2, -1), keepdim=True)
    std = prediction.std((-2, -1), keepdim=True).clamp_min(1e-6)
    return torch.cat([image - 0.5, (prediction - mean) / std], dim=1)


def crops(scene: Scene, columns: slice, count: int, size: int, noise: float, g: torch.Generator):
    """``count`` random crops of the training part: ``(inputs, target disparity, mask)``, flipped at random."""
    width = columns.stop - columns.start
    inputs, targets, masks = [], [], []
    for _ in range(count):
        top = int(torch.randint(scene.image.shape[1] - size + 1, (1,), generator=g))
        left = columns.start + int(torch.randint(width - size + 1, (1,), generator=g))
        window = (slice(None), slice(top, top + size), slice(left, left + size))
        prediction = simulated_prediction(scene.blurred[window], g, noise)
        sample = [
            network_input(scene.image[window][None], prediction[None])[0],
            scene.disparity[window] / scene.largest,  # relative inverse depth, about [0, 1], as MiDaS trains on
            scene.mask[window],
        ]
        if torch.rand(1, generator=g).item() < 0.5:
            sample = [x.flip(-1) for x in sample]
        for bucket, x in zip((inputs, targets, masks), sample):
            bucket.append(x)
    return torch.stack(inputs), torch.stack(targets), torch.stack(masks)


# ---------------------------------------------------------------------------------------------
# The refinement network and its training.


class Refiner(nn.Module):
    """A small dilated CNN: the normalised prediction plus a correction read from the image and the prediction."""

    def __init__(self, width: int = 24, dilations: tuple[int, ...] = (1, 2, 4, 8, 1)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 4
        for d in dilations:
            layers += [nn.Conv2d(channels, width, 3, padding=d, dilation=d), nn.ReLU()]
            channels = width
        layers.append(nn.Conv2d(width, 1, 3, padding=1))
        self.body = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return x[:, 3:] + self.body(x)


def train(alpha: float, scene: Scene, columns: slice, args: argparse.Namespace) -> Refiner:
    torch.manual_seed(args.seed)
    model = Refiner()
    criterion = ScaleAndShiftInvariantLoss(alpha=alpha)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=args.lr, total_steps=args.steps)
    g = torch.Generator().manual_seed(args.seed)  # the same crops, affine maps and noise for both runs
    start = time.perf_counter()
    for step in range(args.steps):
        inputs, target, mask = crops(scene, columns, args.batch_size, args.crop, args.noise, g)
        loss = criterion(model(inputs), target, mask)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if not args.quiet and (step + 1) % max(1, args.steps // 10) == 0:
            print(f"  step {step + 1:5d}/{args.steps}  loss {loss.item():.5f}  ({time.perf_counter() - start:.0f} s)")
    return model.eval()


# ---------------------------------------------------------------------------------------------
# Evaluation, the table and the figure.


def differences(disparity: Tensor) -> Tensor:
    """``(2, H, W)``: the forward differences ``(dy, dx)`` of an ``(H, W)`` map (``torchgrad.image_gradients``)."""
    return torch.cat(torchgrad.image_gradients(disparity[None, None]), dim=1)[0]


def neighbours(mask: Tensor) -> Tensor:
    """``(2, H, W)``: where ``(dy, dx)`` joins two valid pixels."""
    pairs = torch.zeros(2, *mask.shape, dtype=torch.bool)
    pairs[0, :-1] = mask[1:] & mask[:-1]
    pairs[1, :, :-1] = mask[:, 1:] & mask[:, :-1]
    return pairs


def depth_edges(truth: Tensor, mask: Tensor, step: float) -> Tensor:
    """``(2, H, W)``: the valid neighbours whose true disparities differ by more than ``step`` pixels."""
    return neighbours(mask) & (differences(truth).abs() > step)


@torch.no_grad()
def score(prediction: Tensor, truth: Tensor, mask: Tensor, edges: Tensor) -> tuple[dict, Tensor]:
    """AbsRel and delta < 1.25 of depth (1 / disparity) after aligning the disparity by least squares, and the mean
    error of its forward differences between valid neighbours, everywhere and across ``edges``; with the aligned
    disparity."""
    scale, shift = scale_and_shift(prediction[None], truth[None], mask[None])
    aligned = scale * prediction + shift
    floor = 1e-3 * float(truth[mask].max())
    depth, true_depth = 1 / aligned[mask].clamp_min(floor), 1 / truth[mask]
    ratio = torch.maximum(depth / true_depth, true_depth / depth)
    error = (differences(aligned) - differences(truth)).abs()
    return {
        "abs_rel": round(float(((depth - true_depth).abs() / true_depth).mean()), 4),
        "delta1": round(float((ratio < 1.25).float().mean()), 4),
        "gradient_error": round(float(error[neighbours(mask)].mean()), 4),
        "edge_gradient_error": round(float(error[edges].mean()), 4),
    }, aligned


_COLORS = torch.tensor([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]]) / 255.0


def colored(x: Tensor, mask: Optional[Tensor] = None) -> Tensor:
    """``(3, H, W)``: an ``(H, W)`` map in [0, 1] through a viridis-like colour ramp, grey where not ``mask``."""
    position = x.clamp(0, 1) * (len(_COLORS) - 1)
    low = position.floor().long().clamp(max=len(_COLORS) - 2)
    t = (position - low)[..., None]
    rgb = (_COLORS[low] * (1 - t) + _COLORS[low + 1] * t).permute(2, 0, 1)
    return rgb if mask is None else torch.where(mask, rgb, torch.tensor(0.5).view(1, 1, 1))


def save_figure(path: Path, rows: list[list[tuple[str, Tensor]]], note: str) -> None:
    """Tiles of ``(3, H, W)`` images in rows, a title over each and a note below (a 256-colour PNG)."""
    h, w = rows[0][0][1].shape[-2:]
    header, pad = 16, 4
    columns = max(len(row) for row in rows)
    figure = Image.new("RGB", (columns * (w + pad) + pad, len(rows) * (h + header + pad) + pad + header), "white")
    draw = ImageDraw.Draw(figure)
    for r, row in enumerate(rows):
        for c, (title, tile) in enumerate(row):
            left, top = pad + c * (w + pad), pad + r * (h + header + pad)
            draw.text((left, top + 2), title, fill="black")
            pixels = (tile.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).contiguous().numpy()
            figure.paste(Image.fromarray(pixels), (left, top + header))
    draw.text((pad, figure.height - header), note, fill="black")
    figure.quantize(256, dither=Image.Dither.NONE).save(path, optimize=True)


def main(argv: Optional[list[str]] = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=600, help="training steps per run")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--crop", type=int, default=48, help="training crop size (half-resolution pixels)")
    parser.add_argument("--alpha", type=float, default=0.5, help="weight of gradient matching in the second run")
    parser.add_argument("--blur", type=float, default=2.5, help="blur of the simulated prediction (pixels)")
    parser.add_argument("--noise", type=float, default=0.03, help="noise of the simulated prediction (of its std)")
    parser.add_argument("--edge-step", type=float, default=1.0, help="a depth edge: a disparity step above this (px)")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output-dir", type=Path, default=Path("out/depth"))
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()

    scene = Scene(args.blur)
    width = scene.image.shape[-1]
    split = int(width * 0.55)  # train on the left 55% of the columns, evaluate on the rest
    training, held_out = slice(0, split), slice(split + 8, width)  # a margin: no crop reaches the evaluation

    runs = {"data term": 0.0, "+ gradient matching": args.alpha}
    models = {}
    for name, alpha in runs.items():
        if not args.quiet:
            print(f"training '{name}' (alpha={alpha}) for {args.steps} steps, batch {args.batch_size}x{args.crop}^2")
        models[name] = train(alpha, scene, training, args)

    image, truth, mask = scene.image[:, :, held_out], scene.disparity[0, :, held_out], scene.mask[0, :, held_out]
    prediction = simulated_prediction(
        scene.blurred[:, :, held_out], torch.Generator().manual_seed(args.seed + 1), args.noise
    )
    inputs = network_input(image[None], prediction[None])
    edges = depth_edges(truth, mask, args.edge_step)
    results, aligned = {}, {}
    results["input"], aligned["input"] = score(inputs[0, 3], truth, mask, edges)
    for name, model in models.items():
        with torch.no_grad():
            results[name], aligned[name] = score(model(inputs)[0, 0], truth, mask, edges)

    print(
        f"\n{'held-out part, aligned':<24}{'AbsRel':>8}{'delta<1.25':>12}{'gradient error':>16}{'at depth edges':>16}"
    )
    for name, r in results.items():
        print(
            f"{name:<24}{r['abs_rel']:>8.4f}{r['delta1']:>12.4f}{r['gradient_error']:>16.4f}"
            f"{r['edge_gradient_error']:>16.4f}"
        )
    seconds = time.perf_counter() - start
    print(f"\n{seconds:.0f} s in all")
    (args.output_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")

    low, high = float(truth[mask].min()), float(truth[mask].max())
    errors = {name: (a - truth).abs() for name, a in aligned.items()}
    top = max(float(e[mask].quantile(0.99)) for e in errors.values())
    save_figure(
        args.output_dir / "depth.png",
        [
            [("image", image), ("ground truth (grey: holes)", colored((truth - low) / (high - low), mask))]
            + [(name, colored((a - low) / (high - low))) for name, a in aligned.items()],
            [
                ("depth edges (scored)", edges.any(0).float().expand(3, -1, -1)),
                ("valid pixels", mask.float().expand(3, -1, -1)),
            ]
            + [(f"|error| {name}", colored(e / top, mask)) for name, e in errors.items()],
        ],
        note=f"disparity after alignment; errors from 0 to {top:.1f} px (the 99th percentile)",
    )
    print(f"wrote {args.output_dir / 'depth.png'} and {args.output_dir / 'results.json'}")
    return results


if __name__ == "__main__":
    main()
