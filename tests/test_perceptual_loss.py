"""PerceptualLoss, StyleLoss and PerceptualGradientLoss against straightforward re-implementations;
cached targets, graphs, autocast, torch.func (Lightning checkpoints: tests/test_training.py)."""

from __future__ import annotations

import pytest
import torch
from references import DEVICES, reference_features

from torchgrad.losses import GradientLoss, PerceptualGradientLoss, PerceptualLoss, StyleLoss, gram_matrix

PERCEPTUAL_LAYERS = ["relu1_2", "relu2_2", "relu3_3", "relu4_3"]
STYLE_LAYERS = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]


def reference_perceptual(network, weights, x, y, layers, layer_weights, criterion, normalize):
    fx, fy = reference_features(network, weights, x, layers), reference_features(network, weights, y, layers)
    per_sample = 0
    for layer, w in zip(layers, layer_weights):
        a, b = fx[layer], fy[layer]
        if normalize:
            a, b = a / (a.norm(dim=1, keepdim=True) + 1e-10), b / (b.norm(dim=1, keepdim=True) + 1e-10)
        d = (a - b).abs() if criterion == "l1" else (a - b) ** 2
        per_sample = per_sample + w * d.mean(dim=(1, 2, 3))
    return per_sample


@pytest.mark.parametrize(
    "layers, layer_weights, criterion, normalize",
    [
        (PERCEPTUAL_LAYERS, [1.0] * 4, "l1", False),
        (["relu3_3"], [2.0], "l2", False),
        (["conv2_2", "relu4_1"], [0.5, 1.5], "l1", True),
    ],
)
def test_perceptual_matches_reference(vgg_files, layers, layer_weights, criterion, normalize) -> None:
    x = torch.rand(2, 3, 32, 32, dtype=torch.float64, requires_grad=True)
    y = torch.rand(2, 3, 32, 32, dtype=torch.float64)
    loss = PerceptualLoss(
        "vgg16", layers, layer_weights, criterion, normalize, reduction="none", weights=vgg_files["vgg16"]["full"]
    ).double()
    ours = loss(x, y)
    ref = reference_perceptual("vgg16", vgg_files["vgg16"]["full"], x, y, layers, layer_weights, criterion, normalize)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-7)
    g_ours = torch.autograd.grad(ours.sum(), x)[0]
    torch.testing.assert_close(g_ours, torch.autograd.grad(ref.sum(), x)[0], rtol=1e-5, atol=1e-7)
    loss.reduction = "mean"
    torch.testing.assert_close(loss(x, y), ref.mean(), rtol=1e-5, atol=1e-7)


def test_style_matches_reference(vgg_files) -> None:
    """A style image of another size than the input's: each Gram matrix is divided by its own C H W."""
    x = torch.rand(2, 3, 32, 32, dtype=torch.float64, requires_grad=True)
    style = torch.rand(1, 3, 40, 24, dtype=torch.float64)
    loss = StyleLoss(weights=vgg_files["vgg19"]["features"], layer_weights=[1, 2, 3, 4, 5], reduction="none").double()
    ours = loss(x, style)
    fx = reference_features("vgg19", vgg_files["vgg19"]["features"], x, STYLE_LAYERS)
    fs = reference_features("vgg19", vgg_files["vgg19"]["features"], style, STYLE_LAYERS)
    ref = 0
    for w, layer in zip([1, 2, 3, 4, 5], STYLE_LAYERS):
        per = []
        for i in range(2):  # the per-sample loop that gram_matrix avoids
            f, s = fx[layer][i].flatten(1), fs[layer][0].flatten(1)
            per.append(((f @ f.t() / f.numel() - s @ s.t() / s.numel()) ** 2).mean())
        ref = ref + w * torch.stack(per)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-12)
    torch.testing.assert_close(
        torch.autograd.grad(ours.sum(), x)[0], torch.autograd.grad(ref.sum(), x)[0], rtol=1e-5, atol=1e-12
    )


def test_gram_matrix_is_float32_under_autocast() -> None:
    f = torch.rand(2, 8, 5, 5).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        g = gram_matrix(f)
    assert g.dtype == torch.float32
    torch.testing.assert_close(g, gram_matrix(f.float()))


