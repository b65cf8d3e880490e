"""Shared test references: straightforward re-implementations of what torchgrad reproduces, and shared registries.

What each one reproduces:

- ``PADDINGS``, ``DEVICES``: the padding modes every filter takes (torchgrad's ``PADDING_MODES``); the devices a test
  runs on (CUDA when present). ``pad``: ``numpy.pad`` on tensors, every mode by its torchgrad name.
- ``LINEAR_OPERATORS``, ``coordinate_operator``: the linear operators (and option sets) that the property tests
  (gradcheck, adjoint identity, torch.func, compile) run over, generated from torchgrad's operator registry;
  ``gradient`` on a non-uniform grid.
- ``tensorflow_sobel_edges``: TensorFlow's ``tf.image.sobel_edges`` (reflect padding, depthwise 3x3 correlation,
  NHWC in, ``[B, H, W, C, 2]`` out with ``(dy, dx)`` last), in NumPy.
- ``conv_reference``: the 2-D Sobel/Scharr filters as a padded depthwise ``torch.nn.functional.conv2d``.
- ``naive_gradients``: every operator the losses use, by slicing (forward differences, TensorFlow's
  ``image_gradients``), ``torch.gradient`` (central differences) or padded ``conv2d``/``conv3d`` (Sobel, Scharr,
  Prewitt, and the Laplacian and Hessian with their explicit kernels, ``second_order_kernels``).
- ``mprnet_edge_loss``: MPRNet's ``EdgeLoss`` (Zamir et al. 2021) as its code computes it: a Laplacian band from a
  replicate-padded depthwise 5x5 Gaussian ``conv2d``, downsampling by slicing and zero-stuffed upsampling by
  strided assignment, then the Charbonnier loss ``mean(sqrt(diff^2 + eps^2))``; any number of channels, any device.
- ``save_random_weights``, ``reference_features``: random VGG weights saved as torchvision state-dict files, and the
  features of the full torchvision VGG (``torchvision.models.vgg16`` ...) with explicit ImageNet normalisation.
"""

from __future__ import annotations

import functools
import warnings
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import torchgrad
from torchgrad._registry import REGISTRY
from torchgrad._stencil import PADDING_MODES

PADDINGS = PADDING_MODES
DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")),
]


