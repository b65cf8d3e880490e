"""Speed and peak memory of the VGG perceptual losses next to piq's ContentLoss and LPIPS (VGG).

    python benchmarks/bench_perceptual.py                  # (4, 3, 256, 256) float32 on the CPU
    python benchmarks/bench_perceptual.py --device cuda    # adds bf16 autocast rows

Forward+backward medians (CUDA events on CUDA), interleaved in one process; peak memory from one fresh
process per case (maximum resident set size on the CPU, peak allocated memory on CUDA). Every network has
random weights (nothing is downloaded): torchgrad's loss and piq share the same random VGG16. piq and LPIPS
rows need `pip install piq lpips` and are left out without them. With ``--autocast`` (CUDA's default) every
case runs again under ``torch.autocast(device, dtype=torch.bfloat16)``. Writes its section of
benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import resource
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import environment, markdown_table, median_ms, publish, verdict_rows  # noqa: E402

CASES = ["torchgrad relu3_3 (l2)", "piq ContentLoss relu3_3 (mse)", "torchgrad 4 layers (l1)", "lpips VGG"]
# (label, theirs, ours, target of theirs / ours)
VERDICTS = [
    ("piq / torchgrad, relu3_3", CASES[1], CASES[0], ">= 1.7"),
    ("lpips / torchgrad, four layers", CASES[3], CASES[2], ">= 1.5"),
]
AUTOCAST = ", bf16 autocast"


def installed_cases() -> list[str]:
    """The cases whose library is installed (piq's and LPIPS's are optional)."""
    return [c for c in CASES if importlib.util.find_spec(c.split()[0]) is not None]


def precision(device: torch.device, autocast: bool) -> contextlib.AbstractContextManager:
    """bfloat16 autocast on ``device`` or nothing."""
    return torch.autocast(device.type, dtype=torch.bfloat16) if autocast else contextlib.nullcontext()


def build(case: str, weights: Path, device: torch.device) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    warnings.filterwarnings("ignore")
    from torchvision.models import vgg as tv_vgg

    from torchgrad.losses import PerceptualLoss

    if case == "torchgrad relu3_3 (l2)":
        return PerceptualLoss(layers=("relu3_3",), criterion="l2", weights=weights).to(device)
    if case == "torchgrad 4 layers (l1)":
        return PerceptualLoss(weights=weights).to(device)
    if case == "piq ContentLoss relu3_3 (mse)":
        import piq

        features = tv_vgg.make_layers(tv_vgg.cfgs["D"])
        features.load_state_dict(torch.load(weights, weights_only=True))
        features.requires_grad_(False).eval()
        return piq.ContentLoss(feature_extractor=features.to(device), layers=("15",), distance="mse")
    import lpips

    model = lpips.LPIPS(net="vgg", pnet_rand=True, verbose=False).to(device)
    return lambda x, y: model(x, y, normalize=True).mean()


def run_case(case: str, weights: Path, device: torch.device, shape: list[int], repeats: int, autocast: bool) -> dict:
    """One case in this process: its median and its peak memory."""
    torch.manual_seed(0)
    loss = build(case, weights, device)
    x = torch.rand(*shape, device=device, requires_grad=True)
    y = torch.rand(*shape, device=device)

    def step() -> None:
        with precision(device, autocast):
            value = loss(x, y)
        value.backward()
        x.grad = None

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    (ms,) = median_ms([step], device, repeats)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else _peak_resident_bytes()
    return {"ms": ms, "peak": peak}


def _peak_resident_bytes() -> int:
    """This process's peak resident memory. VmHWM starts afresh at exec; ru_maxrss would carry
    over the parent's peak from before the fork."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--shape", type=int, nargs=4, default=[4, 3, 256, 256])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--weights", help=argparse.SUPPRESS)
    parser.add_argument(
        "--autocast",
        action=argparse.BooleanOptionalAction,
        help="also run every case under bf16 autocast (default: on CUDA only)",
    )
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args()
    device = torch.device(args.device)
    autocast = device.type == "cuda" if args.autocast is None else args.autocast
    if args.case:  # a child process: one case, its numbers as JSON
        print(json.dumps(run_case(args.case, Path(args.weights), device, args.shape, args.repeats, autocast)))
        return

    from torchvision.models import vgg as tv_vgg

    cases = installed_cases()
    # (case, under autocast), labelled "<case>" or "<case>, bf16 autocast"
    runs = [(case, amp) for amp in ((False, True) if autocast else (False,)) for case in cases]
    labels = [case + (AUTOCAST if amp else "") for case, amp in runs]
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "vgg16_random.pth"
        torch.save(tv_vgg.make_layers(tv_vgg.cfgs["D"]).state_dict(), weights)
        # medians, interleaved in this process
        losses = {case: build(case, weights, device) for case in cases}
        x = torch.rand(*args.shape, device=device, requires_grad=True)
        y = torch.rand(*args.shape, device=device)

        def step(loss: Callable, amp: bool) -> Callable[[], None]:
            def run() -> None:
                with precision(device, amp):
                    value = loss(x, y)
                value.backward()
                x.grad = None

            return run

        medians = median_ms([step(losses[case], amp) for case, amp in runs], device, args.repeats)
        times = dict(zip(labels, medians))
        del losses
        peaks = {}
        for (case, amp), label in zip(runs, labels):
            cmd = [
                sys.executable,
                __file__,
                "--case",
                case,
                "--weights",
                str(weights),
                "--device",
                args.device,
                "--repeats",
                "3",
                "--autocast" if amp else "--no-autocast",
                "--shape",
                *map(str, args.shape),
            ]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
            peaks[label] = json.loads(out)["peak"]
    rows = [[label, f"{times[label]:.1f}", f"{peaks[label] / 2**20:.0f}"] for label in labels]
    for row in rows:
        print(f"{row[0]:50s} fwd+bwd {row[1]:>8s} ms   peak {row[2]:>6s} MiB")
    pairs = [
        (label + suffix, theirs + suffix, ours + suffix, target)
        for suffix in ("", AUTOCAST)
        for label, theirs, ours, target in VERDICTS
        if theirs + suffix in times and ours + suffix in times
    ]
    verdicts = verdict_rows([(label, times[theirs] / times[ours], t) for label, theirs, ours, t in pairs])
    for row, (_, theirs, ours, _) in zip(verdicts, pairs):
        row.append("yes" if peaks[ours] < peaks[theirs] else "NO")
    summary = markdown_table(["ratio (same run)", "measured", "target", "met", "lower peak memory"], verdicts)
    memory = (
        "peak allocated CUDA memory" if device.type == "cuda" else "maximum resident memory of one process per case"
    )
    precisions = "float32 and bf16 autocast" if autocast else "float32"
    missing = [case for case in CASES if case not in cases]
    publish(
        f"perceptual-{device.type}",
        f"Perceptual losses, {'x'.join(map(str, args.shape))} {precisions}, {device.type}",
        f"python benchmarks/bench_perceptual.py --device {args.device}",
        f"{environment(device)}; forward+backward medians of {args.repeats} runs, interleaved; peak: {memory};"
        " random weights, piq given the same VGG16"
        + (f"; not installed, left out: {', '.join(missing)}" if missing else ""),
        [markdown_table(["loss", "forward+backward ms", "peak MiB"], rows), summary],
        write=not args.no_write,
    )


if __name__ == "__main__":
    main()
