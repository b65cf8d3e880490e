"""Shared fixtures: the operator registry that the property tests run over."""

from __future__ import annotations

from typing import Callable

import pytest
import torch
from hypothesis import settings

import torchgrad

settings.register_profile("torchgrad", deadline=None, max_examples=40, derandomize=True)
settings.load_profile("torchgrad")

PADDINGS = ("reflect", "replicate", "zeros", "circular")
DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")),
]


def _linear_operators() -> dict[str, tuple[Callable[[torch.Tensor], tuple[torch.Tensor, ...]], int, int]]:
    """name -> (operator, spatial dims, smallest size per spatial axis)."""
    ops: dict[str, tuple[Callable, int, int]] = {
        "image_gradients": (torchgrad.image_gradients, 2, 1),
        "image_gradients_3d": (lambda x: torchgrad.image_gradients(x, spatial_dims=3), 3, 1),
        "gradient": (lambda x: torchgrad.gradient(x, dim=(-2, -1)), 2, 2),
        "gradient_edge2_spacing": (
            lambda x: torchgrad.gradient(x, spacing=[0.5, 2.0], dim=[-2, -1], edge_order=2),
            2,
            3,
        ),
        "gradient_reversed_dims": (lambda x: torchgrad.gradient(x, spacing=1.5, dim=[-1, -2]), 2, 2),
    }
    for padding in PADDINGS:
        small = 2 if padding == "reflect" else 1
        for normalized in (False, True):
            tag = f"{padding}{'_normalized' if normalized else ''}"
            ops[f"sobel_{tag}"] = (
                lambda x, p=padding, n=normalized: torchgrad.sobel(x, padding=p, normalized=n),
                2,
                small,
            )
            ops[f"scharr_{tag}"] = (
                lambda x, p=padding, n=normalized: torchgrad.scharr(x, padding=p, normalized=n),
                2,
                small,
            )
        ops[f"sobel_3d_{padding}"] = (lambda x, p=padding: torchgrad.sobel(x, padding=p, spatial_dims=3), 3, small)
    return ops


LINEAR_OPERATORS = _linear_operators()


def coordinate_operator(x: torch.Tensor, edge_order: int = 1) -> tuple[torch.Tensor, ...]:
    """``gradient`` on a non-uniform grid along the last two axes (coordinates derived from the shape)."""
    coords = [
        torch.linspace(0, 1, x.shape[d], dtype=torch.float64, device=x.device) ** 2 * 3
        + torch.arange(x.shape[d], device=x.device)
        for d in (-2, -1)
    ]
    return torchgrad.gradient(x, spacing=coords, dim=(-2, -1), edge_order=edge_order)


@pytest.fixture(scope="session")
def vgg_files(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Random weights of vgg16, vgg19 and vgg16_bn, each as features-only and full-model files."""
    from vgg_fixtures import save_random_weights

    directory = tmp_path_factory.mktemp("vgg")
    return {network: save_random_weights(network, directory) for network in ("vgg16", "vgg19", "vgg16_bn")}