def _registered(name: str, **options: object) -> Callable[[torch.Tensor], tuple[torch.Tensor, ...]]:
    """The public function of registry entry ``name`` with ``options``, its result always a tuple."""
    fn = getattr(torchgrad, name)

    def operator(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = fn(x, **options)
        return out if isinstance(out, tuple) else (out,)

    return operator


def _linear_operators() -> dict[str, tuple[Callable[[torch.Tensor], tuple[torch.Tensor, ...]], int, int]]:
    """name -> (operator, spatial dims, smallest size per spatial axis).

    Every operator of the registry that takes a padding, for each of its forms (spatial dims, ksize), padding
    mode and ``normalized`` (where it divides, in 2-D), named ``{name}[_3d][_ksize{k}]_{padding}[_normalized]``; plus
    the operators with fixed border rules (forward and central differences) and options of ``gradient``.
    """
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
    for spec in REGISTRY.values():
        if not spec.takes_padding:
            continue
        for (spatial_dims, ksize), form in spec.forms:
            options: dict[str, object] = {}
            tag = spec.name
            if len(spec.spatial_dims) > 1:
                options["spatial_dims"] = spatial_dims
                tag += "_3d" if spatial_dims == 3 else ""
            if len(spec.ksizes) > 1:
                options["ksize"] = ksize
                tag += f"_ksize{ksize}" if ksize != 1 else ""
            for padding in PADDINGS:
                small = 2 if padding == "reflect" else 1
                # normalized only divides: checked on the 2-D forms (3-D gradgradchecks are the slow ones)
                for normalized in (False, True) if form.divisor != 1 and spatial_dims == 2 else (False,):
                    name = f"{tag}_{padding}{'_normalized' if normalized else ''}"
                    ops[name] = (
                        _registered(spec.name, padding=padding, normalized=normalized, **options),
                        spatial_dims,
                        small,
                    )
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


def tensorflow_sobel_edges(images: np.ndarray) -> np.ndarray:
    """tf.image.sobel_edges as TensorFlow computes it: reflect-pad by one, then a depthwise
    correlation with its two 3x3 kernels; NHWC in, [B, H, W, C, 2] out with (dy, dx) last."""
    kernels = [[[-1, -2, -1], [0, 0, 0], [1, 2, 1]], [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]]
    _, h, w, _ = images.shape
    padded = np.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
    out = np.zeros(images.shape + (2,), dtype=np.float64)
    for k, kernel in enumerate(kernels):
        for a in range(3):
            for b in range(3):
                out[..., k] += kernel[a][b] * padded[:, a : a + h, b : b + w, :]
    return out


NUMPY_PAD_MODES = {
    "reflect": "reflect",
    "replicate": "edge",
    "zeros": "constant",
    "circular": "wrap",
    "symmetric": "symmetric",
}


def pad(x: torch.Tensor, width: int, padding: str, spatial: int) -> torch.Tensor:
    """``x`` padded by ``width`` on both sides of each of its last ``spatial`` axes, as ``numpy.pad`` pads
    (the mode named as torchgrad names it; reflect and circular repeat past a short axis): differentiable."""
    for d in range(-spatial, 0):
        n = x.shape[d]
        if padding == "zeros":
            index = np.pad(np.arange(1, n + 1), width)  # 0: a zero sample
            x = torch.cat([torch.zeros_like(x.narrow(d, 0, 1)), x], dim=d)
        else:
            index = np.pad(np.arange(n), width, mode=NUMPY_PAD_MODES[padding])
        x = x.index_select(d, torch.as_tensor(index, device=x.device))
    return x


def conv_reference(x: torch.Tensor, smoothing: list[float], padding: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The 2-D filters as a padded depthwise conv2d, the usual hand-rolled way."""
    c = x.shape[1]
    kx = torch.tensor(smoothing, dtype=x.dtype)[:, None] * torch.tensor([-1.0, 0.0, 1.0], dtype=x.dtype)
    xp = pad(x, 1, padding, 2)
    dx = F.conv2d(xp, kx.expand(c, 1, 3, 3), groups=c)
    dy = F.conv2d(xp, kx.t().contiguous().expand(c, 1, 3, 3), groups=c)
    return dy, dx


SMOOTHING = {"sobel": [1.0, 2.0, 1.0], "scharr": [3.0, 10.0, 3.0], "prewitt": [1.0, 1.0, 1.0]}


def second_order_kernels(operator: str, spatial_dims: int, dtype: torch.dtype) -> list[torch.Tensor]:
    """The explicit 3x3 (3x3x3) correlation kernels of ``"laplacian"`` (ksize 1) and ``"hessian"`` (dyy, dyx, dxx),
    unnormalised."""
    second = torch.tensor([1.0, -2.0, 1.0], dtype=dtype)
    if operator == "laplacian":
        kernel = torch.zeros((3,) * spatial_dims, dtype=dtype)
        centre = (1,) * spatial_dims
        for axis in range(spatial_dims):
            for t in range(3):
                kernel[centre[:axis] + (t,) + centre[axis + 1 :]] += second[t]
        return [kernel]
    smooth = torch.tensor([1.0, 2.0, 1.0], dtype=dtype)
    diff = torch.tensor([-1.0, 0.0, 1.0], dtype=dtype)
    return [second[:, None] * smooth[None, :], diff[:, None] * diff[None, :], smooth[:, None] * second[None, :]]


NORMALIZERS = {"laplacian": 1, "hessian": 4}


def naive_gradients(
    x: torch.Tensor, operator: str, padding: str = "reflect", normalized: bool = False, absolute: bool = False
) -> list[torch.Tensor]:
    """Gradient components (outermost axis first) by slicing, padded convolution or torch.gradient.

    ``absolute`` uses the absolute values of the weights: on an indicator of invalid pixels it is
    non-zero exactly where a stencil reads one (a pixel read twice, as reflect padding does, counts
    even when its two weights cancel).
    """
    spatial = x.dim() - 2
    dims = list(range(2, x.dim()))
    if operator == "central":
        if absolute:  # interior reads i-1 and i+1, the two edges read their first two samples
            out = []
            for d in dims:
                n = x.shape[d]
                reads = torch.cat(
                    [
                        x.narrow(d, 0, 2).sum(d, keepdim=True),
                        x.narrow(d, 0, n - 2) + x.narrow(d, 2, n - 2),
                        x.narrow(d, n - 2, 2).sum(d, keepdim=True),
                    ],
                    dim=d,
                )
                out.append(reads)
            return out
        return list(torch.gradient(x, dim=dims))
    if operator == "diff":
        out = []
        for d in dims:
            sign = 1 if absolute else -1
            diff = x.narrow(d, 1, x.shape[d] - 1) + sign * x.narrow(d, 0, x.shape[d] - 1)
            out.append(torch.cat([diff, torch.zeros_like(x.narrow(d, 0, 1))], dim=d))
        return out
    xp = pad(x, 1, padding, spatial)
    c = x.shape[1]
    conv = F.conv2d if spatial == 2 else F.conv3d
    if operator in NORMALIZERS:
        out = []
        for kernel in second_order_kernels(operator, spatial, x.dtype):
            kernel = kernel.abs() if absolute else kernel
            y = conv(xp, kernel.expand(c, 1, *kernel.shape), groups=c)
            out.append(y / NORMALIZERS[operator] if normalized else y)
        return out
    s = torch.tensor(SMOOTHING[operator], dtype=x.dtype)
    diff = torch.tensor([-1.0, 0.0, 1.0], dtype=x.dtype)
    out = []
    for axis in range(spatial):
        kernel = torch.ones((1,) * spatial, dtype=x.dtype)
        for a in range(spatial):
            v = diff if a == axis else s
            kernel = kernel.unsqueeze(-1) * v.reshape((1,) * a + (3,))
        kernel = kernel.reshape((3,) * spatial)
        kernel = kernel.abs() if absolute else kernel
        y = conv(xp, kernel.expand(c, 1, *kernel.shape), groups=c)
        out.append(y / (2 * sum(SMOOTHING[operator]) ** (spatial - 1)) if normalized else y)
    return out


def mprnet_gaussian_kernel(channels: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """MPRNet's 5x5 Gaussian, the outer product of ``[.05, .25, .4, .25, .05]``, repeated per channel."""
    k = torch.tensor([[0.05, 0.25, 0.4, 0.25, 0.05]], dtype=dtype, device=device)
    return torch.matmul(k.t(), k).unsqueeze(0).repeat(channels, 1, 1, 1)


def mprnet_laplacian(current: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """MPRNet's ``EdgeLoss.laplacian_kernel``: ``current - conv_gauss(upsample(downsample(conv_gauss(current))))``."""

    def conv_gauss(img: torch.Tensor) -> torch.Tensor:
        n_channels, _, kw, kh = kernel.shape
        img = F.pad(img, (kw // 2, kh // 2, kw // 2, kh // 2), mode="replicate")
        return F.conv2d(img, kernel, groups=n_channels)

    filtered = conv_gauss(current)  # filter
    down = filtered[:, :, ::2, ::2]  # downsample
    new_filter = torch.zeros_like(filtered)
    new_filter[:, :, ::2, ::2] = down * 4  # upsample
    filtered = conv_gauss(new_filter)  # filter
    return current - filtered


def mprnet_edge_loss(
    x: torch.Tensor, y: torch.Tensor, eps: float = 1e-3, reduction: str = "mean", kernel: torch.Tensor | None = None
) -> torch.Tensor:
    """MPRNet's ``EdgeLoss()(x, y)`` on ``(N, C, H, W)``: the Charbonnier loss between the Laplacian bands
    (``reduction="sum"``/``"none"``: the same per-element values summed or kept). ``kernel``: the Gaussian built
    once, as MPRNet's ``__init__`` builds it (by default built here)."""
    if kernel is None:
        kernel = mprnet_gaussian_kernel(x.shape[1], x.dtype, x.device)
    diff = mprnet_laplacian(x, kernel) - mprnet_laplacian(y, kernel)
    per = torch.sqrt((diff * diff) + (eps * eps))
    return {"mean": torch.mean(per), "sum": torch.sum(per), "none": per}[reduction]


# The VGG references import torchvision (and torchgrad.losses) only when called, so that the operator tests,
# which import this module too, run without them.
CONFIGS = {"vgg16": "D", "vgg19": "E", "vgg16_bn": "D"}


def save_random_weights(network: str, directory: Path, seed: int = 0) -> dict[str, Path]:
    """A random ``features`` state dict saved as a features-only file and as a full-model file."""
    from torchvision.models import vgg as tv_vgg

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
    import torchvision

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = getattr(torchvision.models, network)(weights=None)
    state = torch.load(weights, weights_only=True)
    model.features.load_state_dict(
        {k.removeprefix("features."): v for k, v in state.items() if not k.startswith("classifier")}
    )
    return model.eval()


def reference_features(
    network: str,
    weights: Path,
    x: torch.Tensor,
    layers: list[str],
    pooling: str = "max",
    normalisation: Optional[tuple[torch.Tensor, torch.Tensor]] = None,
) -> dict[str, torch.Tensor]:
    """Full torchvision VGG, explicit normalisation (``(x - mean) / std``, or ``x * scale + shift`` for a given
    ``normalisation = (scale, shift)``), a loop over every feature layer."""
    from torchgrad.losses.vgg import IMAGENET_MEAN, IMAGENET_STD, layer_names

    model = _full_model(network, weights).to(x.dtype)
    if normalisation is None:
        mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, dtype=x.dtype).view(1, 3, 1, 1)
        h = (x - mean) / std
    else:
        scale, shift = (t.to(x.dtype).view(1, 3, 1, 1) for t in normalisation)
        h = x * scale + shift
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


# --- Depth losses: MiDaS's published loss and BTS's silog_loss, written from their formulas ---
def compute_scale_and_shift(prediction, target, mask):
    # system matrix: A = [[a_00, a_01], [a_10, a_11]]
    a_00 = torch.sum(mask * prediction * prediction, (1, 2))
    a_01 = torch.sum(mask * prediction, (1, 2))
    a_11 = torch.sum(mask, (1, 2))
    # right hand side: b = [b_0, b_1]
    b_0 = torch.sum(mask * prediction * target, (1, 2))
    b_1 = torch.sum(mask * target, (1, 2))
    # solution: x = A^-1 . b = [[a_11, -a_01], [-a_10, a_00]] / (a_00 * a_11 - a_01 * a_10) . b
    x_0 = torch.zeros_like(b_0)
    x_1 = torch.zeros_like(b_1)
    det = a_00 * a_11 - a_01 * a_01
    valid = det.nonzero()
    x_0[valid] = (a_11[valid] * b_0[valid] - a_01[valid] * b_1[valid]) / det[valid]
    x_1[valid] = (-a_01[valid] * b_0[valid] + a_00[valid] * b_1[valid]) / det[valid]
    return x_0, x_1


def reduction_batch_based(image_loss, M):
    # average of all valid pixels of the batch
    # avoid division by 0 (if sum(M) = sum(sum(mask)) = 0: sum(image_loss) = 0)
    divisor = torch.sum(M)
    if divisor == 0:
        return 0
    return torch.sum(image_loss) / divisor


def reduction_image_based(image_loss, M):
    # mean of average of valid pixels of an image
    # avoid division by 0 (if M = sum(mask) = 0: image_loss = 0)
    valid = M.nonzero()
    image_loss[valid] = image_loss[valid] / M[valid]
    return torch.mean(image_loss)


REDUCTIONS = {"batch-based": reduction_batch_based, "image-based": reduction_image_based}


def mse_loss(prediction, target, mask, reduction=reduction_batch_based):
    M = torch.sum(mask, (1, 2))
    res = prediction - target
    image_loss = torch.sum(mask * res * res, (1, 2))
    return reduction(image_loss, 2 * M)


def gradient_loss(prediction, target, mask, reduction=reduction_batch_based):
    M = torch.sum(mask, (1, 2))
    diff = prediction - target
    diff = torch.mul(mask, diff)
    grad_x = torch.abs(diff[:, :, 1:] - diff[:, :, :-1])
    mask_x = torch.mul(mask[:, :, 1:], mask[:, :, :-1])
    grad_x = torch.mul(mask_x, grad_x)
    grad_y = torch.abs(diff[:, 1:, :] - diff[:, :-1, :])
    mask_y = torch.mul(mask[:, 1:, :], mask[:, :-1, :])
    grad_y = torch.mul(mask_y, grad_y)
    image_loss = torch.sum(grad_x, (1, 2)) + torch.sum(grad_y, (1, 2))
    return reduction(image_loss, M)


def midas_gradient_matching(prediction, target, mask, scales=4, reduction="batch-based"):
    total = 0
    for scale in range(scales):
        step = pow(2, scale)
        total += gradient_loss(
            prediction[:, ::step, ::step],
            target[:, ::step, ::step],
            mask[:, ::step, ::step],
            reduction=REDUCTIONS[reduction],
        )
    return total


def midas_loss(prediction, target, mask, alpha=0.5, scales=4, reduction="batch-based"):
    """``(loss, prediction_ssi)`` of MiDaS's ``ScaleAndShiftInvariantLoss``."""
    scale, shift = compute_scale_and_shift(prediction, target, mask)
    prediction_ssi = scale.view(-1, 1, 1) * prediction + shift.view(-1, 1, 1)
    total = mse_loss(prediction_ssi, target, mask, reduction=REDUCTIONS[reduction])
    if alpha > 0:
        total += alpha * midas_gradient_matching(prediction_ssi, target, mask, scales, reduction)
    return total, prediction_ssi


def silog_loss(depth_est, depth_gt, mask, variance_focus=0.85):
    """BTS's ``silog_loss.forward`` (AdaBins's ``SILogLoss`` is the same with ``variance_focus`` 0.85)."""
    d = torch.log(depth_est[mask]) - torch.log(depth_gt[mask])
    return torch.sqrt((d**2).mean() - variance_focus * (d.mean() ** 2)) * 10.0
