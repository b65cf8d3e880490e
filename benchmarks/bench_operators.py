"""Speed and saved memory of torchgrad's operators next to the usual alternatives.

    python benchmarks/bench_operators.py                 # (16, 3, 512, 512) float32 on the CPU
    python benchmarks/bench_operators.py --device cuda   # float32 and bfloat16, bandwidth against a copy

On the CPU (``--table speedup``, the CPU's default): times forward and forward+backward (medians; the
upstream gradients are made once, outside the timed region), reports the bytes each saves for backward
and checks the speed-ups the project aims for against kornia, torchmetrics, ``torch.gradient`` and OpenCV.

On CUDA (``--table bandwidth``, CUDA's default; it runs on the CPU too): for float32 and bfloat16, median
device times from CUDA events, the effective bandwidth of each call (the bytes it must move over its time,
see ``_harness.forward_bytes`` and ``step_bytes``) and its fraction of a device-to-device copy measured in the
same run, next to kornia, torchmetrics, ``torch.gradient`` and ``torch.compile`` of the naive conv2d Sobel;
checks each operator against 70% (forward) and 60% (forward+backward) of the copy's bandwidth and bfloat16
against float32. Each table writes its own section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import math
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import (  # noqa: E402
    BandwidthRun,
    Case,
    bandwidth_notes,
    dtype_name,
    environment,
    forward_bytes,
    markdown_table,
    measure_dtypes,
    median_ms,
    publish,
    saved_bytes,
    step_bytes,
    verdict_rows,
)
from _naive import naive_sobel, sobel_weight  # noqa: E402

import torchgrad  # noqa: E402

Op = Callable[[torch.Tensor], tuple[torch.Tensor, ...]]


@dataclass
class Result:
    name: str
    forward_ms: float
    backward_ms: float
    saved: int


def _references() -> dict[str, Op]:
    import kornia
    import torchmetrics.functional.image as tm_image

    warnings.filterwarnings("ignore", category=FutureWarning)
    return {
        "torchmetrics image_gradients": lambda x: tuple(tm_image.image_gradients(x)),
        "kornia spatial_gradient (sobel)": lambda x: (kornia.filters.spatial_gradient(x, mode="sobel"),),
        "torch.gradient (autograd)": lambda x: torch.gradient(x, dim=(-2, -1)),
        "kornia sobel (magnitude)": lambda x: (kornia.filters.sobel(x),),
        "kornia laplacian (3x3)": lambda x: (kornia.filters.laplacian(x, 3, border_type="reflect"),),
        "kornia spatial_gradient (sobel, order=2)": lambda x: (
            kornia.filters.spatial_gradient(x, mode="sobel", order=2),
        ),
    }


def measure_opencv(x: torch.Tensor, repeats: int) -> list[Result]:
    """Forward medians of ``cv2.Sobel`` (``ksize=5``, ``dx=1``) and ``cv2.Laplacian`` (``ksize=1``), NumPy in and
    out, next to their ``cv2_compat`` ports, and of the three second-order ``cv2.Sobel`` calls of a Hessian.

    All get the batch as ``N`` images in OpenCV's ``(H, W, C)`` layout, one call per image, and the same number
    of threads. Not differentiable on OpenCV's side, so their forward+backward time is NaN.
    """
    import cv2

    cv2.setNumThreads(torch.get_num_threads())
    images = x.permute(0, 2, 3, 1).contiguous()
    arrays = list(images.numpy())
    tensors = list(images.unbind(0))
    compat = torchgrad.cv2_compat
    forward_ms = median_ms(
        [
            lambda: [cv2.Sobel(a, cv2.CV_32F, 1, 0, ksize=5) for a in arrays],
            lambda: [compat.Sobel(t, cv2.CV_32F, 1, 0, ksize=5) for t in tensors],
            lambda: [cv2.Laplacian(a, cv2.CV_32F, ksize=1) for a in arrays],
            lambda: [compat.Laplacian(t, cv2.CV_32F, ksize=1) for t in tensors],
            lambda: [[cv2.Sobel(a, cv2.CV_32F, dx, 2 - dx, ksize=3) for dx in (0, 1, 2)] for a in arrays],
        ],
        x.device,
        repeats,
    )
    return [Result(name, ms, float("nan"), 0) for name, ms in zip(OPENCV_CASES, forward_ms)]


OPENCV_CASES = (
    "cv2.Sobel ksize=5 (N (H, W, C) images)",
    "cv2_compat.Sobel ksize=5 (N (H, W, C) images)",
    "cv2.Laplacian ksize=1 (N (H, W, C) images)",
    "cv2_compat.Laplacian ksize=1 (N (H, W, C) images)",
    "cv2.Sobel orders (0, 2), (1, 1), (2, 0) (N (H, W, C) images)",
)


def measure(cases: list[tuple[str, Op]], x: torch.Tensor, repeats: int) -> list[Result]:
    """Forward and forward+backward medians (interleaved across cases) and saved bytes of each case."""
    forwards, steps, saved = [], [], []
    for _, fn in cases:
        xr = x.detach().clone().requires_grad_()
        grads = [torch.randn_like(o) for o in fn(xr)]

        def step(fn: Op = fn, xr: torch.Tensor = xr, grads: list = grads) -> None:
            torch.autograd.backward(fn(xr), grads)
            xr.grad = None

        forwards.append(lambda fn=fn: fn(x))
        steps.append(step)
        saved.append(saved_bytes(lambda fn=fn, xr=xr: fn(xr)))
    forward_ms = median_ms(forwards, x.device, repeats)
    step_ms = median_ms(steps, x.device, repeats)
    return [Result(name, f, b, s) for (name, _), f, b, s in zip(cases, forward_ms, step_ms, saved)]


TABLES = ("speedup", "bandwidth")
DTYPES = (torch.float32, torch.bfloat16)
BF16_TARGET = ">= 1.7"  # "about 2x faster" (half the bytes), within 15%
# the operators whose bandwidth is checked, by their row in the table
OPERATOR_ROWS = {
    "image_gradients": "torchgrad.image_gradients",
    "sobel": "torchgrad.sobel",
    "scharr": "torchgrad.scharr",
    "gradient": "torchgrad.gradient",
    "gradient_magnitude": "torchgrad.gradient_magnitude (replicate, normalized)",
    "laplacian": "torchgrad.laplacian",
    "hessian": "torchgrad.hessian",
}
COMPILED_SOBEL = "torch.compile(naive conv2d Sobel)"


def operator_case(name: str, fn: Op, x: torch.Tensor, nonlinear: bool = False) -> Case:
    """``fn`` on ``x`` as a bandwidth row: forward reads ``x`` and writes the outputs; forward+backward
    also reads one cotangent per output (made once, outside the timed region), reads ``x`` again when the
    operator is ``nonlinear`` (its backward needs the input) and writes ``x``'s gradient."""
    xr = x.detach().clone().requires_grad_()
    outputs = fn(x)
    grads = [torch.randn_like(o) for o in outputs]

    def step() -> None:
        torch.autograd.backward(fn(xr), grads)
        xr.grad = None

    return Case(
        name,
        lambda: fn(x),
        step,
        forward_bytes([x], outputs),
        step_bytes([x], outputs, [x], rereads=[x] if nonlinear else []),
    )


