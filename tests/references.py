"""Shared test references: straightforward re-implementations of what torchgrad reproduces (TensorFlow's
``sobel_edges``, padded ``conv2d``/``conv3d`` filters, ``numpy.pad``, MPRNet's ``EdgeLoss``, torchvision's VGG,
MiDaS's and BTS's depth losses), each as its source computes it; and ``OPERATORS``, the operator catalogue of every
executor's tests, generated from torchgrad's operator registry (``LINEAR_OPERATORS``: the part the property tests
run over).
"""

from __future__ import annotations

import functools
import warnings
from pathlib import Path
from typing import Any, Callable, NamedTuple, Optional

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import torchgrad
from torchgrad import cv2_compat
from torchgrad._filters import build_operator
from torchgrad._linear import apply_operator
from torchgrad._registry import REGISTRY, OperatorSpec
from torchgrad._separable import Separable
from torchgrad._stencil import PADDING_MODES, padded_stencil
from torchgrad.gradient import _uniform_stencil

PADDINGS = PADDING_MODES
DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")),
]


Outputs = tuple[torch.Tensor, ...]


class Operator(NamedTuple):
    """An operator of the catalogue: its call (outputs as a tuple), spatial dims, smallest size per spatial axis, the
    ``Separable`` it runs for an input (``None`` for OpenCV's layout, which reads the plane ``x[0]``),
    ``gradient_magnitude`` with the same operator and options (first-order operators), and whether the property
    tests (``LINEAR_OPERATORS``) run it."""

    call: Callable[[torch.Tensor], Outputs]
    spatial_dims: int
    smallest: int
    separable: Optional[Callable[[torch.Tensor], Separable]]
    magnitude: Optional[Callable[[torch.Tensor], Outputs]] = None
    property_tested: bool = True


def _registered(fn: Callable[..., Any], **options: object) -> Callable[[torch.Tensor], Outputs]:
    """The public function ``fn`` with ``options``, its result always a tuple."""

    def operator(x: torch.Tensor) -> Outputs:
        out = fn(x, **options)
        return out if isinstance(out, tuple) else (out,)

    return operator


def opencv_sobel(ksize: int, padding: str, dims: tuple[int, ...]) -> Separable:
    """OpenCV's Sobel kernels of ``ksize`` taps as a gradient along ``dims``: the derivative along each, smoothing
    across."""
    taps = {1: cv2_compat._kernel(1, ksize), 0: cv2_compat._kernel(0, ksize)}
    return Separable(tuple(tuple(padded_stencil(d, taps[d == along], padding) for d in dims) for along in dims))


GRADIENTS: dict[str, dict[str, object]] = {
    "gradient": {"dim": (-2, -1)},
    "gradient_edge2_spacing": {"spacing": [0.5, 2.0], "dim": [-2, -1], "edge_order": 2},
    "gradient_reversed_dims": {"spacing": 1.5, "dim": [-1, -2]},
    "gradient_3d": {"spacing": (1.0, 2.0, 0.25), "dim": (-3, -2, -1)},
    "gradient_3d_edge2": {"spacing": (1.0, 0.25, 1.0), "dim": (-3, -2, -1), "edge_order": 2},
}
"""``gradient``'s options in the catalogue (the property tests run the 2-D ones)."""


def _built(
    spec: OperatorSpec, padding: Optional[str], normalized: bool, spatial_dims: int, ksize: int = 1
) -> Callable[[torch.Tensor], Separable]:
    """The ``Separable`` that the public function of ``spec`` builds for an input, with these options."""
    return lambda x: build_operator(spec.name, spec, x, padding, normalized, spatial_dims, ksize)


def _gradient(options: dict[str, Any]) -> Operator:
    dims, edge_order, spacing = options["dim"], options.get("edge_order", 1), options.get("spacing", 1)
    steps = spacing if isinstance(spacing, (list, tuple)) else [spacing] * len(dims)

    def separable(x: torch.Tensor) -> Separable:
        return Separable(tuple((_uniform_stencil(x, d, h, edge_order),) for d, h in zip(dims, steps)))

    return Operator(
        _registered(torchgrad.gradient, **options), len(dims), edge_order + 1, separable, None, len(dims) == 2
    )


