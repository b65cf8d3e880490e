"""LightningModules for the training tests (importable by the processes that DDP spawns)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import lightning as L
import torch
import torch.nn.functional as F

from torchgrad.losses import (
    EdgeAwareSmoothnessLoss,
    GradientDifferenceLoss,
    GradientLoss,
    PerceptualGradientLoss,
    PerceptualLoss,
    StyleLoss,
    TotalVariationLoss,
)

Weights = Optional[Path]
BUILDERS: dict[str, Callable[[Weights, Weights], torch.nn.Module]] = {
    "gradient": lambda vgg16, vgg19: GradientLoss("sobel", p=1),
    "gradient_difference": lambda vgg16, vgg19: GradientDifferenceLoss(alpha=1.0),
    "total_variation": lambda vgg16, vgg19: TotalVariationLoss(isotropic=True),
    "edge_aware": lambda vgg16, vgg19: EdgeAwareSmoothnessLoss(),
    "perceptual": lambda vgg16, vgg19: PerceptualLoss(layers=("relu1_2", "relu2_2"), weights=vgg16),
    "style": lambda vgg16, vgg19: StyleLoss(layers=("relu1_1", "relu2_1"), weights=vgg19),
    "perceptual_gradient": lambda vgg16, vgg19: PerceptualGradientLoss(layers=("relu1_2",), weights=vgg16),
}
"""Each loss the training tests fit, built from the VGG16 and VGG19 weights files."""
LOSSES = list(BUILDERS)


class LossModule(L.LightningModule):
    """A one-layer image model trained with L1 plus ``loss_name``; logs each term."""

    def __init__(
        self,
        loss_name: str,
        vgg16: Optional[str] = None,
        vgg19: Optional[str] = None,
        out_dir: Optional[str] = None,
        lr: float = 0.05,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        torch.manual_seed(0)
        out_channels = 1 if loss_name == "edge_aware" else 3
        self.model = torch.nn.Conv2d(3, out_channels, 3, padding=1)
        self.criterion = BUILDERS[loss_name](vgg16 and Path(vgg16), vgg19 and Path(vgg19))

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        out = self.model(x)
        name = self.hparams.loss_name
        if name == "edge_aware":
            term = self.criterion(out.sigmoid() + 0.1, x)
            l1 = F.l1_loss(out.mean(1, keepdim=True), y.mean(1, keepdim=True))
        elif name == "total_variation":
            term, l1 = self.criterion(out), F.l1_loss(out, y)
        elif name == "perceptual_gradient":
            term, parts = self.criterion(out, y, return_parts=True)
            self.log_dict({f"train/{k}": v for k, v in parts.items()})
            l1 = F.l1_loss(out, y)
        else:
            term, l1 = self.criterion(out, y), F.l1_loss(out, y)
        self.log("train/l1", l1)
        self.log(f"train/{name}", term)
        return l1 + term

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.model.parameters(), lr=self.hparams.lr)

    def on_train_end(self) -> None:
        if self.hparams.out_dir:
            torch.save(
                self.model.state_dict(),
                Path(self.hparams.out_dir) / f"rank{self.global_rank}_of_{self.trainer.world_size}.pt",
            )


def image_pairs(count: int = 16, size: int = 32) -> torch.utils.data.TensorDataset:
    g = torch.Generator().manual_seed(1)
    x = torch.rand(count, 3, size, size, generator=g)
    return torch.utils.data.TensorDataset(x, (x + 0.1 * torch.randn(x.shape, generator=g)).clamp(0, 1))


class RankInterleaved(torch.utils.data.Sampler):
    """Sample ``rank::world_size`` in order, reading the rank when iterated (inside each process)."""

    def __init__(self, length: int) -> None:
        self.length = length

    def _rank_world(self) -> tuple[int, int]:
        dist = torch.distributed
        return (dist.get_rank(), dist.get_world_size()) if dist.is_available() and dist.is_initialized() else (0, 1)

    def __iter__(self):
        rank, world = self._rank_world()
        return iter(range(rank, self.length, world))

    def __len__(self) -> int:
        rank, world = self._rank_world()
        return len(range(rank, self.length, world))
