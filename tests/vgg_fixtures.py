"""Random VGG weights saved to temporary files, and a straightforward reference implementation."""

from __future__ import annotations

import functools
import warnings
from pathlib import Path

import torch
import torchvision
from torchvision.models import vgg as tv_vgg

from torchgrad.losses.vgg import IMAGENET_MEAN, IMAGENET_STD, layer_names

CONFIGS = {"vgg16": "D", "vgg19": "E", "vgg16_bn": "D"}


def save_random_weights(network: str, directory: Path, seed: int = 0) -> dict[str, Path]:
    """A random ``features`` state dict saved as a features-only file and as a full-model file."""
    torch.manual_seed(seed)
    features = tv_vgg.make_layers(tv_vgg.cfgs[CONFIGS[network]], batch_norm=network.endswith("_bn"))
    with torch.no_grad():  # non-trivial batch-norm statistics
        for m in features.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    state = features.state_dict()
    paths = {"features": directory / f"{network}_features.pth", "full": directory / f"{network}_full.pth"}
    torch.save(state, paths["features"])
    full = {f"features.{k}": v for k, v in state.items()}
    full["classifier.0.weight"] = torch.zeros(4, 4)  # a full model file also holds the classifier
    torch.save(full, paths["full"])
    return paths


@functools.lru_cache(maxsize=None)
def _full_model(network: str, weights: Path) -> torch.nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = getattr(torchvision.models, network)(weights=None)
    state = torch.load(weights, weights_only=True)
    model.features.load_state_dict(
        {k.removeprefix("features."): v for k, v in state.items() if not k.startswith("classifier")}
    )
    return model.eval()


def reference_features(
    network: str, weights: Path, x: torch.Tensor, layers: list[str], pooling: str = "max"
) -> dict[str, torch.Tensor]:
    """Full torchvision VGG, explicit normalisation, a loop over every feature layer."""
    model = _full_model(network, weights).to(x.dtype)
    mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=x.dtype).view(1, 3, 1, 1)
    h = (x - mean) / std
    out = {}
    for name, module in zip(layer_names(network), model.features):
        if pooling == "avg" and isinstance(module, torch.nn.MaxPool2d):
            module = torch.nn.AvgPool2d(2, 2)
        if isinstance(module, torch.nn.ReLU):
            module = torch.nn.ReLU()
        h = module(h)
        if name in layers:
            out[name] = h
        if all(n in out for n in layers):
            break
    return out
