"""Fixtures shared by the tests (references and registries live in references.py) and the hypothesis profile."""

from __future__ import annotations

import pytest
from hypothesis import settings
from references import save_random_weights

settings.register_profile("torchgrad", deadline=None, max_examples=40, derandomize=True)
settings.load_profile("torchgrad")


@pytest.fixture(scope="session")
def vgg_files(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Random weights of vgg16, vgg19 and vgg16_bn, each as features-only and full-model files."""
    directory = tmp_path_factory.mktemp("vgg")
    return {network: save_random_weights(network, directory) for network in ("vgg16", "vgg19", "vgg16_bn")}
