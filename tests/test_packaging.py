"""The losses are `torchgrad.losses`: a user's own `losses` module never shadows them, nor they it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch


def _run(code: str, cwd: Path) -> str:
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_users_losses_module_and_torchgrad_losses_coexist(tmp_path: Path) -> None:
    (tmp_path / "losses.py").write_text("WHOSE = 'user'\n")
    code = (
        "import losses\n"
        "from torchgrad.losses import GradientLoss\n"
        "import torchgrad.losses as ours\n"
        "import torchgrad\n"
        "print(losses.WHOSE, GradientLoss.__module__, ours.__name__, torchgrad.losses is ours, "
        "Path(ours.__file__).parent.name)\n"
    )
    out = _run("from pathlib import Path\n" + code, tmp_path)
    assert out == "user torchgrad.losses.gradient_loss torchgrad.losses True losses"


def test_a_users_losses_package_imported_after_torchgrad_losses(tmp_path: Path) -> None:
    (tmp_path / "losses").mkdir()
    (tmp_path / "losses" / "__init__.py").write_text("WHOSE = 'user package'\n")
    code = "import torchgrad.losses\nimport losses\nprint(losses.WHOSE, hasattr(losses, 'GradientLoss'))\n"
    assert _run(code, tmp_path) == "user package False"


def test_no_top_level_losses_is_importable_without_the_users_own(tmp_path: Path) -> None:
    code = "import importlib.util\nprint(importlib.util.find_spec('losses'))\n"
    assert _run(code, tmp_path) == "None"


def test_torchgrad_alone_does_not_import_the_losses_or_torchvision(tmp_path: Path) -> None:
    code = "import sys, torchgrad\nprint('torchgrad.losses' in sys.modules, 'torchvision' in sys.modules)\n"
    assert _run(code, tmp_path) == "False False"


def test_torchgrad_imports_neither_dynamo_nor_triton(tmp_path: Path) -> None:
    code = "import sys, torchgrad\nprint('torch._dynamo' in sys.modules, 'triton' in sys.modules)\n"
    assert _run(code, tmp_path) == "False False"


def test_the_constant_result_mark_is_torchs() -> None:
    """The executor marks its trace-time decision as torch.compile's decorator would (without importing
    Dynamo at import time): the same attributes, the same values."""
    from torchgrad import _executor

    def mine() -> None: ...

    def torchs() -> None: ...

    assert vars(_executor._constant_result(mine)) == vars(torch.compiler.assume_constant_result(torchs))
