"""Speed and saved memory of the gradient losses next to the same losses written the usual way.

    python benchmarks/bench_losses.py                 # (16, 3, 512, 512) float32 on the CPU
    python benchmarks/bench_losses.py --device cuda   # float32 and bfloat16, bandwidth against a copy
    python benchmarks/bench_losses.py --only depth    # the depth losses alone, (16, 1, 384, 384)

On the CPU (``--table speedup``, the CPU's default) the gradient losses' section times forward+backward
(medians, interleaved across cases), reports the bytes saved for backward per input element beyond
references to the inputs themselves and checks the project's targets. On CUDA (``--table bandwidth``, CUDA's
default; it runs on the CPU too) it reports, for float32 and bfloat16, median device times from CUDA events,
the effective bandwidth and its fraction of a device-to-device copy measured in the same run, for
``GradientLoss("sobel")`` and ``GradientLoss("diff", p=2)`` (with and without a mask) next to kornia +
``l1_loss``, torchmetrics + ``mse_loss`` and ``torch.compile`` of the naive conv2d Sobel + ``l1_loss``.
Each writes its section of benchmarks/RESULTS.md. The depth losses (against MiDaS's and BTS's code, as
tests/references.py keeps it) get a section of their own, with the peak memory of a step.
"""

from __future__ import annotations

import argparse
import ctypes
import sys
import warnings
from pathlib import Path
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F

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
    synchronize,
    verdict_rows,
)
from _naive import naive_sobel_l1, sobel_weight  # noqa: E402

