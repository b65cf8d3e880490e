"""Speed and saved memory of the gradient losses next to the same losses written the usual way.

    python benchmarks/bench_losses.py                 # (16, 3, 512, 512) float32 on the CPU
    python benchmarks/bench_losses.py --device cuda

Times forward+backward (medians, interleaved across cases), reports the bytes saved for backward
per input element beyond references to the inputs themselves, checks the project's targets and
writes its section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import environment, markdown_table, median_ms, publish, saved_bytes, verdict_rows  # noqa: E402

from torchgrad.losses import EdgeAwareSmoothnessLoss, GradientDifferenceLoss, GradientLoss, TotalVariationLoss  # noqa: E402

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def usual_forms() -> dict[str, Loss]:
    import kornia
    import torchmetrics.functional.image as tm_image

    warnings.filterwarnings("ignore", category=FutureWarning)

    def kornia_l1(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.l1_loss(kornia.filters.spatial_gradient(x), kornia.filters.spatial_gradient(y))

    def torchmetrics_l2(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        (xdy, xdx), (ydy, ydx) = tm_image.image_gradients(x), tm_image.image_gradients(y)
        return (F.mse_loss(xdy, ydy) + F.mse_loss(xdx, ydx)) / 2  # the mean over the stacked (dy, dx)

    return {"kornia spatial_gradient + l1_loss": kornia_l1, "torchmetrics image_gradients + mse_loss": torchmetrics_l2}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--shape", type=int, nargs=4, default=[16, 3, 512, 512])
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    x = torch.rand(*args.shape, device=device, requires_grad=True)
    y = torch.rand(*args.shape, device=device)
    disparity = torch.rand(args.shape[0], 1, *args.shape[2:], device=device, requires_grad=True)
    usual = usual_forms()
    edge_aware = EdgeAwareSmoothnessLoss()
    cases: list[tuple[str, Callable[[], torch.Tensor], torch.Tensor]] = [
        ('GradientLoss("sobel", p=1)', lambda: GradientLoss("sobel", p=1)(x, y), x),
        ("kornia spatial_gradient + l1_loss", lambda: usual["kornia spatial_gradient + l1_loss"](x, y), x),
        ('GradientLoss("diff", p=2)', lambda: GradientLoss("diff", p=2)(x, y), x),
        ("torchmetrics image_gradients + mse_loss", lambda: usual["torchmetrics image_gradients + mse_loss"](x, y), x),
        ("GradientDifferenceLoss(alpha=1)", lambda: GradientDifferenceLoss()(x, y), x),
        ("TotalVariationLoss()", lambda: TotalVariationLoss()(x), x),
        ("TotalVariationLoss(isotropic=True)", lambda: TotalVariationLoss(isotropic=True)(x), x),
        ("EdgeAwareSmoothnessLoss() on (N, 1, H, W)", lambda: edge_aware(disparity, x.detach()), disparity),
    ]

    def step(loss: Callable[[], torch.Tensor], leaf: torch.Tensor) -> Callable[[], None]:
        def run() -> None:
            loss().backward()
            leaf.grad = None

        return run

    times = median_ms([step(loss, leaf) for _, loss, leaf in cases], device, args.repeats)
    saved = [saved_bytes(loss, exclude=(x, y, disparity)) / leaf.numel() for _, loss, leaf in cases]
    rows = []
    for (name, _, _), t, b in zip(cases, times, saved):
        print(f"{name:45s} fwd+bwd {t:8.1f} ms   saved {b:6.2f} bytes / input element")
        rows.append([name, f"{t:.1f}", f"{b:.2f}"])
    ms = dict(zip([c[0] for c in cases], times))
    per = dict(zip([c[0] for c in cases], saved))
    sobel_l1, diff_l2 = 'GradientLoss("sobel", p=1)', 'GradientLoss("diff", p=2)'
    checks = verdict_rows(
        [
            ("kornia form / " + sobel_l1, ms["kornia spatial_gradient + l1_loss"] / ms[sobel_l1], ">= 6"),
            ("torchmetrics form / " + diff_l2, ms["torchmetrics image_gradients + mse_loss"] / ms[diff_l2], ">= 2"),
            ("bytes saved per input element, " + sobel_l1, per[sobel_l1], "<= 1"),
            ("bytes saved per input element, " + diff_l2, per[diff_l2], "<= 1"),
        ]
    )
    table = markdown_table(["loss", "forward+backward ms", "saved for backward (bytes / input element)"], rows)
    summary = markdown_table(["ratio (same run)", "measured", "target", "met"], checks)
    publish(
        f"losses-{device.type}",
        f"Losses, {'x'.join(map(str, args.shape))} float32, {device.type}",
        f"python benchmarks/bench_losses.py --device {args.device}",
        f"{environment(device)}; medians of {args.repeats} runs, interleaved. Saved bytes exclude references to the"
        " inputs themselves (they exist anyway); the edge-aware loss is measured on a one-channel disparity with the"
        " same batch and size",
        [table, summary],
        write=not args.no_write,
    )


if __name__ == "__main__":
    main()
