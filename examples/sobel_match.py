"""Optimise an image until its Sobel gradients match a target's: the image-optimisation example of
the usual TensorFlow tutorials on gradient losses, done with torchgrad.

    python examples/sobel_match.py

In TensorFlow this needs a GradientTape that watches the image (forgetting it records nothing) and
tf.image.sobel_edges on both images; here the loss is one module and autograd does the rest.
"""

from __future__ import annotations

import argparse
from typing import Optional

import torch
from deblur import render

from torchgrad.losses import GradientLoss


def main(argv: Optional[list[str]] = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args(argv)

    target = render(args.size, torch.Generator().manual_seed(3))[None]
    image = torch.rand_like(target).requires_grad_()  # what the optimiser changes
    criterion = GradientLoss("sobel", p=1)  # mean |sobel_edges(image) - sobel_edges(target)|
    optimizer = torch.optim.Adam([image], lr=0.02)
    history = []
    for _ in range(args.steps):
        optimizer.zero_grad()
        loss = criterion(image, target)
        loss.backward()
        optimizer.step()
        history.append(loss.item())
    # Gradients fix an image up to a constant per channel: compare after removing the means.
    offset = (image - target).mean(dim=(2, 3), keepdim=True)
    error = (image - offset - target).abs().mean().item()
    print(f"Sobel L1 loss {history[0]:.4f} -> {history[-1]:.4f}; mean |image - target| up to a constant: {error:.4f}")
    return {"history": history, "error": error}


if __name__ == "__main__":
    main()
