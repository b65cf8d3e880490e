"""A tour of torchgrad's operators on a synthetic image, printed to the terminal.

    python examples/operators_demo.py

Draws a disc and a square, finds their edges with the Sobel magnitude, checks the TensorFlow and
torch.gradient semantics on their reference examples, and shows that the hand-written backward
saves nothing where autograd through a convolution saves its input.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

import torchgrad
from torchgrad import tf_compat


def synthetic_image(size: int = 48) -> torch.Tensor:
    """A bright disc and a dimmer square on a dark background, (1, 1, size, size) in [0, 1]."""
    y, x = torch.meshgrid(
        torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32), indexing="ij"
    )
    disc = ((y - size * 0.35) ** 2 + (x - size * 0.35) ** 2 < (size * 0.22) ** 2).float()
    square = ((y > size * 0.55) & (y < size * 0.9) & (x > size * 0.5) & (x < size * 0.85)).float() * 0.6
    return torch.maximum(disc, square)[None, None]


def ascii_art(image: torch.Tensor, width: int = 48) -> str:
    ramp = " .:-=+*#%@"
    image = image / image.max().clamp_min(1e-12)
    rows = image[0, 0, ::2, :width]  # terminal cells are about twice as tall as wide
    return "\n".join("".join(ramp[int(v * (len(ramp) - 1))] for v in row) for row in rows)


def saved_bytes(fn, x: torch.Tensor) -> int:
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(x)
    return total


def main() -> None:
    image = synthetic_image()
    edges = torchgrad.gradient_magnitude(image, normalized=True)
    print("Sobel gradient magnitude of a disc and a square:\n")
    print(ascii_art(edges))

    tf_image = torch.arange(25.0).reshape(1, 5, 5, 1)
    dy, dx = tf_compat.image_gradients(tf_image)
    print("\ntf.image.image_gradients' reference example, dy (5 per row, last row zero):")
    print(dy[0, :, :, 0])

    t = torch.tensor([[1.0, 2.0, 4.0, 8.0], [10.0, 20.0, 40.0, 80.0]])
    ours, theirs = torchgrad.gradient(t, spacing=[2.0, 3.0]), torch.gradient(t, spacing=[2.0, 3.0])
    same = all(torch.equal(a, b) for a, b in zip(ours, theirs))
    print(f"\ntorchgrad.gradient == torch.gradient on the reference example: {same}")

    x = torch.rand(8, 3, 128, 128, requires_grad=True)
    kernel = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]).expand(3, 1, 3, 3)
    by_conv = saved_bytes(lambda x: F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), kernel, groups=3), x)
    by_sobel = saved_bytes(torchgrad.sobel, x)
    print(f"bytes saved for backward on {tuple(x.shape)}: conv2d Sobel {by_conv:,}, torchgrad.sobel {by_sobel:,}")

    dy, dx = torchgrad.sobel(x)
    loss = dy.abs().mean() + dx.abs().mean()
    loss.backward()
    print(f"a Sobel L1 loss and its gradient: loss {loss.item():.4f}, |grad| {x.grad.norm():.4f}")


if __name__ == "__main__":
    main()
