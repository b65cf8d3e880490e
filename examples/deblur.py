"""What a gradient loss buys: deblurring trained with L1 alone, then with L1 + GradientLoss.

    python examples/deblur.py                          # about two minutes on a 2-core CPU
    python examples/deblur.py --data procedural        # drawn shapes instead of photographs
    python examples/deblur.py --steps 1000 --image-size 96 --data-dir ~/photos

Trains the same small restoration network twice from the same seed, on images degraded by blur and
noise, once with ``L1`` and once with ``L1 + GradientLoss("sobel")``, with Lightning (GPU when there
is one). Then it scores both on held-out images (PSNR, the mean error of the Sobel gradient
magnitude: how sharp the edges came back, and SSIM), prints a table, and writes ``comparison.png``
(a held-out photograph, whole and zoomed on its edgiest window) and ``results.json``
(``{"l1": {"psnr": ..., "gradient_error": ..., "ssim": ...}, "l1+gradient": {...}, "degraded": {...}}``,
the last scoring the degraded input itself) into ``--output-dir``.

By default it trains on random crops of photographs bundled with scikit-image (``TRAIN_PHOTOS``;
nothing to download) and scores on crops of others it never sees (``HELD_OUT_PHOTOS``).
``--data procedural`` draws images on the fly (shapes, lines, strokes, stripes); ``--data-dir``
crops a folder of your own, holding every fifth file out.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import math
import warnings
from pathlib import Path
from typing import Optional, Sequence, Union

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

import torchgrad
from torchgrad.losses import GradientLoss

# ---------------------------------------------------------------------------------------------
# Data: photographs or procedural images with real edges, degraded deterministically per seed and index.


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
    """``image`` ``(..., C, H, W)`` blurred by a separable Gaussian of standard deviation ``sigma``."""
    radius = max(1, math.ceil(2.5 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=image.dtype, device=image.device)
    kernel = torch.exp(-(t**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    shape, c = image.shape, image.shape[-3]
    x = F.pad(image.reshape(-1, c, *shape[-2:]), (radius, radius, radius, radius), mode="reflect")
    x = F.conv2d(x, kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    x = F.conv2d(x, kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    return x.reshape(shape)


BLUR = (1.5, 2.5)  # the range of the blur's standard deviation, in pixels
NOISE = 0.02  # the standard deviation of the added noise


def degrade(clean: Tensor, g: torch.Generator, blur: tuple[float, float], noise: float) -> Tensor:
    """A Gaussian blur of standard deviation drawn from ``blur``, then Gaussian noise, clamped to [0, 1]."""
    sigma = blur[0] + (blur[1] - blur[0]) * torch.rand(1, generator=g).item()
    return (gaussian_blur(clean, sigma) + noise * torch.randn(clean.shape, generator=g)).clamp(0, 1)


# Photographs bundled in scikit-image's wheel (no download). Training crops come from the first
# set; the scores and the figure from the second, which training never sees.
TRAIN_PHOTOS = (
    "astronaut",
    "coffee",
    "rocket",
    "immunohistochemistry",
    "hubble_deep_field",
    "coins",
    "brick",
    "gravel",
    "page",
    "text",
)
HELD_OUT_PHOTOS = ("chelsea", "camera", "motorcycle_left")
FIGURE_PHOTO = "motorcycle_left"


@functools.lru_cache(maxsize=None)
def skimage_photo(name: str) -> Tensor:
    """A photograph bundled with scikit-image, as a ``(3, H, W)`` float tensor in [0, 1] (grey repeated)."""
    import skimage.data

    pixels = skimage.data.stereo_motorcycle()[0] if name == "motorcycle_left" else getattr(skimage.data, name)()
    image = torch.from_numpy(pixels).float() / 255
    return image.expand(3, -1, -1).contiguous() if image.ndim == 2 else image[..., :3].permute(2, 0, 1).contiguous()


def file_photo(path: Path) -> Tensor:
    """An image file as a ``(3, H, W)`` float tensor in [0, 1] (grey repeated)."""
    with Image.open(path) as image:
        rgb = image.convert("RGB")
    pixels = torch.frombuffer(bytearray(rgb.tobytes()), dtype=torch.uint8)
    return pixels.view(rgb.height, rgb.width, 3).permute(2, 0, 1).float() / 255


def folder_files(folder: Path, split: str) -> list[Path]:
    """The images of ``folder``: every fifth file is held out (``split="eval"``), the others train
    (all files when there are fewer than two)."""
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in {".png", ".jpg", ".jpeg", ".bmp"})
    if not files:
        raise SystemExit(f"no .png/.jpg/.bmp images in {folder}")
    if len(files) < 2:
        return files
    return [f for i, f in enumerate(files) if (i % 5 == 0) == (split == "eval")]


def load_photo(source: Union[str, Path]) -> Tensor:
    """A scikit-image photograph (by name) or an image file (by path), ``(3, H, W)`` in [0, 1]."""
    return file_photo(source) if isinstance(source, Path) else skimage_photo(source)


def random_crop(image: Tensor, size: int, g: torch.Generator, zoom: tuple[float, float] = (0.5, 1.0)) -> Tensor:
    """A ``(3, size, size)`` crop of ``image`` at a random position, zoomed by a random factor in
    ``zoom`` (1: the photograph's own resolution, capped at 512 pixels on its shorter side; 0.5:
    a window twice as large, downscaled with antialiasing), flipped left-right half of the time."""
    height, width = image.shape[-2:]
    scale = min(1.0, 512 / min(height, width)) * (zoom[0] + (zoom[1] - zoom[0]) * torch.rand(1, generator=g).item())
    window = min(height, width, max(1, round(size / scale)))
    top = int(torch.randint(height - window + 1, (1,), generator=g))
    left = int(torch.randint(width - window + 1, (1,), generator=g))
    crop = image[None, :, top : top + window, left : left + window]
    if window != size:
        crop = F.interpolate(crop, size=(size, size), mode="bilinear", antialias=window > size, align_corners=False)
    if torch.rand(1, generator=g).item() < 0.5:
        crop = crop.flip(-1)
    return crop[0].clamp(0, 1)


class DegradedImages(Dataset):
    """``(degraded, clean)`` pairs, the same for the same ``seed`` and index.

    ``photos`` (scikit-image names or image files) are cropped at random; with none, the images are
    drawn procedurally. Each clean image is blurred (``blur``: the range of the Gaussian's standard
    deviation) and gets Gaussian noise of standard deviation ``noise``.
    """

    def __init__(
        self,
        count: int,
        size: int,
        seed: int,
        photos: Sequence[Union[str, Path]] = (),
        blur: tuple[float, float] = BLUR,
        noise: float = NOISE,
    ) -> None:
        self.count, self.size, self.seed = count, size, seed
        self.photos, self.blur, self.noise = list(photos), blur, noise

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        if self.photos:
            photo = self.photos[int(torch.randint(len(self.photos), (1,), generator=g))]
            clean = random_crop(load_photo(photo), self.size, g)
        else:
            clean = render(self.size, g)
        return degrade(clean, g, self.blur, self.noise), clean


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
        # channels_last: oneDNN and cuDNN run these convolutions faster in NHWC
        self.model = Restorer().to(memory_format=torch.channels_last)
        self.gradient_loss = GradientLoss("sobel", p=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        degraded, clean = (t.contiguous(memory_format=torch.channels_last) for t in batch)
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


def train(
    name: str, gradient_weight: float, photos: Sequence[Union[str, Path]], args: argparse.Namespace
) -> DeblurModule:
    L.seed_everything(args.seed, verbose=False)
    data = DegradedImages(args.steps * args.batch_size, args.image_size, args.seed, photos, args.blur, args.noise)
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


def ssim(x: Tensor, y: Tensor) -> Tensor:
    """The structural similarity of each pair of ``(N, C, H, W)`` images in [0, 1], averaged over
    channels: Wang et al. (2004), an 11-tap Gaussian window of standard deviation 1.5, valid pixels."""
    t = torch.arange(-5, 6, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-(t**2) / (2 * 1.5**2))
    kernel = kernel / kernel.sum()
    c = x.shape[1]

    def window_mean(z: Tensor) -> Tensor:
        z = F.conv2d(z, kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
        return F.conv2d(z, kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)

    mx, my = window_mean(x), window_mean(y)
    vx, vy, cov = window_mean(x * x) - mx**2, window_mean(y * y) - my**2, window_mean(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    index = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return index.flatten(1).mean(1)


def scores(restored: Tensor, clean: Tensor) -> dict:
    """PSNR (dB), mean absolute error of the Sobel gradient magnitude and SSIM, each averaged over images."""
    mse = ((restored - clean) ** 2).flatten(1).mean(1)
    psnr = (10 * torch.log10(1 / mse)).mean().item()
    gradient_error = (sobel_magnitude(restored) - sobel_magnitude(clean)).abs().mean().item()
    return {
        "psnr": round(psnr, 3),
        "gradient_error": round(gradient_error, 5),
        "ssim": round(ssim(restored, clean).mean().item(), 4),
    }


@torch.no_grad()
def evaluate(model: nn.Module, degraded: Tensor, clean: Tensor) -> tuple[dict, Tensor]:
    """The :func:`scores` of ``model``'s restorations of ``degraded``, and the restorations."""
    restored = model(degraded).clamp(0, 1)
    return scores(restored, clean), restored


