"""Neural style transfer (Gatys et al. 2016) with torchgrad's losses.

    python examples/style_transfer.py                                   # the two images shipped here
    python examples/style_transfer.py --content me.jpg --style starry.jpg --size 256 --steps 300
    python examples/style_transfer.py --vgg-weights vgg19-dcbb9e9d.pth  # ImageNet VGG19 from a local file

Optimises the pixels so that their VGG19 Gram matrices match the style image's (StyleLoss), their
relu4_2 features match the content image's (PerceptualLoss), and they stay smooth
(TotalVariationLoss). Both targets are computed once (set_target): every step runs VGG on the
pixels only. It needs ImageNet VGG19 weights: from the torch hub cache (downloaded once when
online) or --vgg-weights. --random-weights runs without them, for tests: its output is NOT a
stylisation.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

import torch
from PIL import Image

from torchgrad.losses import PerceptualLoss, StyleLoss, TotalVariationLoss, WeightsUnavailableError

IMAGES = Path(__file__).with_name("images")


def load(path: Path, size: int) -> torch.Tensor:
    image = Image.open(path).convert("RGB").resize((size, size), Image.BICUBIC)
    pixels = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8).view(size, size, 3)
    return pixels.permute(2, 0, 1).float().div(255)[None].contiguous()


def save(image: torch.Tensor, path: Path) -> None:
    pixels = (image[0].clamp(0, 1) * 255).round().byte().permute(1, 2, 0).contiguous().numpy()
    Image.fromarray(pixels).save(path)


def progress(steps: int, quiet: bool):
    try:
        from tqdm import tqdm

        return tqdm(total=steps, disable=quiet, desc="style transfer")
    except ImportError:  # tqdm comes with lightning; without it, no bar
        return None


def main(argv: Optional[list[str]] = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--content", type=Path, default=IMAGES / "content.png")
    parser.add_argument("--style", type=Path, default=IMAGES / "style.png")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--optimizer", choices=("lbfgs", "adam"), default="lbfgs")
    parser.add_argument("--style-weight", type=float, default=1e6)
    parser.add_argument("--content-weight", type=float, default=1.0)
    parser.add_argument("--tv-weight", type=float, default=1e-3)
    parser.add_argument("--vgg-weights", type=Path, default=None, help="a local file of torchvision's VGG19 state dict")
    parser.add_argument(
        "--random-weights", action="store_true", help="a random VGG19 (smoke test: not a real stylisation)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=Path("out/style_transfer.png"))
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    weights = None if args.random_weights else (args.vgg_weights or "DEFAULT")
    if args.random_weights:
        print("*** --random-weights: VGG19 is random, so the output is NOT a real stylisation (smoke test only) ***")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        style_loss = StyleLoss("vgg19", pooling="avg", weights=weights).to(device)
        content_loss = PerceptualLoss("vgg19", layers=("relu4_2",), criterion="l2", pooling="avg", weights=weights).to(
            device
        )
    except WeightsUnavailableError as error:
        sys.exit(f"error: {error}")
    tv_loss = TotalVariationLoss(isotropic=True)

    content, style = load(args.content, args.size).to(device), load(args.style, args.size).to(device)
    style_loss.set_target(style)
    content_loss.set_target(content)
    pixels = content.clone().requires_grad_()

    def objective() -> tuple[torch.Tensor, dict]:
        s, c, t = style_loss(pixels), content_loss(pixels), tv_loss(pixels)
        return args.style_weight * s + args.content_weight * c + args.tv_weight * t, {
            "style": s.item(),
            "content": c.item(),
            "tv": t.item(),
        }

    history: list[float] = []
    bar = progress(args.steps, args.quiet)
    if args.optimizer == "adam":
        optimizer = torch.optim.Adam([pixels], lr=0.02)
        for _ in range(args.steps):
            optimizer.zero_grad()
            loss, parts = objective()
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                pixels.clamp_(0, 1)
            history.append(loss.item())
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.4g}")
    else:
        optimizer = torch.optim.LBFGS(
            [pixels], lr=1.0, max_iter=args.steps, history_size=20, line_search_fn="strong_wolfe"
        )

        def closure() -> torch.Tensor:
            optimizer.zero_grad()
            loss, _ = objective()
            loss.backward()
            history.append(loss.item())
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.4g}")
            return loss

        optimizer.step(closure)
    if bar is not None:
        bar.close()
    with torch.no_grad():
        pixels.clamp_(0, 1)  # what is saved
        final, parts = objective()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    save(pixels.detach().cpu(), args.output)
    print(
        f"loss {history[0]:.4g} -> {final.item():.4g} after {len(history)} evaluations; "
        f"style {parts['style']:.3g}, content {parts['content']:.3g}"
    )
    print(f"wrote {args.output}")
    return {"history": history, "final": final.item(), "output": args.output}


if __name__ == "__main__":
    main()