from torchgrad.losses import (  # noqa: E402
    EdgeAwareSmoothnessLoss,
    EdgeLoss,
    GradientDifferenceLoss,
    GradientLoss,
    GradientMatchingLoss,
    ScaleAndShiftInvariantLoss,
    ScaleInvariantLogLoss,
    TotalVariationLoss,
)

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def usual_forms() -> dict[str, Loss]:
    import kornia
    import torchmetrics.functional.image as tm_image

    warnings.filterwarnings("ignore", category=FutureWarning)

    def kornia_l1(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.l1_loss(kornia.filters.spatial_gradient(x), kornia.filters.spatial_gradient(y))

    def torchmetrics_l2(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        (xdy, xdx), (ydy, ydx) = tm_image.image_gradients(x), tm_image.image_gradients(y)
        return (F.mse_loss(xdy, ydy) + F.mse_loss(xdx, ydx)) / 2  # the mean over the stacked (dy, dx)

    return {"kornia spatial_gradient + l1_loss": kornia_l1, "torchmetrics image_gradients + mse_loss": torchmetrics_l2}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--shape", type=int, nargs=4, default=[16, 3, 512, 512])
    parser.add_argument("--depth-shape", type=int, nargs=4, default=[16, 1, 384, 384])
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--only", choices=["gradient", "depth"], help="one of the two sections")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's own choice)")
    parser.add_argument("--note", help="a sentence on the machine, for the notes of the depth section")
    parser.add_argument(
        "--table",
        choices=("speedup", "bandwidth"),
        help="the gradient losses' table; speedup: the CPU's, bandwidth: CUDA's (default: the device's own)",
    )
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    default_table = "bandwidth" if torch.device(args.device).type == "cuda" else "speedup"
    if args.only != "depth" and (args.table or default_table) == "bandwidth":
        gradient_losses_bandwidth(args, key_suffix="" if default_table == "bandwidth" else "-bandwidth")
    elif args.only != "depth":
        gradient_losses(args, key_suffix="" if default_table == "speedup" else "-speedup")
    if args.only != "gradient":
        depth_losses(args)


def gradient_losses(args: argparse.Namespace, key_suffix: str) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from references import mprnet_edge_loss, mprnet_gaussian_kernel

    device = torch.device(args.device)
    torch.manual_seed(0)
    x = torch.rand(*args.shape, device=device, requires_grad=True)
    y = torch.rand(*args.shape, device=device)
    disparity = torch.rand(args.shape[0], 1, *args.shape[2:], device=device, requires_grad=True)
    usual = usual_forms()
    edge_aware, edge = EdgeAwareSmoothnessLoss(), EdgeLoss()
    kernel = mprnet_gaussian_kernel(x.shape[1], x.dtype, device)  # MPRNet builds it once, in __init__
    cases: list[tuple[str, Callable[[], torch.Tensor], torch.Tensor]] = [
        ('GradientLoss("sobel", p=1)', lambda: GradientLoss("sobel", p=1)(x, y), x),
        ("kornia spatial_gradient + l1_loss", lambda: usual["kornia spatial_gradient + l1_loss"](x, y), x),
        ('GradientLoss("diff", p=2)', lambda: GradientLoss("diff", p=2)(x, y), x),
        ("torchmetrics image_gradients + mse_loss", lambda: usual["torchmetrics image_gradients + mse_loss"](x, y), x),
        ("GradientDifferenceLoss(alpha=1)", lambda: GradientDifferenceLoss()(x, y), x),
        ("TotalVariationLoss()", lambda: TotalVariationLoss()(x), x),
        ("TotalVariationLoss(isotropic=True)", lambda: TotalVariationLoss(isotropic=True)(x), x),
        ("EdgeAwareSmoothnessLoss() on (N, 1, H, W)", lambda: edge_aware(disparity, x.detach()), disparity),
        ("EdgeLoss()", lambda: edge(x, y), x),
        ("MPRNet EdgeLoss (reference)", lambda: mprnet_edge_loss(x, y, kernel=kernel), x),
    ]

    def step(loss: Callable[[], torch.Tensor], leaf: torch.Tensor) -> Callable[[], None]:
        def run() -> None:
            loss().backward()
            leaf.grad = None

        return run

    times = median_ms([step(loss, leaf) for _, loss, leaf in cases], device, args.repeats)
    saved = [saved_bytes(loss, exclude=(x, y, disparity)) / leaf.numel() for _, loss, leaf in cases]
    rows = []
    for (name, _, _), t, b in zip(cases, times, saved):
        print(f"{name:45s} fwd+bwd {t:8.1f} ms   saved {b:6.2f} bytes / input element")
        rows.append([name, f"{t:.1f}", f"{b:.2f}"])
    ms = dict(zip([c[0] for c in cases], times))
    per = dict(zip([c[0] for c in cases], saved))
    sobel_l1, diff_l2 = 'GradientLoss("sobel", p=1)', 'GradientLoss("diff", p=2)'
    mprnet = "MPRNet EdgeLoss (reference)"
    checks = verdict_rows(
        [
            ("kornia form / " + sobel_l1, ms["kornia spatial_gradient + l1_loss"] / ms[sobel_l1], ">= 6"),
            ("torchmetrics form / " + diff_l2, ms["torchmetrics image_gradients + mse_loss"] / ms[diff_l2], ">= 2"),
            ("bytes saved per input element, " + sobel_l1, per[sobel_l1], "<= 1"),
            ("bytes saved per input element, " + diff_l2, per[diff_l2], "<= 1"),
            ("MPRNet form / EdgeLoss(), fwd+bwd", ms[mprnet] / ms["EdgeLoss()"], ">= 3"),
            ("bytes saved per input element, EdgeLoss()", per["EdgeLoss()"], "<= 0"),
        ]
    )
    table = markdown_table(["loss", "forward+backward ms", "saved for backward (bytes / input element)"], rows)
    summary = markdown_table(["ratio (same run)", "measured", "target", "met"], checks)
    publish(
        f"losses-{device.type}{key_suffix}",
        f"Losses, {'x'.join(map(str, args.shape))} float32, {device.type}",
        f"python benchmarks/bench_losses.py --device {args.device}" + (" --table speedup" if key_suffix else ""),
        f"{environment(device)}; medians of {args.repeats} runs, interleaved. Saved bytes exclude references to the"
        " inputs themselves (they exist anyway); the edge-aware loss is measured on a one-channel disparity with the"
        " same batch and size; MPRNet's EdgeLoss is its code as tests/references.py keeps it",
        [table, summary],
        write=not args.no_write,
    )


SOBEL_L1, DIFF_L2, DIFF_L2_MASKED = (
    'GradientLoss("sobel")',
    'GradientLoss("diff", p=2)',
    'GradientLoss("diff", p=2), mask',
)
KORNIA_L1, TORCHMETRICS_L2 = "kornia spatial_gradient + l1_loss", "torchmetrics image_gradients + mse_loss"
COMPILED_L1 = "torch.compile(naive conv2d Sobel + l1_loss)"
BF16_TARGET = ">= 1.7"  # "about 2x faster" (half the bytes), within 15%


def loss_case(name: str, loss: Loss, x: torch.Tensor, y: torch.Tensor, mask: Optional[torch.Tensor] = None) -> Case:
    """``loss(x, y)`` as a bandwidth row. Forward reads ``x``, ``y`` (and ``mask``) once; forward+backward
    reads them again (the backward of a nonlinear penalty needs them; torchgrad's saves only references and
    recomputes) and writes ``x``'s gradient. References are charged the same bytes."""
    xr = x.detach().clone().requires_grad_()
    inputs = [x, y] if mask is None else [x, y, mask]
    output = loss(x, y)

    def step() -> None:
        loss(xr, y).backward()
        xr.grad = None

    return Case(
        name,
        lambda: loss(x, y),
        step,
        forward_bytes(inputs, [output]),
        step_bytes(inputs, [output], [x], rereads=inputs),
    )


def loss_cases(x: torch.Tensor) -> list[Case]:
    """The bandwidth rows on images ``x`` against a random target (and a mask with ~90% valid pixels). The
    naive form is compiled afresh for ``x``'s dtype (compilation happens in the timer's warm-up)."""
    y = torch.rand_like(x)
    mask = torch.rand(x.shape, device=x.device) < 0.9
    usual = usual_forms()
    sobel_l1, diff_l2 = GradientLoss("sobel"), GradientLoss("diff", p=2)
    weight = sobel_weight(x.shape[1], x.dtype, x.device)
    compiled = torch.compile(naive_sobel_l1, dynamic=False)
    return [
        loss_case(SOBEL_L1, sobel_l1, x, y),
        loss_case(KORNIA_L1, usual[KORNIA_L1], x, y),
        loss_case(COMPILED_L1, lambda x, y: compiled(x, y, weight), x, y),
        loss_case(DIFF_L2, diff_l2, x, y),
        loss_case(TORCHMETRICS_L2, usual[TORCHMETRICS_L2], x, y),
        loss_case(DIFF_L2_MASKED, lambda x, y: diff_l2(x, y, mask), x, y, mask),
    ]


def gradient_losses_bandwidth(args: argparse.Namespace, key_suffix: str) -> None:
    """The bandwidth tables of the gradient losses, float32 and bfloat16, their verdicts, their section."""
    device = torch.device(args.device)
    torch.manual_seed(0)
    x, y = (torch.rand(1, 3, 32, 32, device=device, dtype=torch.float64) for _ in range(2))
    naive = naive_sobel_l1(x, y, sobel_weight(3, x.dtype, device))
    mismatch = float((naive - GradientLoss("sobel")(x, y)).abs() / naive.abs())
    print(f'naive conv2d Sobel + l1_loss / GradientLoss("sobel"), relative difference (float64): {mismatch:.1e}')
    run = measure_dtypes(loss_cases, args.shape, device, args.repeats)
    checks = verdict_rows(loss_checks(run))
    publish(
        f"losses-{device.type}{key_suffix}",
        f"Gradient losses, {'x'.join(map(str, args.shape))} float32 and bfloat16, {device.type}: bandwidth",
        f"python benchmarks/bench_losses.py --device {args.device}" + (" --table bandwidth" if key_suffix else ""),
        f"{bandwidth_notes(device, args.repeats)}. A loss reads its input and target (and mask) in forward and again"
        " in backward, writes the input's gradient. The mask is bool, of the input's shape, ~90% True. The compiled"
        " naive form is reflect padding and one depthwise F.conv2d with both Sobel kernels on input and target,"
        f' then F.l1_loss, compiled once per dtype; it matches GradientLoss("sobel") to {mismatch:.0e}'
        " (relative, float64)",
        [*run.tables, markdown_table(["ratio (same run)", "measured", "target", "met"], checks)],
        write=not args.no_write,
    )


def loss_checks(run: BandwidthRun) -> list[tuple[str, float, str]]:
    """``GradientLoss("sobel")`` against kornia's form and the compiled naive form per dtype, and the
    float32 / bfloat16 time ratio of each torchgrad loss, all forward+backward."""
    checks = []
    for dtype, rows in run.timed.items():
        ours = rows[SOBEL_L1].step_ms
        checks.append(
            (f"{KORNIA_L1} / {SOBEL_L1}, fwd+bwd, {dtype_name(dtype)}", rows[KORNIA_L1].step_ms / ours, ">= 5")
        )
        checks.append(
            (f"{COMPILED_L1} / {SOBEL_L1}, fwd+bwd, {dtype_name(dtype)}", rows[COMPILED_L1].step_ms / ours, ">= 1")
        )
    fp32, bf16 = run.timed[torch.float32], run.timed[torch.bfloat16]
    for name in (SOBEL_L1, DIFF_L2, DIFF_L2_MASKED):
        checks.append(
            (f"{name}, fwd+bwd, float32 / bfloat16 time", fp32[name].step_ms / bf16[name].step_ms, BF16_TARGET)
        )
    return checks


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks")
        + ("keepcost",)
    ]


