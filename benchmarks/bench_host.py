"""Host time of one call: the Python that torchgrad runs around its kernels, and small inputs on the CPU.

Two tables, from one run:

- the Triton path's host time: CPU tensors sent to the Triton executor (``TRITON_INTERPRET=1``,
  ``TORCHGRAD_FORCE_TRITON=1``) with every kernel launch replaced by nothing, so that what is timed is the
  Python of a call (argument checks, the route, the plan, allocations, the ``torch.library`` dispatch), next
  to a trivial ``torch.library.custom_op`` call (the floor of any op);
- the CPU executor on a small input at one thread against kornia's forms (a padded ``conv2d``);
- a large call on the CPU (torch's own thread count) against the memory floor measured in the same run:
  ``GradientLoss("sobel")`` forward plus backward must read ``input`` and ``target`` twice and write the
  gradient (5 N bytes for N bytes of input, 2.5 times a copy into an existing buffer) and fault one fresh
  gradient into memory (a copy into a fresh tensor, less a copy into an existing one).

Usage: ``python benchmarks/bench_host.py [--repeats N] [--large-repeats N] [--write]``.
"""

from __future__ import annotations

import os

os.environ["TRITON_INTERPRET"] = "1"  # before the kernels are defined: CPU tensors run under the interpreter

import argparse  # noqa: E402
from typing import Callable  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from _harness import environment, markdown_table, median_ms, publish  # noqa: E402

import torchgrad  # noqa: E402
from torchgrad._executor import FORCE_TRITON  # noqa: E402
from torchgrad.losses import GradientLoss  # noqa: E402

SHAPE = (1, 3, 64, 64)
LARGE = (16, 3, 512, 512)
CPU = torch.device("cpu")


@torch.library.custom_op("torchgrad_bench::trivial", mutates_args=())
def _trivial(x: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(x)


@_trivial.register_fake
def _(x: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(x)


def _small_calls() -> tuple[torch.Tensor, torch.Tensor, Callable[[], object], Callable[[], object]]:
    """A small input (requiring grad) and target, and the two torchgrad calls that both small tables time on
    them: ``sobel`` forward, and ``GradientLoss("sobel")`` forward plus backward."""
    x = torch.rand(SHAPE, requires_grad=True)
    target = torch.rand(SHAPE)
    loss = GradientLoss("sobel")

    def sobel() -> object:
        return torchgrad.sobel(x.detach())

    def loss_step() -> object:
        return torch.autograd.grad(loss(x, target), x)

    return x, target, sobel, loss_step


def _triton_host_table(repeats: int) -> str:
    """Microseconds of Python per call on the Triton path, kernel launches made no-ops."""
    from torchgrad._triton import launch

    x, _, sobel, loss_step = _small_calls()

    def trivial() -> object:
        return _trivial(x.detach())

    original = launch.launch_kernel
    os.environ[FORCE_TRITON] = "1"
    launch.launch_kernel = lambda *args, **meta: None
    try:
        sobel()
        loss_step()  # the kernels' first use imports the Triton modules
        times = median_ms([trivial, sobel, loss_step], CPU, repeats)
    finally:
        launch.launch_kernel = original
        del os.environ[FORCE_TRITON]
    floor = times[0]
    rows = [
        ["trivial torch.library.custom_op", f"{floor * 1e3:.1f}", "1.0", ""],
        ["sobel forward", f"{times[1] * 1e3:.1f}", f"{times[1] / floor:.1f}", "<= 6"],
        ['GradientLoss("sobel") forward + backward', f"{times[2] * 1e3:.1f}", f"{times[2] / floor:.1f}", "<= 25"],
    ]
    header = ["call on the Triton path, launches stubbed, " + str(SHAPE), "us", "x trivial", "target"]
    return markdown_table(header, rows)


def _cpu_small_table(repeats: int) -> str:
    """Milliseconds of a small call on the CPU executor at one thread, against kornia's forms."""
    import kornia

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        x, target, ours_forward, ours_step = _small_calls()

        def kornia_forward() -> object:
            return kornia.filters.spatial_gradient(x.detach())

        def kornia_step() -> object:
            grads = kornia.filters.spatial_gradient(x)
            return torch.autograd.grad(F.l1_loss(grads, kornia.filters.spatial_gradient(target)), x)

        times = median_ms([ours_forward, kornia_forward, ours_step, kornia_step], CPU, repeats)
    finally:
        torch.set_num_threads(threads)
    rows = [
        ["sobel forward", f"{times[0]:.3f}", f"{times[1]:.3f}", f"{times[1] / times[0]:.2f}"],
        ["GradientLoss forward + backward", f"{times[2]:.3f}", f"{times[3]:.3f}", f"{times[3] / times[2]:.2f}"],
    ]
    header = ["CPU, one thread, " + str(SHAPE), "torchgrad ms", "kornia ms", "kornia / torchgrad (target >= 1)"]
    return markdown_table(header, rows)


def _large_cpu_table(repeats: int) -> str:
    """Milliseconds of a large loss step on the CPU against the memory floor and kornia's form, one run."""
    import kornia

    x = torch.rand(LARGE, requires_grad=True)
    target = torch.rand(LARGE)
    into = torch.empty_like(target)
    loss = GradientLoss("sobel")

    def ours() -> None:
        loss(x, target).backward()
        x.grad = None

    def theirs() -> None:
        F.l1_loss(kornia.filters.spatial_gradient(x), kornia.filters.spatial_gradient(target)).backward()
        x.grad = None

    def copy() -> object:
        return into.copy_(target)

    def fresh() -> object:
        return target.clone()

    ms = median_ms([copy, fresh, ours, theirs], CPU, repeats)
    floor = 2.5 * ms[0] + (ms[1] - ms[0])
    rows = [
        ["copy into an existing tensor (2 N bytes)", f"{ms[0]:.1f}", "", ""],
        ["copy into a fresh tensor (2 N bytes, page faults)", f"{ms[1]:.1f}", "", ""],
        ["floor: 5 N bytes at copy speed + one fresh gradient", f"{floor:.1f}", "1.0", ""],
        ['GradientLoss("sobel") forward + backward', f"{ms[2]:.1f}", f"{ms[2] / floor:.2f}", "<= 3"],
        ["kornia spatial_gradient + l1_loss, forward + backward", f"{ms[3]:.1f}", f"{ms[3] / floor:.2f}", ""],
    ]
    header = [f"CPU, {torch.get_num_threads()} threads, {LARGE} float32", "ms", "x floor", "target"]
    return markdown_table(header, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--large-repeats", type=int, default=7, help="repeats of the large call's table")
    parser.add_argument("--write", action="store_true", help="write the section of benchmarks/RESULTS.md")
    args = parser.parse_args()
    tables = [_triton_host_table(args.repeats), _cpu_small_table(args.repeats), _large_cpu_table(args.large_repeats)]
    print(tables[0] + "\n\n" + tables[1])
    publish(
        "host",
        "Host time of a call (CPU)",
        "python benchmarks/bench_host.py --write",
        environment(CPU),
        tables,
        args.write,
    )


if __name__ == "__main__":
    main()
