"""Speed and peak memory of the VGG perceptual losses next to piq's ContentLoss and LPIPS (VGG).

    python benchmarks/bench_perceptual.py                  # (4, 3, 256, 256) float32 on the CPU
    python benchmarks/bench_perceptual.py --device cuda    # adds bf16 autocast rows

Forward+backward medians, interleaved in one process; peak memory from one fresh process per case
(maximum resident set size on the CPU, peak allocated memory on CUDA). Every network has random
weights (nothing is downloaded): torchgrad's loss and piq share the same random VGG16. Needs
`pip install piq lpips`. Writes its section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
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


def run_case(case: str, weights: Path, device: torch.device, shape: list[int], repeats: int) -> dict:
    """One case in this process: its median and its peak memory."""
    torch.manual_seed(0)
    loss = build(case, weights, device)
    x = torch.rand(*shape, device=device, requires_grad=True)
    y = torch.rand(*shape, device=device)

    def step() -> None:
        loss(x, y).backward()
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
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.case:  # a child process: one case, its numbers as JSON
        print(json.dumps(run_case(args.case, Path(args.weights), device, args.shape, args.repeats)))
        return

    from torchvision.models import vgg as tv_vgg

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "vgg16_random.pth"
        torch.save(tv_vgg.make_layers(tv_vgg.cfgs["D"]).state_dict(), weights)
        # medians, interleaved in this process
        losses = {case: build(case, weights, device) for case in CASES}
        x = torch.rand(*args.shape, device=device, requires_grad=True)
        y = torch.rand(*args.shape, device=device)

        def step(loss: Callable) -> Callable[[], None]:
            def run() -> None:
                loss(x, y).backward()
                x.grad = None

            return run

        times = dict(zip(CASES, median_ms([step(losses[c]) for c in CASES], device, args.repeats)))
        del losses
        peaks = {}
        for case in CASES:
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
                "--shape",
                *map(str, args.shape),
            ]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
            peaks[case] = json.loads(out)["peak"]
    rows = [[c, f"{times[c]:.1f}", f"{peaks[c] / 2**20:.0f}"] for c in CASES]
    for row in rows:
        print(f"{row[0]:35s} fwd+bwd {row[1]:>8s} ms   peak {row[2]:>6s} MiB")
    verdicts = verdict_rows(
        [
            ("piq / torchgrad, relu3_3", times[CASES[1]] / times[CASES[0]], ">= 1.7"),
            ("lpips / torchgrad, four layers", times[CASES[3]] / times[CASES[2]], ">= 1.5"),
        ]
    )
    for row, (ours, theirs) in zip(verdicts, [(CASES[0], CASES[1]), (CASES[2], CASES[3])]):
        row.append("yes" if peaks[ours] < peaks[theirs] else "NO")
    summary = markdown_table(["ratio (same run)", "measured", "target", "met", "lower peak memory"], verdicts)
    memory = (
        "peak allocated CUDA memory" if device.type == "cuda" else "maximum resident memory of one process per case"
    )
    publish(
        f"perceptual-{device.type}",
        f"Perceptual losses, {'x'.join(map(str, args.shape))} float32, {device.type}",
        f"python benchmarks/bench_perceptual.py --device {args.device}",
        f"{environment(device)}; forward+backward medians of {args.repeats} runs, interleaved; peak: {memory};"
        " random weights, piq given the same VGG16",
        [markdown_table(["loss", "forward+backward ms", "peak MiB"], rows), summary],
        write=not args.no_write,
    )


if __name__ == "__main__":
    main()