def _heap_in_use() -> Optional[Callable[[], int]]:
    """glibc's bytes in use (heap and mmap), or None where there is no ``mallinfo2``."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _MallInfo2
    except (OSError, AttributeError):
        return None

    def in_use() -> int:
        info = libc.mallinfo2()
        return int(info.uordblks + info.hblkhd)

    return in_use


def peak_bytes(fn: Callable[[], object], device: torch.device) -> Optional[int]:
    """The peak of memory in use while ``fn`` runs, above what was in use before it (the inputs): on CUDA the
    allocator's peak, on the CPU glibc's bytes in use read before and after every ATen operation (what an operation
    allocates and frees inside itself is not seen); None where neither is available."""
    if device.type == "cuda":
        synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    in_use = _heap_in_use()
    if in_use is None:
        return None
    from torch.utils._python_dispatch import TorchDispatchMode

    class Peak(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.before = self.top = in_use()

        def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            self.top = max(self.top, in_use())
            out = func(*args, **(kwargs or {}))
            self.top = max(self.top, in_use())
            return out

    with Peak() as peak:
        fn()
    return peak.top - peak.before


def depth_losses(args: argparse.Namespace) -> None:
    """The depth losses against the code their authors published, on depth maps with ~90% valid pixels."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from references import midas_gradient_matching, midas_loss, silog_loss

    device = torch.device(args.device)
    torch.manual_seed(0)
    shape = args.depth_shape
    prediction = (torch.rand(*shape, device=device) + 0.1).requires_grad_()
    target = torch.rand(*shape, device=device) + 0.1
    mask = torch.rand(*shape, device=device) < 0.9
    p, t, m = prediction[:, 0], target[:, 0], mask[:, 0]  # MiDaS's and BTS's code take (N, H, W)
    ssi, matching, silog = ScaleAndShiftInvariantLoss(), GradientMatchingLoss(), ScaleInvariantLogLoss()
    losses: list[tuple[str, Callable[[], torch.Tensor]]] = [
        ("ScaleAndShiftInvariantLoss()", lambda: ssi(prediction, target, mask)),
        ("MiDaS ScaleAndShiftInvariantLoss (reference)", lambda: midas_loss(p, t, m)[0]),
        ("GradientMatchingLoss()", lambda: matching(prediction, target, mask)),
        ("MiDaS GradientLoss (reference)", lambda: midas_gradient_matching(p, t, m)),
        ("ScaleInvariantLogLoss()", lambda: silog(prediction, target, mask)),
        ("BTS silog_loss (reference)", lambda: silog_loss(p, t, m)),
    ]

    def step(loss: Callable[[], torch.Tensor]) -> Callable[[], None]:
        def run() -> None:
            loss().backward()
            prediction.grad = None

        return run

    times = median_ms([step(loss) for _, loss in losses], device, args.repeats)
    peaks = []
    for _, loss in losses:
        step(loss)()  # once before, so that one-time allocations are not counted
        peaks.append(peak_bytes(lambda: loss().backward(), device))  # noqa: B023
        prediction.grad = None
    rows = []
    for (name, _), ms, peak in zip(losses, times, peaks):
        mib = "n/a" if peak is None else f"{peak / 2**20:.1f}"
        print(f"{name:45s} fwd+bwd {ms:8.1f} ms   peak above the inputs {mib} MiB")
        rows.append([name, f"{ms:.1f}", mib])
    ms_of = dict(zip([name for name, _ in losses], times))
    peak_of = dict(zip([name for name, _ in losses], peaks))
    ours, reference = "ScaleAndShiftInvariantLoss()", "MiDaS ScaleAndShiftInvariantLoss (reference)"
    checks = [(f"MiDaS reference form / {ours}, fwd+bwd", ms_of[reference] / ms_of[ours], ">= 3")]
    if peak_of[ours] is not None and peak_of[reference]:
        checks.append((f"peak above the inputs, {ours} / reference", peak_of[ours] / peak_of[reference], "<= 0.5"))
    table = markdown_table(["loss", "forward+backward ms", "peak MiB above the inputs"], rows)
    summary = markdown_table(["ratio (same run)", "measured", "target", "met"], verdict_rows(checks))
    input_mib = prediction.numel() * prediction.element_size() / 2**20
    publish(
        f"depth-losses-{device.type}",
        f"Depth losses, {'x'.join(map(str, shape))} float32, ~90% valid pixels, {device.type}",
        f"python benchmarks/bench_losses.py --only depth --device {args.device}"
        + (f" --threads {args.threads}" if args.threads else ""),
        f"{environment(device)}; medians of {args.repeats} runs, interleaved. {args.note + ' ' if args.note else ''}"
        "Peak: memory in use during one"
        f" forward+backward above what was in use before it (the inputs, {input_mib:.0f} MiB each), the gradient"
        " included; on the CPU glibc's bytes in use read around every ATen operation. The references are MiDaS's"
        " published loss and BTS's silog_loss as tests/references.py keeps them",
        [table, summary],
        write=not args.no_write,
    )


if __name__ == "__main__":
    main()
