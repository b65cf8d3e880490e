"""Draws the two images that the style-transfer example uses by default (run once; they are committed).

python examples/make_images.py
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from deblur import render
from PIL import Image


def save(image: torch.Tensor, path: Path) -> None:
    pixels = (image.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).contiguous().numpy()
    Image.fromarray(pixels).save(path, optimize=True)


def style_image(size: int) -> torch.Tensor:
    """Swirling bands of warm and cool colour: a texture with strong, curved strokes."""
    axis = torch.linspace(-1.0, 1.0, size)
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    radius, angle = torch.hypot(y, x), torch.atan2(y, x)
    swirl = torch.sin(9 * radius + 3 * angle) + 0.5 * torch.sin(23 * (x + 0.3 * torch.sin(5 * y)))
    palette = torch.tensor([[0.95, 0.75, 0.2], [0.85, 0.25, 0.15], [0.15, 0.3, 0.6], [0.1, 0.55, 0.5]])
    t = (swirl - swirl.min()) / (swirl.max() - swirl.min()) * (len(palette) - 1)
    low = t.floor().long().clamp(max=len(palette) - 2)
    frac = (t - low)[..., None]
    colour = palette[low] * (1 - frac) + palette[low + 1] * frac
    return colour.permute(2, 0, 1) * (0.8 + 0.2 * torch.cos(math.pi * radius))[None]


if __name__ == "__main__":
    folder = Path(__file__).with_name("images")
    folder.mkdir(exist_ok=True)
    save(render(128, torch.Generator().manual_seed(7)), folder / "content.png")
    save(style_image(128), folder / "style.png")
    print(f"wrote {folder / 'content.png'} and {folder / 'style.png'}")
