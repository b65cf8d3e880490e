"""Shared timing, bandwidth and memory helpers for the benchmark scripts (medians, bytes moved, saved bytes,
RESULTS.md)."""

from __future__ import annotations

import re
import statistics
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Callable, Iterable, Sequence

import torch

RESULTS = Path(__file__).with_name("RESULTS.md")
# the libraries the benchmarks compare against (torchvision builds the VGG networks)
COMPARED = ("torchvision", "torchmetrics", "kornia", "piq", "lpips")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_ms(fns: Sequence[Callable[[], object]], device: torch.device, repeats: int, warmup: int = 2) -> list[float]:
    """Median time in milliseconds of each of ``fns``: wall time on the CPU, CUDA events on CUDA
    (:func:`cuda_event_median_ms`).

    The functions run in turn, round after round, so that a slow phase of the machine (other
    processes, the memory system) falls on every case alike instead of on whichever ran then.
    """
    if device.type == "cuda":
        return cuda_event_median_ms(fns, device, repeats, warmup)
    for _ in range(warmup):
        for fn in fns:
            fn()
    synchronize(device)
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, series in zip(fns, times):
            start = time.perf_counter()
            fn()
            synchronize(device)
            series.append((time.perf_counter() - start) * 1e3)
    return [statistics.median(series) for series in times]


L2_FLUSH_BYTES = 256 * 2**20  # more than any GPU's L2 cache (H100, H200: 50 MiB)
MAX_SPIN_MS = 100.0  # a call that takes the CPU longer to issue is timed with part of its launch overhead


def cuda_event_median_ms(
    fns: Sequence[Callable[[], object]], device: torch.device, repeats: int, warmup: int = 2
) -> list[float]:
    """Median device time in milliseconds of each of ``fns``, from a pair of CUDA events around each call.

    After ``warmup`` rounds (Triton and ``torch.compile`` compile in the first), every timed call starts on
    an idle GPU that is first kept busy by a spin kernel (``torch.cuda._sleep``) and then by zeroing a
    256 MiB buffer, so that no call finds its input in the L2 cache the one before left. The spin lasts
    twice the longest time the CPU took to issue one call in the last warm-up round (at least 1 ms, at most
    ``MAX_SPIN_MS``): the call's kernels are all queued before its start event fires, and the events
    measure the GPU's time for the call, not Python's launch overhead. Rounds interleave the functions as
    :func:`median_ms` does.
    """
    with torch.cuda.device(device):
        for _ in range(max(warmup, 1)):  # the launch times of the last round (compilation is over by then)
            launch_ms = 0.0
            for fn in fns:
                torch.cuda.synchronize()
                start = time.perf_counter()
                fn()
                launch_ms = max(launch_ms, (time.perf_counter() - start) * 1e3)
        torch.cuda.synchronize()
        spin = _spin_cycles(min(max(2 * launch_ms, 1.0), MAX_SPIN_MS))
        flush = torch.empty(L2_FLUSH_BYTES, dtype=torch.uint8, device=device)
        times: list[list[float]] = [[] for _ in fns]
        for _ in range(repeats):
            for fn, series in zip(fns, times):
                begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                torch.cuda._sleep(spin)
                flush.zero_()
                begin.record()
                fn()
                end.record()
                end.synchronize()
                series.append(begin.elapsed_time(end))
    return [statistics.median(series) for series in times]


def _spin_cycles(ms: float) -> int:
    """The argument of ``torch.cuda._sleep`` that keeps the current GPU busy for about ``ms`` milliseconds."""
    cycles = 1_000_000
    begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda._sleep(cycles)  # the first call may load the kernel
    begin.record()
    torch.cuda._sleep(cycles)
    end.record()
    end.synchronize()
    return min(int(cycles * ms / max(begin.elapsed_time(end), 1e-3)) + 1, int(ms * 4e6))  # clocks < 4 GHz


def saved_bytes(fn: Callable[[], object], exclude: Sequence[torch.Tensor] = ()) -> int:
    """Bytes of the tensors that autograd saves for backward while ``fn`` runs.

    Tensors that share memory with one of ``exclude`` (references to the inputs, which exist
    anyway) are not counted.
    """
    total = 0
    skip = {t.untyped_storage().data_ptr() for t in exclude}

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        if t.untyped_storage().data_ptr() not in skip:
            total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return total


