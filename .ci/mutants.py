"""Deliberate mistakes that the test suite must catch: each is applied to a copy of the working tree, the
tests that should catch it run there, and the table says which were caught (killed) and by what.

    .venv/bin/python .ci/mutants.py                    # every mutant, on the working tree
    .venv/bin/python .ci/mutants.py sign-l1            # the named ones
    .venv/bin/python .ci/mutants.py --rev HEAD~3       # on a commit instead of the working tree

Run it before and after changing the tests: a mutant the suite killed before must stay killed. A mutant whose
code no longer exists is reported as such (its text follows the code it mutates: update it with the code).
The copy is imported instead of the installed package (the tests run from its root, and ``torchgrad/losses``
there links to its ``losses/``), so the working tree itself is never touched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple, Optional

ROOT = Path(__file__).resolve().parents[1]


class Mutant(NamedTuple):
    name: str
    what: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]


MUTANTS = (
    Mutant(
        "slab-mean",
        "the slabs' partial totals averaged instead of summed",
        "losses/_fused.py",
        "torch.stack(parts).sum(0)",
        "torch.stack(parts).mean(0)",
        ("tests/test_fused_penalty.py", "tests/test_gradient_loss.py"),
    ),
    Mutant(
        "module-drops-option",
        "GradientLoss's module does not pass normalized on",
        "losses/gradient_loss.py",
        "normalized=self.normalized,",
        "normalized=False,",
        ("tests/test_module_twins.py",),
    ),
    Mutant(
        "padding-fold",
        "the CPU executor's adjoint subtracts a padded edge's cotangent instead of folding it back",
        "torchgrad/_padded.py",
        "region.narrow(dim, copied + reach, 1).add_(region.narrow(dim, k, 1))",
        "region.narrow(dim, copied + reach, 1).sub_(region.narrow(dim, k, 1))",
        ("tests/test_linear.py", "tests/test_padded.py"),
    ),
    Mutant(
        "adjoint-weight",
        "the stencil's adjoint reads its interior taps unflipped (correlation for convolution)",
        "torchgrad/_stencil.py",
        "g.narrow(dim, bh + h - t, m)) for t in taps]",
        "g.narrow(dim, bh - h + t, m)) for t in taps]",
        ("tests/test_stencil.py", "tests/test_linear.py"),
    ),
    Mutant(
        "sign-l1",
        "the L1 penalty's derivative with the wrong sign",
        "losses/_penalties.py",
        "return (a.sign() if traceable else a.sign_()), None\n\n\n@dataclass(frozen=True)\nclass Squared",
        "return (-a.sign() if traceable else a.sign_().neg_()), None\n\n\n@dataclass(frozen=True)\nclass Squared",
        ("tests/test_fused_penalty.py", "tests/test_gradient_loss.py"),
    ),
    Mutant(
        "mask-off-by-one",
        "a gradient element counts unless it reads two invalid samples (one is enough to exclude it)",
        "losses/_fused.py",
        "return tuple(c != 0 for c in op.support().apply((~mask).to(torch.float32)))",
        "return tuple(c > 1 for c in op.support().apply((~mask).to(torch.float32)))",
        ("tests/test_gradient_loss.py", "tests/test_fused_penalty.py"),
    ),
    Mutant(
        "kernel-sign-edge-aware",
        "the loss kernels' edge-aware derivative with the wrong sign",
        "torchgrad/_triton/penalty_kernels.py",
        "d = _sign(a) * b",
        "d = -_sign(a) * b",
        ("tests/test_triton_losses.py",),
    ),
    Mutant(
        "depth-reduction",
        "the depth losses' batch-based reduction divides each image by its own count",
        "losses/_depth_batch.py",
        'if reduction == "batch-based":',
        'if reduction == "never":',
        ("tests/test_depth_losses.py",),
    ),
)


def _copy(tree: Path, rev: Optional[str]) -> None:
    if rev is not None:
        archive = subprocess.run(["git", "archive", rev], cwd=ROOT, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
        (tree / "torchgrad" / "losses").symlink_to("../losses")
        return
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    for name in files:
        source = ROOT / name
        if source.is_file():
            (tree / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, tree / name)
    (tree / "torchgrad" / "losses").symlink_to("../losses")  # the installed layout, from the copy


def run(mutant: Mutant, tree: Path) -> tuple[str, str, float]:
    path = tree / mutant.path
    original = path.read_text()
    if original.count(mutant.old) != 1:
        return "no longer applies", f"{mutant.old!r} found {original.count(mutant.old)} times", 0.0
    path.write_text(original.replace(mutant.old, mutant.new))
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "TRITON_INTERPRET": "1"}
    start = time.perf_counter()
    try:
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:randomly", "-p", "no:cacheprovider", *mutant.tests],
            cwd=tree,
            env=env,
            capture_output=True,
            text=True,
        )
    finally:
        path.write_text(original)
    seconds = time.perf_counter() - start
    failed = [line.split(" ")[1] for line in result.stdout.splitlines() if line.startswith("FAILED ")]
    if result.returncode == 1:
        return "killed", failed[0] if failed else "(a failure)", seconds
    if result.returncode == 0:
        return "SURVIVED", "every test passed", seconds
    return "error", result.stdout.strip().splitlines()[-1] if result.stdout.strip() else result.stderr[-200:], seconds


def main(arguments: list[str]) -> int:
    rev = None
    if "--rev" in arguments:
        at = arguments.index("--rev")
        rev, arguments = arguments[at + 1], arguments[:at] + arguments[at + 2 :]
    names = arguments
    chosen = [m for m in MUTANTS if not names or m.name in names]
    unknown = set(names) - {m.name for m in MUTANTS}
    if unknown:
        raise SystemExit(f"unknown mutants {sorted(unknown)}; known: {[m.name for m in MUTANTS]}")
    with tempfile.TemporaryDirectory(prefix="torchgrad-mutants-") as folder:
        tree = Path(folder)
        _copy(tree, rev)
        print("| mutant | what | result | by | seconds |\n|---|---|---|---|---|")
        survived = 0
        for mutant in chosen:
            result, by, seconds = run(mutant, tree)
            survived += result != "killed"
            print(f"| {mutant.name} | {mutant.what} | {result} | `{by}` | {seconds:.0f} |", flush=True)
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
