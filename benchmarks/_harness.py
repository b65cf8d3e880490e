"""Shared timing and memory helpers for the benchmark scripts (medians, saved bytes, RESULTS.md)."""

from __future__ import annotations

import re
import statistics
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Callable, Sequence

import torch

RESULTS = Path(__file__).with_name("RESULTS.md")
# the libraries the benchmarks compare against (torchvision builds the VGG networks)
COMPARED = ("torchvision", "torchmetrics", "kornia", "piq", "lpips")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_ms(fns: Sequence[Callable[[], object]], device: torch.device, repeats: int, warmup: int = 2) -> list[float]:
    """Median wall time in milliseconds of each of ``fns``.

    The functions run in turn, round after round, so that a slow phase of the machine (other
    processes, the memory system) falls on every case alike instead of on whichever ran then.
    """
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


def environment(device: torch.device) -> str:
    """torch's version, the device, and the version of each reference library this process imported."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    compared = [f"{lib} {metadata.version(lib)}" for lib in COMPARED if lib in sys.modules]
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