def bandwidth_cases(x: torch.Tensor, refs: dict[str, Op]) -> list[Case]:
    """The bandwidth rows on ``x``: each operator next to the references that compute the same thing. The
    naive Sobel is compiled afresh for ``x``'s dtype (compilation happens in the timer's warm-up)."""
    weight = sobel_weight(x.shape[1], x.dtype, x.device)
    compiled = torch.compile(naive_sobel, dynamic=False)
    ops: list[tuple[str, Op]] = [
        ("torchgrad.image_gradients", torchgrad.image_gradients),
        ("torchmetrics image_gradients", refs["torchmetrics image_gradients"]),
        ("torchgrad.sobel", torchgrad.sobel),
        ("kornia spatial_gradient (sobel)", refs["kornia spatial_gradient (sobel)"]),
        (COMPILED_SOBEL, lambda x: (compiled(x, weight),)),
        ("torchgrad.scharr", torchgrad.scharr),
        ("torchgrad.gradient", lambda x: torchgrad.gradient(x, dim=(-2, -1))),
        ("torch.gradient (autograd)", refs["torch.gradient (autograd)"]),
        (
            OPERATOR_ROWS["gradient_magnitude"],
            lambda x: (torchgrad.gradient_magnitude(x, padding="replicate", normalized=True),),
        ),
        ("kornia sobel (magnitude)", refs["kornia sobel (magnitude)"]),
        ("torchgrad.laplacian", lambda x: (torchgrad.laplacian(x),)),
        ("kornia laplacian (3x3)", refs["kornia laplacian (3x3)"]),
        ("torchgrad.hessian", torchgrad.hessian),
        ("kornia spatial_gradient (sobel, order=2)", refs["kornia spatial_gradient (sobel, order=2)"]),
    ]
    return [operator_case(name, fn, x, nonlinear="magnitude" in name) for name, fn in ops]


def compiled_sobel_error(x: torch.Tensor) -> float:
    """Largest difference between the naive form and ``torchgrad.sobel`` on ``x``, relative to the largest
    derivative: the reference computes the same thing."""
    dy, dx = torchgrad.sobel(x)
    naive = naive_sobel(x, sobel_weight(x.shape[1], x.dtype, x.device)).unflatten(1, (x.shape[1], 2))
    ours = torch.stack([dy, dx], dim=2)
    return float((naive - ours).abs().max() / ours.abs().max().clamp_min(1e-12))


