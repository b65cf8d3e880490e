"""The Examples in the docstrings of every public module run as doctests, under their installed names; the
README's opening example runs as written."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import re
from pathlib import Path

import pytest
import torch

import torchgrad


def _modules() -> list[str]:
    names = ["torchgrad"]
    for info in pkgutil.walk_packages(torchgrad.__path__, "torchgrad."):
        names.append(info.name)
    losses = importlib.import_module("torchgrad.losses")
    names += [info.name for info in pkgutil.walk_packages(losses.__path__, "torchgrad.losses.")]
    return sorted(set(names))


MODULES = _modules()


def test_the_losses_are_found_under_torchgrad() -> None:
    assert "torchgrad.losses.gradient_loss" in MODULES
    assert "torchgrad.losses.vgg" in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in finder.find(module, name, globs={"torch": torch, **vars(module)}):
        runner.run(test)
    results = runner.summarize(verbose=False)
    assert results.failed == 0, f"{results.failed} of {results.attempted} doctest examples failed in {name}"


def test_the_readme_opens_with_an_example_that_runs_as_written() -> None:
    """The README's first code block is complete (imports included): pasted alone, it trains."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    first = re.search(r"^```python\n(.*?)^```", readme, re.S | re.M)
    assert first is not None and readme.index(first.group(0)) < len(readme) // 10, "no code block near the top"
    torch.manual_seed(0)
    scope: dict = {}
    exec(compile(first.group(1), "README.md", "exec"), scope)  # a fresh namespace: nothing given from outside
    assert torch.isfinite(scope["loss"]) and scope["loss"].requires_grad