def nbytes(tensors: Iterable[torch.Tensor]) -> int:
    """Bytes of the elements of ``tensors`` (as stored: ``numel * element_size``)."""
    return sum(t.numel() * t.element_size() for t in tensors)


def forward_bytes(reads: Iterable[torch.Tensor], writes: Iterable[torch.Tensor]) -> int:
    """Bytes a forward call must move: it reads each of ``reads`` (its inputs) once and writes each of
    ``writes`` (its outputs) once. Intermediates, padding and re-reads by a stencil's neighbours are the
    implementation's business: the model counts what no implementation can avoid."""
    return nbytes(reads) + nbytes(writes)


def step_bytes(
    reads: Sequence[torch.Tensor],
    writes: Sequence[torch.Tensor],
    grads: Sequence[torch.Tensor],
    rereads: Sequence[torch.Tensor] = (),
) -> int:
    """Bytes a forward+backward step must move: the forward's (:func:`forward_bytes`), then backward reads
    the cotangent of each of ``writes`` (one of each output's size), reads ``rereads`` again (what a
    nonlinear backward needs: ``gradient_magnitude``'s input, a loss's input, target and mask; a linear
    operator's backward needs none) and writes the gradient of each of ``grads`` (the inputs that require it).
    """
    return forward_bytes(reads, writes) + nbytes(writes) + nbytes(rereads) + nbytes(grads)


def gb_per_s(moved: int, ms: float) -> float:
    """Effective bandwidth in GB/s (10^9 bytes) of ``moved`` bytes in ``ms`` milliseconds."""
    return moved / ms / 1e6


def copy_bandwidth(x: torch.Tensor, repeats: int) -> tuple[float, float]:
    """``(median ms, GB/s)`` of copying ``x`` into a preallocated tensor (``copy_``): 2 * nbytes moved, the
    device's practical bandwidth that the other rows are measured against."""
    out = torch.empty_like(x)
    (ms,) = median_ms([lambda: out.copy_(x)], x.device, repeats)
    return ms, gb_per_s(2 * nbytes([x]), ms)


@dataclass(frozen=True)
class Case:
    """A row of a bandwidth table: ``forward()`` and ``step()`` (forward+backward) with the bytes each must
    move (:func:`forward_bytes`, :func:`step_bytes`)."""

    name: str
    forward: Callable[[], object]
    step: Callable[[], object]
    forward_bytes: int
    step_bytes: int


@dataclass(frozen=True)
class Timed:
    """A :class:`Case` measured: medians in ms and effective GB/s of forward and forward+backward."""

    case: Case
    forward_ms: float
    step_ms: float

    @property
    def forward_gbs(self) -> float:
        return gb_per_s(self.case.forward_bytes, self.forward_ms)

    @property
    def step_gbs(self) -> float:
        return gb_per_s(self.case.step_bytes, self.step_ms)


def measure_cases(cases: Sequence[Case], device: torch.device, repeats: int) -> dict[str, Timed]:
    """Forward medians (interleaved across cases), then forward+backward medians, by case name."""
    forward_ms = median_ms([c.forward for c in cases], device, repeats)
    step_ms = median_ms([c.step for c in cases], device, repeats)
    return {c.name: Timed(c, f, s) for c, f, s in zip(cases, forward_ms, step_ms)}


def bandwidth_table(timed: Iterable[Timed], copy_gbs: float) -> str:
    """Markdown table of ``timed``: ms, GB/s and fraction of the copy's bandwidth, forward and forward+backward."""
    rows = [
        [
            t.case.name,
            f"{t.forward_ms:.3f}",
            f"{t.forward_gbs:.0f}",
            f"{t.forward_gbs / copy_gbs:.2f}",
            f"{t.step_ms:.3f}",
            f"{t.step_gbs:.0f}",
            f"{t.step_gbs / copy_gbs:.2f}",
        ]
        for t in timed
    ]
    header = ["case", "fwd ms", "fwd GB/s", "fwd / copy", "fwd+bwd ms", "fwd+bwd GB/s", "fwd+bwd / copy"]
    return markdown_table(header, rows)


