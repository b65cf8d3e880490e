"""The gallery's figures: each operator of torchgrad on a photograph bundled with scikit-image.

    python docs/gallery.py out/gallery     # writes the PNGs (the docs build draws them in memory)

Signed derivatives are drawn on black, positive in orange and negative in blue (each panel scaled to
its own 99.5th percentile of absolute values); magnitudes in grey, or in colour when every channel is
shown.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Callable

import skimage.data
import torch
from PIL import Image, ImageDraw, ImageFont

import torchgrad

TILE = 288
POSITIVE = torch.tensor([1.0, 0.62, 0.16]).view(3, 1, 1)
NEGATIVE = torch.tensor([0.2, 0.62, 1.0]).view(3, 1, 1)


def photograph(name: str) -> torch.Tensor:
    """A scikit-image photograph as a ``(1, 3, H, W)`` float tensor in [0, 1]."""
    pixels = torch.from_numpy(getattr(skimage.data, name)()).float() / 255
    return pixels.permute(2, 0, 1)[None] if pixels.ndim == 3 else pixels.expand(1, 3, -1, -1)


def grey(image: torch.Tensor) -> torch.Tensor:
    """ITU-R BT.601 luma of ``(N, 3, H, W)`` images, ``(N, 1, H, W)``."""
    return (image * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)


def _scale(values: torch.Tensor) -> torch.Tensor:
    return values / values.abs().flatten().quantile(0.995).clamp_min(1e-12)


def signed(derivative: torch.Tensor) -> torch.Tensor:
    """A ``(1, H, W)`` signed map as ``(3, H, W)`` colours: orange where positive, blue where negative."""
    v = _scale(derivative).clamp(-1, 1)
    return v.clamp_min(0) * POSITIVE + (-v).clamp_min(0) * NEGATIVE


def magnitude(values: torch.Tensor) -> torch.Tensor:
    """A non-negative ``(C, H, W)`` map as ``(3, H, W)`` colours (grey when ``C`` is 1)."""
    return _scale(values).clamp(0, 1).expand(3, -1, -1)


def panel(columns: list[tuple[str, torch.Tensor]]) -> bytes:
    """``(title, (3, H, W) image in [0, 1])`` side by side, each scaled to TILE pixels wide, as PNG bytes."""
    font = ImageFont.load_default(size=15)
    header, pad = 24, 6
    tiles = []
    for _, image in columns:
        pixels = (image.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).contiguous().numpy()
        tile = Image.fromarray(pixels)
        tiles.append(tile.resize((TILE, round(tile.height * TILE / tile.width)), Image.LANCZOS))
    height = max(t.height for t in tiles)
    figure = Image.new("RGB", (len(tiles) * (TILE + pad) + pad, header + height + pad), "white")
    draw = ImageDraw.Draw(figure)
    for k, ((title, _), tile) in enumerate(zip(columns, tiles)):
        x = pad + k * (TILE + pad)
        draw.text((x, 4), title, fill="black", font=font)
        figure.paste(tile, (x, header))
    out = io.BytesIO()
    figure.save(out, format="PNG", optimize=True)
    return out.getvalue()


def _pair(name: str, image: torch.Tensor, components: tuple[torch.Tensor, ...]) -> bytes:
    dy, dx = components
    return panel([("input (grey)", image[0].expand(3, -1, -1)), (f"{name}: dy", signed(dy[0])), ("dx", signed(dx[0]))])


def figures() -> dict[str, bytes]:
    """Every figure of the gallery, by file name (without ``.png``)."""
    face = grey(photograph("astronaut"))[..., 20:308, 120:408]  # the helmet, face and flag: edges at every angle
    coffee = photograph("coffee")[..., 40:360, 120:440]
    drawings: dict[str, Callable[[], bytes]] = {
        "image_gradients": lambda: _pair("image_gradients", face, torchgrad.image_gradients(face)),
        "sobel": lambda: _pair("sobel", face, torchgrad.sobel(face)),
        "scharr": lambda: _pair("scharr", face, torchgrad.scharr(face)),
        "prewitt": lambda: _pair("prewitt", face, torchgrad.prewitt(face)),
        "gradient": lambda: _pair("gradient", face, torchgrad.gradient(face, dim=(-2, -1))),
        "laplacian": lambda: panel(
            [
                ("input (grey)", face[0].expand(3, -1, -1)),
                ("laplacian", signed(torchgrad.laplacian(face)[0])),
                ("laplacian, ksize=3", signed(torchgrad.laplacian(face, ksize=3)[0])),
            ]
        ),
        "hessian": lambda: panel(
            [("input (grey)", face[0].expand(3, -1, -1))]
            + [(f"hessian: {name}", signed(d[0])) for name, d in zip(("dyy", "dyx", "dxx"), torchgrad.hessian(face))]
        ),
        "gradient_magnitude": lambda: panel(
            [
                ("input", coffee[0]),
                ("gradient_magnitude, per channel", magnitude(torchgrad.gradient_magnitude(coffee)[0])),
                ("of the grey image", magnitude(torchgrad.gradient_magnitude(grey(coffee))[0])),
            ]
        ),
    }
    return {name: draw() for name, draw in drawings.items()}


if __name__ == "__main__":
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "out/gallery")
    folder.mkdir(parents=True, exist_ok=True)
    for name, png in figures().items():
        (folder / f"{name}.png").write_bytes(png)
        print(f"wrote {folder / name}.png")