def bandwidth_report(args: argparse.Namespace, device: torch.device, key_suffix: str) -> None:
    """The bandwidth tables, float32 and bfloat16, their verdicts, and the section ``operators-<device>``."""
    refs = _references()
    mismatch = compiled_sobel_error(torch.rand(2, 3, 32, 32, device=device, dtype=torch.float64))
    print(f"naive conv2d Sobel / torchgrad.sobel, largest relative difference (float64): {mismatch:.1e}")
    run = measure_dtypes(lambda x: bandwidth_cases(x, refs), args.shape, device, args.repeats, DTYPES)
    checks = verdict_rows(bandwidth_checks(run))
    shape = "x".join(map(str, args.shape))
    publish(
        f"operators-{device.type}{key_suffix}",
        f"Operators, {shape} float32 and bfloat16, {device.type}: bandwidth",
        f"python benchmarks/bench_operators.py --device {args.device}" + (" --table bandwidth" if key_suffix else ""),
        f"{bandwidth_notes(device, args.repeats)}. The magnitudes read their input again in backward. The compiled"
        " naive form is reflect padding and one depthwise F.conv2d with both Sobel kernels, compiled once per"
        f" dtype; it matches torchgrad.sobel to {mismatch:.0e} (relative, float64)",
        [*run.tables, markdown_table(["ratio (same run)", "measured", "target", "met"], checks)],
        write=not args.no_write,
    )


