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
if "OMP_NUM_THREADS" not in os.environ:
    # The tests' tensors are small, so a second intra-op thread buys nothing; on a busy 2-core machine every
    # parallel region then waits for a core (deblur's 3x32x32 blur: about 80 ms a call with two threads, 0.5 ms
    # with one). OMP_NUM_THREADS, when set, decides instead.
    torch.set_num_threads(1)
from hypothesis import settings
from references import save_random_weights

settings.register_profile("torchgrad", deadline=None, max_examples=40, derandomize=True)
settings.load_profile("torchgrad")


@pytest.fixture(scope="session")
def vgg_files(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Random weights of vgg16, vgg19 and vgg16_bn, each as features-only and full-model files."""
    directory = tmp_path_factory.mktemp("vgg")
    return {network: save_random_weights(network, directory) for network in ("vgg16", "vgg19", "vgg16_bn")}


@pytest.fixture(params=["padded", "border rows"])
def cpu_executor(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test on each of the CPU executors of padded stencils: ``torchgrad._padded`` (the input padded
    once), which float32 and float64 take, and the border-row executor of ``Separable``, which the others take."""
    if request.param == "border rows":
        monkeypatch.setattr("torchgrad._padded.usable", lambda op, x: None)
    return request.param
