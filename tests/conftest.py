"""Fixtures shared by the tests (references and registries live in references.py) and the hypothesis profile."""

from __future__ import annotations

import os

import pytest
import torch

if not torch.cuda.is_available():
    # The Triton executor's tests run its kernels on CPU tensors under Triton's interpreter, which must be
    # chosen before torchgrad._triton.kernels is imported. Triton itself may be imported already
    # (torchvision imports it): the kernels use its builtins only, which the interpreter patches at each launch.
    os.environ.setdefault("TRITON_INTERPRET", "1")
from hypothesis import settings
from references import save_random_weights

settings.register_profile("torchgrad", deadline=None, max_examples=40, derandomize=True)
settings.load_profile("torchgrad")


@pytest.fixture(scope="session")
def vgg_files(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Random weights of vgg16, vgg19 and vgg16_bn, each as features-only and full-model files."""
    directory = tmp_path_factory.mktemp("vgg")
    return {network: save_random_weights(network, directory) for network in ("vgg16", "vgg19", "vgg16_bn")}