def edge_window(image: Tensor, size: int) -> tuple[int, int]:
    """The top-left corner of the ``size`` x ``size`` window of ``image`` with the most edge (Sobel magnitude)."""
    energy = F.avg_pool2d(sobel_magnitude(image[None]).mean(1, keepdim=True), size, stride=max(1, size // 8))
    row, column = divmod(int(energy.flatten().argmax()), energy.shape[-1])
    return row * max(1, size // 8), column * max(1, size // 8)


def _tile(image: Tensor, width: int) -> Image.Image:
    pixels = (image.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).contiguous().numpy()
    height = round(image.shape[-2] * width / image.shape[-1])
    return Image.fromarray(pixels).resize((width, height), Image.NEAREST if width >= image.shape[-1] else Image.LANCZOS)


def save_figure(path: Path, columns: list[tuple[str, Tensor]], zoom: int = 64, width: int = 256) -> None:
    """Three rows under a title per column: the whole images with the zoomed window outlined, the
    window enlarged, and its Sobel gradient magnitude. The window is the target's (last column's)
    edgiest ``zoom`` x ``zoom`` square."""
    target = columns[-1][1]
    zoom = min(zoom, *target.shape[-2:])
    top, left = edge_window(target, zoom)
    crops = [image[:, top : top + zoom, left : left + zoom] for _, image in columns]
    edges = [sobel_magnitude(crop[None])[0].mean(0, keepdim=True).expand(3, -1, -1) for crop in crops]
    brightest = max(float(e.max()) for e in edges)
    font = ImageFont.load_default(size=15)
    header, pad = 24, 6
    wholes = [_tile(image, width) for _, image in columns]
    rows = [wholes[0].height, width, width]
    figure = Image.new("RGB", (len(columns) * (width + pad) + pad, header + sum(rows) + 3 * pad), "white")
    draw = ImageDraw.Draw(figure)
    scale = width / target.shape[-1]
    for k, (title, _) in enumerate(columns):
        x = pad + k * (width + pad)
        draw.text((x, 4), title, fill="black", font=font)
        figure.paste(wholes[k], (x, header))
        box = [x + left * scale, header + top * scale, x + (left + zoom) * scale, header + (top + zoom) * scale]
        draw.rectangle(box, outline=(255, 40, 40), width=2)
        figure.paste(_tile(crops[k], width), (x, header + rows[0] + pad))
        figure.paste(_tile((edges[k] / brightest).clamp(0, 1), width), (x, header + rows[0] + rows[1] + 2 * pad))
    figure.save(path, optimize=True)


def figure_image(args: argparse.Namespace, photos: Sequence[Union[str, Path]]) -> Tensor:
    """The clean image of the figure: a held-out photograph at half its resolution, the first held-out
    file (at most 384 pixels on its shorter side), or a procedural image."""
    if not photos:
        return render(192, torch.Generator().manual_seed(args.seed + 2))
    photo = load_photo(FIGURE_PHOTO if FIGURE_PHOTO in photos else photos[0])
    scale = 0.5 if not isinstance(photos[0], Path) else min(1.0, 384 / min(photo.shape[-2:]))
    if scale == 1.0:
        return photo
    size = [round(n * scale) for n in photo.shape[-2:]]
    return F.interpolate(photo[None], size=size, mode="bilinear", antialias=True, align_corners=False)[0].clamp(0, 1)


def main(argv: Optional[list[str]] = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=400, help="training steps per run")
    parser.add_argument("--image-size", type=int, default=64, help="side of the training and held-out crops")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--gradient-weight", type=float, default=0.5, help="weight of GradientLoss in the second run")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument(
        "--blur",
        type=float,
        nargs=2,
        default=BLUR,
        metavar=("MIN", "MAX"),
        help="range of the blur's standard deviation, in pixels",
    )
    parser.add_argument("--noise", type=float, default=NOISE, help="standard deviation of the added noise")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-images", type=int, default=48, help="held-out crops scored")
    parser.add_argument(
        "--data",
        choices=("photos", "procedural"),
        default=None,
        help="scikit-image's bundled photographs (the default) or procedurally drawn images",
    )
    parser.add_argument("--data-dir", type=Path, default=None, help="a folder of your own images instead")
    parser.add_argument("--output-dir", type=Path, default=Path("out/deblur"))
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.data_dir is not None and args.data is not None:
        parser.error("--data and --data-dir exclude each other")
    args.output_dir.mkdir(parents=True, exist_ok=True)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*GPU available but not used.*")
    warnings.filterwarnings("ignore", ".*treespec, LeafSpec.*")  # Lightning's, under newer torch
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # no banners between the two runs

    train_photos: Sequence[Union[str, Path]]
    held_out_photos: Sequence[Union[str, Path]]
    if args.data_dir is not None:
        train_photos, held_out_photos = folder_files(args.data_dir, "train"), folder_files(args.data_dir, "eval")
    elif args.data == "procedural":
        train_photos = held_out_photos = ()
    else:
        train_photos, held_out_photos = TRAIN_PHOTOS, HELD_OUT_PHOTOS
    if train_photos:
        names = [p.name if isinstance(p, Path) else p for p in (train_photos, held_out_photos)]
        print(f"training on crops of {', '.join(map(str, names[0]))}; held out: {', '.join(map(str, names[1]))}")

    runs = {"l1": 0.0, "l1+gradient": args.gradient_weight}
    models = {name: train(name, weight, train_photos, args) for name, weight in runs.items()}

    held_out = DegradedImages(args.eval_images, args.image_size, args.seed + 1, held_out_photos, args.blur, args.noise)
    degraded, clean = (torch.stack(t) for t in zip(*(held_out[i] for i in range(len(held_out)))))
    results, restored = {}, {}
    for name, model in models.items():
        results[name], restored[name] = evaluate(model, degraded, clean)
    results["degraded"], _ = evaluate(nn.Identity(), degraded, clean)  # the input itself, for scale

    print(f"\n{'run':<14}{'PSNR (dB)':>11}{'gradient error':>16}{'SSIM':>8}   ({args.eval_images} held-out crops)")
    for name, r in results.items():
        print(f"{name:<14}{r['psnr']:>11.2f}{r['gradient_error']:>16.4f}{r['ssim']:>8.3f}")
    (args.output_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")

    clean_figure = figure_image(args, held_out_photos)
    mid_blur = (args.blur[0] + args.blur[1]) / 2
    degraded_figure = degrade(clean_figure, torch.Generator().manual_seed(args.seed), (mid_blur, mid_blur), args.noise)
    with torch.no_grad():
        outputs = {name: model(degraded_figure[None])[0].clamp(0, 1) for name, model in models.items()}
    columns = [("degraded", degraded_figure), ("L1", outputs["l1"]), ("L1 + gradient", outputs["l1+gradient"])]
    titled = []
    for title, image in columns:
        r = scores(image[None], clean_figure[None])
        titled.append((f"{title}: {r['psnr']:.2f} dB, SSIM {r['ssim']:.3f}", image))
    save_figure(args.output_dir / "comparison.png", titled + [("target", clean_figure)])
    print(f"wrote {args.output_dir / 'comparison.png'} and {args.output_dir / 'results.json'}")
    return results


if __name__ == "__main__":
    main()