def test_cached_target_runs_vgg_on_the_input_only(vgg_files) -> None:
    loss = StyleLoss(layers=("relu1_1", "relu2_1"), weights=vgg_files["vgg19"]["features"])
    style, x = torch.rand(1, 3, 32, 32), torch.rand(3, 3, 32, 32, requires_grad=True)
    expected = loss(x, style)
    loss.set_target(style)
    calls: list[int] = []
    loss.features.net[0].register_forward_hook(lambda *a: calls.append(1))
    torch.testing.assert_close(loss(x), expected)
    assert len(calls) == 1
    assert all(not v.requires_grad for v in loss.cached_target.values())
    loss.double()
    assert all(v.dtype == torch.float64 for v in loss.cached_target.values())
    loss.clear_target()
    assert loss.cached_target is None  # a call without a target is then refused (tests/test_validation.py)


def test_target_without_a_graph_unless_it_requires_grad(vgg_files) -> None:
    loss = PerceptualLoss(layers=("relu2_2",), weights=vgg_files["vgg16"]["features"])
    grad_modes: list[bool] = []
    loss.features.net[0].register_forward_hook(lambda *a: grad_modes.append(torch.is_grad_enabled()))
    x = torch.rand(2, 3, 32, 32, requires_grad=True)
    y = torch.rand(2, 3, 32, 32)
    loss(x, y).backward()
    assert grad_modes == [False, True]  # target first, without a graph
    y.requires_grad_()
    loss(x, y).backward()
    assert y.grad is not None and y.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "options, operator, p, weights",
    [({"perceptual_weight": 0.7, "gradient_weight": 0.2}, "sobel", 2, (0.7, 0.2))]  # the default operator and p
    + [({"gradient_operator": o, "gradient_p": 1}, o, 1, (1.0, 0.05)) for o in ("prewitt", "laplacian", "hessian")],
)
def test_perceptual_gradient_loss_is_the_weighted_sum(
    vgg_files, options: dict, operator: str, p: int, weights: tuple[float, float]
) -> None:
    x, y = torch.rand(2, 3, 16, 16, requires_grad=True), torch.rand(2, 3, 16, 16)
    vgg = dict(layers=("relu1_2",), weights=vgg_files["vgg16"]["features"])
    loss = PerceptualGradientLoss(**options, **vgg)
    total, parts = loss(x, y, return_parts=True)
    torch.testing.assert_close(parts["perceptual"], PerceptualLoss(**vgg)(x, y).detach())
    torch.testing.assert_close(parts["gradient"], GradientLoss(operator, p=p)(x, y).detach())
    torch.testing.assert_close(total, weights[0] * parts["perceptual"] + weights[1] * parts["gradient"])
    torch.testing.assert_close(loss(x, y), total)


def test_autocast_and_dtypes(vgg_files) -> None:
    loss = PerceptualLoss(layers=("relu2_2",), weights=vgg_files["vgg16"]["features"])
    x, y = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    expected = loss(x, y)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = loss(x, y)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, expected, rtol=5e-2, atol=1e-3)
    assert loss.double()(x.double(), y.double()).dtype == torch.float64
    cl = x.contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(loss.float()(cl, y), expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
def test_devices(device: str, vgg_files) -> None:
    loss = PerceptualGradientLoss(layers=("relu2_2",), weights=vgg_files["vgg16"]["features"]).to(device)
    x = torch.rand(2, 3, 32, 32, device=device, requires_grad=True)
    loss(x, torch.rand(2, 3, 32, 32, device=device)).backward()
    assert x.grad.device.type == device


def test_torch_func_and_half_precision_normalization(vgg_files) -> None:
    from torch.func import jvp, vmap

    loss = PerceptualLoss(
        layers=("relu2_2",), reduction="none", normalize_features=True, weights=vgg_files["vgg16"]["features"]
    ).double()
    # Its own generator: the finite difference below must not straddle a ReLU kink, whatever ran before.
    g = torch.Generator().manual_seed(0)
    xs, ys = (torch.rand(3, 2, 3, 16, 16, dtype=torch.float64, generator=g) for _ in range(2))
    torch.testing.assert_close(vmap(loss)(xs, ys), torch.stack([loss(xs[i], ys[i]) for i in range(3)]))
    t = torch.randn(xs[0].shape, dtype=torch.float64, generator=g)
    _, tangent = jvp(lambda a: loss(a, ys[0]).sum(), (xs[0],), (t,))
    eps = 1e-6
    fd = (loss(xs[0] + eps * t, ys[0]).sum() - loss(xs[0] - eps * t, ys[0]).sum()) / (2 * eps)
    torch.testing.assert_close(tangent, fd, rtol=1e-4, atol=1e-7)
    zeros = torch.zeros(1, 3, 16, 16)  # all-zero feature vectors: 0 / (0 + eps), not NaN in float16
    assert torch.isfinite(loss.half()(zeros.half(), zeros.half())).all()
