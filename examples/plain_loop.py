"""A plain PyTorch training loop (no Lightning) with PerceptualGradientLoss as the criterion,
mixed precision and torch.compile.

    python examples/plain_loop.py                          # ImageNet VGG16 from the torch hub cache
    python examples/plain_loop.py --vgg-weights vgg16-397923af.pth --compile
    python examples/plain_loop.py --random-weights         # offline smoke test (not perceptual)

Trains the deblurring network of examples/deblur.py. Mixed precision is bfloat16 autocast on the
CPU and float16 autocast with a gradient scaler on CUDA; the loss itself accumulates in float32.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Optional

import torch
from deblur import DegradedImages, Restorer
from torch.utils.data import DataLoader

from torchgrad.losses import PerceptualGradientLoss, WeightsUnavailableError


def main(argv: Optional[list[str]] = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--compile", action="store_true", help="torch.compile the model and the loss")
    parser.add_argument("--no-amp", action="store_true", help="train in float32")
    parser.add_argument("--vgg-weights", type=Path, default=None)
    parser.add_argument("--random-weights", action="store_true", help="a random VGG16 (smoke test: not perceptual)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if args.random_weights:
        print("*** --random-weights: VGG16 is random, so the perceptual term is not perceptual (smoke test only) ***")
    weights = None if args.random_weights else (args.vgg_weights or "DEFAULT")
    try:
        criterion = PerceptualGradientLoss(layers=("relu2_2", "relu3_3"), gradient_weight=0.1, weights=weights).to(
            device
        )
    except WeightsUnavailableError as error:
        sys.exit(f"error: {error}")

    model = Restorer().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    amp_dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    use_amp = not args.no_amp
    scaler = torch.amp.GradScaler(device.type, enabled=use_amp and amp_dtype == torch.float16)

    def loss_of(degraded: torch.Tensor, clean: torch.Tensor) -> tuple[torch.Tensor, dict]:
        with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
            return criterion(model(degraded), clean, return_parts=True)

    step_loss = torch.compile(loss_of) if args.compile else loss_of
    data = DataLoader(
        DegradedImages(args.steps * args.batch_size, args.image_size, args.seed), batch_size=args.batch_size
    )
    history, start = [], time.perf_counter()
    for step, (degraded, clean) in enumerate(data):
        degraded, clean = degraded.to(device), clean.to(device)
        optimizer.zero_grad(set_to_none=True)
        loss, parts = step_loss(degraded, clean)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        history.append(loss.item())
        if step % 20 == 0 or step == args.steps - 1:
            print(
                f"step {step:4d}  loss {loss.item():.4f}  perceptual {parts['perceptual'].item():.4f}  "
                f"gradient {parts['gradient'].item():.4f}"
            )
    print(
        f"{args.steps} steps in {time.perf_counter() - start:.1f} s on {device} "
        f"({'bf16' if amp_dtype == torch.bfloat16 else 'fp16'} autocast: {use_amp}, compiled: {args.compile})"
    )
    return {"history": history}


if __name__ == "__main__":
    main()