def _catalogue() -> dict[str, Operator]:
    """name -> :class:`Operator`, for the tests of every executor.

    Every form (spatial dims, ksize) of every operator of the registry, each padding mode and ``normalized`` (where
    it divides), named ``{name}[_3d][_ksize{k}]_{padding}[_normalized]``; forward differences
    (``image_gradients[_3d]``); ``gradient`` with the options of :data:`GRADIENTS`; OpenCV's long Sobel kernels
    (``sobel7_{padding}``, ``sobel5_3d_symmetric``, through torchgrad's autograd Functions: no public function
    takes them along every axis) and two of its functions. The property tests leave out ``normalized`` in 3-D (it
    only divides; 3-D gradgradchecks are the slow ones), 3-D ``gradient`` and OpenCV's kernels.
    """
    ops: dict[str, Operator] = {}
    for spatial_dims in (2, 3):
        three = {"spatial_dims": 3} if spatial_dims == 3 else {}
        ops["image_gradients" + ("_3d" if three else "")] = Operator(
            _registered(torchgrad.image_gradients, **three),
            spatial_dims,
            1,
            _built(REGISTRY["diff"], None, False, spatial_dims),
            _registered(torchgrad.gradient_magnitude, operator="diff", spatial_dims=spatial_dims),
        )
    ops |= {name: _gradient(options) for name, options in GRADIENTS.items()}
    for spec in REGISTRY.values():
        if not spec.takes_padding:
            continue
        for (spatial_dims, ksize), form in spec.forms:
            options: dict[str, Any] = {}
            tag = spec.name
            if len(spec.spatial_dims) > 1:
                options["spatial_dims"] = spatial_dims
                tag += "_3d" if spatial_dims == 3 else ""
            if len(spec.ksizes) > 1:
                options["ksize"] = ksize
                tag += f"_ksize{ksize}" if ksize != 1 else ""
            for padding in PADDINGS:
                for normalized in (False, True) if form.divisor != 1 else (False,):
                    chosen = {"padding": padding, "normalized": normalized, **options}
                    ops[f"{tag}_{padding}{'_normalized' if normalized else ''}"] = Operator(
                        _registered(getattr(torchgrad, spec.name), **chosen),
                        spatial_dims,
                        2 if padding == "reflect" else 1,
                        _built(spec, padding, normalized, spatial_dims, ksize),
                        _registered(torchgrad.gradient_magnitude, operator=spec.name, **chosen)
                        if spec.first_order
                        else None,
                        not (normalized and spatial_dims == 3),
                    )
    for name, ksize, paddings, spatial_dims in (("sobel7", 7, PADDINGS, 2), ("sobel5_3d", 5, ["symmetric"], 3)):
        for padding in paddings:
            op = opencv_sobel(ksize, padding, tuple(range(-spatial_dims, 0)))
            separable = lambda x, op=op: op  # noqa: E731
            call = lambda x, op=op: apply_operator(op, x)  # noqa: E731
            small = 2 if padding == "reflect" else 1
            ops[f"{name}_{padding}"] = Operator(call, spatial_dims, small, separable, None, False)
    # OpenCV's functions, on the plane x[0]
    sobel = lambda x: (cv2_compat.Sobel(x[0], -1, 1, 1, ksize=5),)  # noqa: E731
    laplacian = lambda x: (cv2_compat.Laplacian(x[0], -1, ksize=7, borderType=cv2_compat.BORDER_REFLECT),)  # noqa: E731
    ops |= {"cv2_sobel_ksize5": Operator(sobel, 2, 1, None, None, False)}
    ops |= {"cv2_laplacian_ksize7": Operator(laplacian, 2, 1, None, None, False)}
    return ops


OPERATORS = _catalogue()
LINEAR_OPERATORS = {name: op[:3] for name, op in OPERATORS.items() if op.property_tested}
"""name -> (call, spatial dims, smallest size per spatial axis): the operators the property tests (gradcheck, the
adjoint identity, torch.func, compile) run over."""


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