@dataclass
class BandwidthRun:
    """The bandwidth tables of one run, one per dtype: markdown (with a line on the copy above each table),
    the measured rows by dtype and name, and the copy's GB/s by dtype."""

    tables: list[str]
    timed: dict[torch.dtype, dict[str, Timed]]
    copy_gbs: dict[torch.dtype, float]


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def measure_dtypes(
    make_cases: Callable[[torch.Tensor], list[Case]],
    shape: Sequence[int],
    device: torch.device,
    repeats: int,
    dtypes: Sequence[torch.dtype] = (torch.float32, torch.bfloat16),
) -> BandwidthRun:
    """For each dtype: a copy of a ``torch.rand(shape)`` input (:func:`copy_bandwidth`), then the cases
    ``make_cases`` builds on that input (:func:`measure_cases`), printed as they come."""
    run = BandwidthRun([], {}, {})
    for dtype in dtypes:
        torch.manual_seed(0)
        x = torch.rand(*shape, device=device, dtype=dtype)
        copy_ms, run.copy_gbs[dtype] = copy_bandwidth(x, repeats)
        run.timed[dtype] = measure_cases(make_cases(x), device, repeats)
        copy = f"{dtype_name(dtype)}: a device-to-device copy of the input (`copy_`, 2 x {nbytes([x]) / 1e6:.1f} MB)"
        run.tables.append(f"{copy} took {copy_ms:.3f} ms, {run.copy_gbs[dtype]:.0f} GB/s.")
        run.tables.append(bandwidth_table(run.timed[dtype].values(), run.copy_gbs[dtype]))
        print(f"\n{run.tables[-2]}\n{run.tables[-1]}")
    return run


def bandwidth_notes(device: torch.device, repeats: int) -> str:
    """How a bandwidth table was measured, for the notes of its section."""
    timer = ", CUDA events around each call, launch overhead hidden, L2 flushed" if device.type == "cuda" else ""
    return (
        f"{environment(device)}; medians of {repeats} calls after warm-up{timer}. GB/s: the bytes a call must move"
        " (forward: read each input, write each output; forward+backward: that, then read each output's cotangent,"
        " read again what a nonlinear backward needs, write the input's gradient) over its time; references are"
        " charged the bytes of the same result"
    )


def environment(device: torch.device) -> str:
    """torch's version, the device, and the version of each reference library this process imported."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    libraries = (*COMPARED, "triton") if device.type == "cuda" else COMPARED  # triton runs torchgrad on CUDA
    compared = [f"{lib} {metadata.version(lib)}" for lib in libraries if lib in sys.modules]
    return ", ".join([f"torch {torch.__version__}", name, *compared])


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def verdict_rows(checks: Sequence[tuple[str, float, str]]) -> list[list[str]]:
    """``[label, measured, target, met]`` rows for ``(label, value, "<= 1.5" or ">= 2")`` checks."""
    rows = []
    for label, value, target in checks:
        op, bound = target.split()
        met = value <= float(bound) if op == "<=" else value >= float(bound)
        rows.append([label, f"{value:.2f}", target, "yes" if met else "NO"])
    return rows


def publish(key: str, heading: str, command: str, notes: str, tables: Sequence[str], write: bool) -> None:
    """Print the last table (the verdicts) and, when ``write``, put the section in RESULTS.md."""
    print("\n" + tables[-1])
    if write:
        write_section(key, f"## {heading}\n\n`{command}` ({notes}).\n\n" + "\n\n".join(tables))
        print("\nwrote benchmarks/RESULTS.md")


def write_section(key: str, body: str) -> None:
    """Replace (or append) the section ``key`` of RESULTS.md, leaving the other scripts' sections."""
    begin, end = f"<!-- begin {key} -->", f"<!-- end {key} -->"
    text = (
        RESULTS.read_text()
        if RESULTS.exists()
        else "# Benchmark results\n\n"
        "Written by the scripts in `benchmarks/`; each section says the command that produced it.\n"
    )
    block = f"{begin}\n{body.strip()}\n{end}"
    pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    RESULTS.write_text(text)