def bandwidth_checks(run: BandwidthRun) -> list[tuple[str, float, str]]:
    """Each operator's fraction of the copy's bandwidth per dtype, and its float32 / bfloat16 time ratio."""
    checks = []
    for dtype, rows in run.timed.items():
        copy = run.copy_gbs[dtype]
        for op, row in OPERATOR_ROWS.items():
            checks.append((f"{op} forward / copy, {dtype_name(dtype)}", rows[row].forward_gbs / copy, ">= 0.7"))
            checks.append((f"{op} fwd+bwd / copy, {dtype_name(dtype)}", rows[row].step_gbs / copy, ">= 0.6"))
    fp32, bf16 = (run.timed[dtype] for dtype in DTYPES)
    for op, row in OPERATOR_ROWS.items():
        checks.append(
            (f"{op} forward, float32 / bfloat16 time", fp32[row].forward_ms / bf16[row].forward_ms, BF16_TARGET)
        )
        checks.append((f"{op} fwd+bwd, float32 / bfloat16 time", fp32[row].step_ms / bf16[row].step_ms, BF16_TARGET))
    return checks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--shape", type=int, nargs=4, default=[16, 3, 512, 512])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument(
        "--table", choices=TABLES, help="speedup: the CPU's table, bandwidth: CUDA's (default: the device's own)"
    )
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args()
    device = torch.device(args.device)
    default_table = "bandwidth" if device.type == "cuda" else "speedup"
    if (args.table or default_table) == "bandwidth":
        bandwidth_report(args, device, key_suffix="" if default_table == "bandwidth" else "-bandwidth")
        return
    torch.manual_seed(0)
    x = torch.rand(*args.shape, device=device)
    refs = _references()

    cases: list[tuple[str, Op]] = [
        ("x.clone() (memory floor)", lambda x: (x.clone(),)),
        ("torchgrad.image_gradients", torchgrad.image_gradients),
        ("torchmetrics image_gradients", refs["torchmetrics image_gradients"]),
        ("torchgrad.sobel", torchgrad.sobel),
        ("torchgrad.sobel (replicate, normalized)", lambda x: torchgrad.sobel(x, padding="replicate", normalized=True)),
        ("kornia spatial_gradient (sobel)", refs["kornia spatial_gradient (sobel)"]),
        ("torchgrad.scharr", torchgrad.scharr),
        ("torchgrad.gradient", lambda x: torchgrad.gradient(x, dim=(-2, -1))),
        ("torch.gradient (autograd)", refs["torch.gradient (autograd)"]),
        (
            "torchgrad.gradient_magnitude (replicate, normalized)",
            lambda x: (torchgrad.gradient_magnitude(x, padding="replicate", normalized=True),),
        ),
        ("kornia sobel (magnitude)", refs["kornia sobel (magnitude)"]),
        ("torchgrad.laplacian", lambda x: (torchgrad.laplacian(x),)),
        ("kornia laplacian (3x3)", refs["kornia laplacian (3x3)"]),
        ("torchgrad.hessian", torchgrad.hessian),
        ("kornia spatial_gradient (sobel, order=2)", refs["kornia spatial_gradient (sobel, order=2)"]),
    ]
    results = {r.name: r for r in measure(cases, x, args.repeats)}
    opencv = device.type == "cpu"  # cv2 runs on the CPU only
    if opencv:
        results.update({r.name: r for r in measure_opencv(x, args.repeats)})
    for r in results.values():
        print(
            f"{r.name:55s} fwd {r.forward_ms:8.1f} ms   fwd+bwd {r.backward_ms:8.1f} ms   "
            f"saved {r.saved / 2**20:8.1f} MiB"
        )

    n = x.numel() * x.element_size()
    floor = results["x.clone() (memory floor)"].forward_ms * 3 / 2  # clone moves 2N bytes, image_gradients 3N
    checks = [
        (
            "image_gradients forward / clone floor scaled to 3N bytes",
            results["torchgrad.image_gradients"].forward_ms / floor,
            "<= 1.5",
        ),
        (
            "torchmetrics / image_gradients, fwd+bwd",
            results["torchmetrics image_gradients"].backward_ms / results["torchgrad.image_gradients"].backward_ms,
            ">= 2",
        ),
        (
            "kornia / sobel, forward",
            results["kornia spatial_gradient (sobel)"].forward_ms / results["torchgrad.sobel"].forward_ms,
            ">= 5",
        ),
        (
            "kornia / sobel, fwd+bwd",
            results["kornia spatial_gradient (sobel)"].backward_ms / results["torchgrad.sobel"].backward_ms,
            ">= 6",
        ),
        (
            "torch.gradient / gradient, forward",
            results["torch.gradient (autograd)"].forward_ms / results["torchgrad.gradient"].forward_ms,
            ">= 2",
        ),
        (
            "torch.gradient / gradient, fwd+bwd",
            results["torch.gradient (autograd)"].backward_ms / results["torchgrad.gradient"].backward_ms,
            ">= 2",
        ),
        (
            "kornia laplacian / laplacian, fwd+bwd",
            results["kornia laplacian (3x3)"].backward_ms / results["torchgrad.laplacian"].backward_ms,
            ">= 5",
        ),
        (
            "kornia order=2 / hessian, fwd+bwd",
            results["kornia spatial_gradient (sobel, order=2)"].backward_ms / results["torchgrad.hessian"].backward_ms,
            ">= 5",
        ),
    ]
    if opencv:
        cv2_sobel, compat_sobel, cv2_laplacian, compat_laplacian, cv2_hessian = (results[n] for n in OPENCV_CASES)
        checks += [
            ("cv2_compat.Sobel ksize=5 forward / cv2.Sobel", compat_sobel.forward_ms / cv2_sobel.forward_ms, "<= 1.5"),
            (
                "cv2_compat.Laplacian ksize=1 forward / cv2.Laplacian",
                compat_laplacian.forward_ms / cv2_laplacian.forward_ms,
                "<= 1.5",
            ),
            (
                "torchgrad.hessian forward / three cv2.Sobel calls",
                results["torchgrad.hessian"].forward_ms / cv2_hessian.forward_ms,
                "<= 1.5",
            ),
        ]
    zero_saved = all(r.saved == 0 for k, r in results.items() if k.startswith("torchgrad.") and "magnitude" not in k)
    versions = f", OpenCV {sys.modules['cv2'].__version__} with as many threads" if opencv else ""

    rows = [
        [k, f"{r.forward_ms:.1f}", "" if math.isnan(r.backward_ms) else f"{r.backward_ms:.1f}", f"{r.saved / n:.2f}"]
        for k, r in results.items()
    ]
    table = markdown_table(
        ["case", "forward ms", "forward+backward ms", "saved for backward (bytes / input byte)"], rows
    )
    verdicts = verdict_rows(checks)
    verdicts.append(
        [
            "0 bytes saved for backward by image_gradients, sobel, scharr, gradient",
            "",
            "",
            "yes" if zero_saved else "NO",
        ]
    )
    summary = markdown_table(["ratio (same run)", "measured", "target", "met"], verdicts)
    publish(
        f"operators-{device.type}" + ("" if default_table == "speedup" else "-speedup"),
        f"Operators, {'x'.join(map(str, args.shape))} float32, {device.type}",
        f"python benchmarks/bench_operators.py --device {args.device}"
        + ("" if default_table == "speedup" else " --table speedup"),
        f"{environment(device)}{versions}; medians of {args.repeats} runs; upstream gradients made outside the timed"
        " region."
        " `gradient_magnitude` saves only a reference to its input (no new memory), counted here at the input's size."
        " The OpenCV rows are forward only: cv2 has no backward. kornia's 3x3 Laplacian is its own kernel"
        " ([[1, 1, 1], [1, -8, 1], [1, 1, 1]]), the same amount of work as the 5-point one",
        [table, summary],
        write=not args.no_write,
    )


if __name__ == "__main__":
    main()
