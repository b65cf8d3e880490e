"""What a gradient loss buys: deblurring trained with L1 alone, then with L1 + GradientLoss.

    python examples/deblur.py                          # two to three minutes on a 2-core CPU
    python examples/deblur.py --steps 1000 --image-size 96 --data-dir ~/photos

Trains the same small restoration network twice from the same seed, on images degraded by blur and
noise, once with ``L1`` and once with ``L1 + GradientLoss("sobel")``, with Lightning (GPU when there
is one). Then it scores both on held-out images (PSNR, and the mean error of the Sobel gradient
magnitude: how sharp the edges came back), prints a table, and writes ``comparison.png`` and
``results.json`` (``{"l1": {"psnr": ..., "gradient_error": ...}, "l1+gradient": {...}, "degraded": {...}}``,
the last scoring the degraded input itself) into ``--output-dir``.

The images are drawn on the fly (shapes, lines, strokes, stripes; nothing to download), or cropped
from a folder of your own with ``--data-dir``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import warnings
from pathlib import Path
from typing import Optional

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger
from PIL import Image, ImageDraw
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

import torchgrad
from torchgrad.losses import GradientLoss

# ---------------------------------------------------------------------------------------------
# Data: procedural images with real edges, degraded deterministically per seed and index.


def _grid(size: int) -> tuple[Tensor, Tensor]:
    axis = torch.linspace(0.0, 1.0, size)
    return torch.meshgrid(axis, axis, indexing="ij")


def _segment_distance(y: Tensor, x: Tensor, p: Tensor, q: Tensor) -> Tensor:
    """Distance from every pixel to the segment p-q (points as (y, x))."""
    d = q - p
    t = (((y - p[0]) * d[0] + (x - p[1]) * d[1]) / (d @ d + 1e-12)).clamp(0, 1)
    return torch.hypot(y - (p[0] + t * d[0]), x - (p[1] + t * d[1]))


def render(size: int, g: torch.Generator) -> Tensor:
    """A (3, size, size) image in [0, 1]: a shaded background, rectangles, discs, stripes, lines
    and rows of short strokes (text-like)."""
    y, x = _grid(size)

    def rand(*shape: int) -> Tensor:
        return torch.rand(*shape, generator=g)

    image = rand(3, 1, 1) * 0.5 + 0.25 + (rand(3, 1, 1) - 0.5) * 0.4 * (y + x)
    for _ in range(int(rand(1) * 3) + 2):  # rectangles
        (y0, y1), (x0, x1) = rand(2).sort().values, rand(2).sort().values
        image = torch.where((y > y0) & (y < y1) & (x > x0) & (x < x1), rand(3, 1, 1), image)
    for _ in range(int(rand(1) * 3) + 1):  # discs
        c, r = rand(2), rand(1) * 0.25 + 0.05
        image = torch.where((y - c[0]) ** 2 + (x - c[1]) ** 2 < r**2, rand(3, 1, 1), image)
    (y0, y1), (x0, x1) = rand(2).sort().values, rand(2).sort().values  # a striped patch
    angle, frequency = rand(1) * math.pi, 20 + rand(1) * 40
    stripes = torch.sin(frequency * (x * torch.cos(angle) + y * torch.sin(angle))) > 0
    image = torch.where((y > y0) & (y < y1) & (x > x0) & (x < x1) & stripes, rand(3, 1, 1), image)
    for _ in range(int(rand(1) * 3) + 1):  # lines
        p, q, width = rand(2), rand(2), 0.004 + rand(1) * 0.012
        image = torch.where(_segment_distance(y, x, p, q) < width, rand(3, 1, 1), image)
    row, color = rand(2) * 0.8 + 0.1, rand(3, 1, 1)  # a row of strokes, like handwriting
    for k in range(int(rand(1) * 6) + 3):
        start = torch.stack([row[0] + (rand(1)[0] - 0.5) * 0.04, row[1] * 0.5 + k * 0.06])
        end = start + (rand(2) - 0.5) * 0.08
        image = torch.where(_segment_distance(y, x, start, end) < 0.006, color, image)
    return image.clamp(0, 1)


def gaussian_blur(image: Tensor, sigma: float) -> Tensor:
    radius = max(1, math.ceil(2.5 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=image.dtype)
    kernel = torch.exp(-(t**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    c = image.shape[0]
    x = F.pad(image[None], (radius, radius, radius, radius), mode="reflect")
    x = F.conv2d(x, kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    x = F.conv2d(x, kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    return x[0]


def degrade(clean: Tensor, g: torch.Generator, noise: float = 0.02) -> Tensor:
    sigma = 1.0 + 1.0 * torch.rand(1, generator=g).item()
    return (gaussian_blur(clean, sigma) + noise * torch.randn(clean.shape, generator=g)).clamp(0, 1)


class DegradedImages(Dataset):
    """``(degraded, clean)`` pairs, the same for the same ``seed`` and index.

    From a ``folder``, every fifth file is held out: ``split="train"`` crops the others,
    ``split="eval"`` those (all files when there are fewer than two).
    """

    def __init__(self, count: int, size: int, seed: int, folder: Optional[Path] = None, split: str = "train") -> None:
        self.count, self.size, self.seed = count, size, seed
        files = (
            sorted(p for p in folder.rglob("*") if p.suffix.lower() in {".png", ".jpg", ".jpeg", ".bmp"})
            if folder
            else []
        )
        if folder and not files:
            raise SystemExit(f"no .png/.jpg/.bmp images in {folder}")
        held_out = [f for i, f in enumerate(files) if i % 5 == 0]
        kept = [f for i, f in enumerate(files) if i % 5 != 0]
        self.files = files if len(files) < 2 else (held_out if split == "eval" else kept)

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        clean = self._photo(g) if self.files else render(self.size, g)
        return degrade(clean, g), clean

    def _photo(self, g: torch.Generator) -> Tensor:
        path = self.files[int(torch.randint(len(self.files), (1,), generator=g))]
        image = Image.open(path).convert("RGB")
        scale = self.size / min(image.size) * (1.0 + torch.rand(1, generator=g).item())
        image = image.resize((max(self.size, round(image.width * scale)), max(self.size, round(image.height * scale))))
        top = int(torch.randint(image.height - self.size + 1, (1,), generator=g))
        left = int(torch.randint(image.width - self.size + 1, (1,), generator=g))
        crop = image.crop((left, top, left + self.size, top + self.size))
        return (
            torch.frombuffer(bytearray(crop.tobytes()), dtype=torch.uint8)
            .view(self.size, self.size, 3)
            .permute(2, 0, 1)
            .contiguous()
            .float()
            / 255
        )


# ---------------------------------------------------------------------------------------------
# Model and training.


class Restorer(nn.Module):
    """A small residual CNN: the degraded image plus a learned correction."""

    def __init__(self, width: int = 32, depth: int = 5) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, width, 3, padding=1), nn.ReLU()]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(width, width, 3, padding=1), nn.ReLU()]
        layers.append(nn.Conv2d(width, 3, 3, padding=1))
        self.body = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class DeblurModule(L.LightningModule):
    """L1, plus ``gradient_weight`` times a Sobel gradient loss when it is positive."""

    def __init__(self, gradient_weight: float = 0.0, lr: float = 2e-3, steps: int = 400) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model = Restorer()
        self.gradient_loss = GradientLoss("sobel", p=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        degraded, clean = batch
        restored = self(degraded)
        l1 = F.l1_loss(restored, clean)
        self.log("l1", l1)
        loss = l1
        if self.hparams.gradient_weight > 0:
            gradient = self.gradient_loss(restored, clean)
            self.log("gradient", gradient)
            loss = l1 + self.hparams.gradient_weight * gradient
        self.log("loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self) -> dict:
        optimizer = torch.optim.Adam(self.parameters(), lr=self.hparams.lr)
        schedule = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=self.hparams.lr, total_steps=self.hparams.steps
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


class _ProgressBar(TQDMProgressBar):
    """Lightning's bar, without the logger's version number."""

    def get_metrics(self, trainer: L.Trainer, module: L.LightningModule) -> dict:
        metrics = super().get_metrics(trainer, module)
        metrics.pop("v_num", None)
        return metrics


def train(name: str, gradient_weight: float, args: argparse.Namespace) -> DeblurModule:
    L.seed_everything(args.seed, verbose=False)
    data = DegradedImages(args.steps * args.batch_size, args.image_size, args.seed, args.data_dir)
    loader = DataLoader(data, batch_size=args.batch_size, shuffle=False, num_workers=0)
    module = DeblurModule(gradient_weight, lr=args.lr, steps=args.steps)
    trainer = L.Trainer(
        max_steps=args.steps,
        accelerator="auto",
        devices=1,
        logger=CSVLogger(args.output_dir, name="logs", version=name.replace("+", "_")),
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=not args.quiet,
        callbacks=[] if args.quiet else [_ProgressBar()],
        log_every_n_steps=10,
    )
    print(f"training '{name}' for {args.steps} steps on {trainer.strategy.root_device}")
    trainer.fit(module, loader)
    return module.eval().cpu()


# ---------------------------------------------------------------------------------------------
# Evaluation and the figure.


def sobel_magnitude(images: Tensor) -> Tensor:
    return torchgrad.gradient_magnitude(images, normalized=True, eps=0.0)


@torch.no_grad()
def evaluate(model: nn.Module, degraded: Tensor, clean: Tensor) -> tuple[dict, Tensor]:
    restored = model(degraded).clamp(0, 1)
    mse = ((restored - clean) ** 2).flatten(1).mean(1)
    psnr = (10 * torch.log10(1 / mse)).mean().item()
    gradient_error = (sobel_magnitude(restored) - sobel_magnitude(clean)).abs().mean().item()
    return {"psnr": round(psnr, 3), "gradient_error": round(gradient_error, 5)}, restored


def save_figure(path: Path, columns: list[tuple[str, Tensor]], scale: int) -> None:
    """Images on the first row, their Sobel gradient magnitudes below, a title over each column."""
    size = columns[0][1].shape[-1] * scale
    header, pad = 18, 4
    figure = Image.new("RGB", (len(columns) * (size + pad) + pad, header + 2 * (size + pad) + pad), "white")
    draw = ImageDraw.Draw(figure)
    edges = [sobel_magnitude(image[None])[0].mean(0, keepdim=True).expand(3, -1, -1) for _, image in columns]
    top = max(float(e.max()) for e in edges)
    for k, ((title, image), edge) in enumerate(zip(columns, edges)):
        left = pad + k * (size + pad)
        draw.text((left, 3), title, fill="black")
        for row, picture in enumerate((image, (edge / top).clamp(0, 1))):
            pixels = (picture.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).contiguous().numpy()
            tile = Image.fromarray(pixels).resize((size, size), Image.NEAREST)
            figure.paste(tile, (left, header + row * (size + pad)))
    figure.save(path)


def main(argv: Optional[list[str]] = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=400, help="training steps per run")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--gradient-weight", type=float, default=0.5, help="weight of GradientLoss in the second run")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-images", type=int, default=32)
    parser.add_argument(
        "--data-dir", type=Path, default=None, help="a folder of your own images instead of generated ones"
    )
    parser.add_argument("--output-dir", type=Path, default=Path("out/deblur"))
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*GPU available but not used.*")
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # no banners between the two runs

    runs = {"l1": 0.0, "l1+gradient": args.gradient_weight}
    models = {name: train(name, weight, args) for name, weight in runs.items()}

    held_out = DegradedImages(args.eval_images, args.image_size, seed=args.seed + 1, folder=args.data_dir, split="eval")
    degraded, clean = (torch.stack(t) for t in zip(*(held_out[i] for i in range(len(held_out)))))
    results, restored = {}, {}
    for name, model in models.items():
        results[name], restored[name] = evaluate(model, degraded, clean)
    results["degraded"], _ = evaluate(nn.Identity(), degraded, clean)  # the input itself, for scale

    print(f"\n{'run':<14}{'PSNR (dB)':>12}{'gradient error':>18}   (held-out images: {args.eval_images})")
    for name, r in results.items():
        print(f"{name:<14}{r['psnr']:>12.2f}{r['gradient_error']:>18.4f}")
    (args.output_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    save_figure(
        args.output_dir / "comparison.png",
        [
            ("degraded", degraded[0]),
            ("L1", restored["l1"][0]),
            ("L1 + gradient", restored["l1+gradient"][0]),
            ("target", clean[0]),
        ],
        scale=max(1, 256 // args.image_size),
    )
    print(f"wrote {args.output_dir / 'comparison.png'} and {args.output_dir / 'results.json'}")
    return results


if __name__ == "__main__":
    main()
