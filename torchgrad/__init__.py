"""torchgrad: image-gradient operators for PyTorch, each with a hand-written backward.

Forward differences (TensorFlow's ``image_gradients``), Sobel, Scharr and Prewitt filters,
``torch.gradient`` compatible central differences, the Laplacian, the Hessian and the gradient
magnitude, as functions and modules. Every operator saves no tensors for backward, supports double
backward, ``torch.func`` and ``torch.compile``. TensorFlow's NHWC forms live in
:mod:`torchgrad.tf_compat`, OpenCV's ``(H, W[, C])`` filters in :mod:`torchgrad.cv2_compat`; the losses
built on the operators in :mod:`torchgrad.losses` (imported on first use, so that the operators alone
never import torchvision). On CUDA the operators and the losses run as Triton kernels where those serve;
:class:`use_kernels` (or ``TORCHGRAD_EXECUTOR=eager``) keeps them on plain tensor code, and a kernel that
cannot be compiled on the GPU does the same for the rest of the process, with one
:class:`KernelFallbackWarning`.
"""

import importlib
from types import ModuleType

from . import cv2_compat, tf_compat
from ._executor import KernelFallbackWarning, use_kernels
from .gradient import Gradient, GradientError, gradient
from .hessian import Hessian, hessian
from .image_gradients import ImageGradients, image_gradients
from .laplacian import Laplacian, laplacian
from .magnitude import GradientMagnitude, gradient_magnitude
from .prewitt import Prewitt, prewitt
from .scharr import Scharr, scharr
from .sobel import Sobel, sobel

__all__ = [
    "Gradient",
    "GradientError",
    "GradientMagnitude",
    "Hessian",
    "ImageGradients",
    "KernelFallbackWarning",
    "Laplacian",
    "Prewitt",
    "Scharr",
    "Sobel",
    "gradient",
    "gradient_magnitude",
    "hessian",
    "image_gradients",
    "laplacian",
    "prewitt",
    "scharr",
    "sobel",
    "use_kernels",
    "losses",
    "tf_compat",
    "cv2_compat",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> ModuleType:
    if name == "losses":
        return importlib.import_module(".losses", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
