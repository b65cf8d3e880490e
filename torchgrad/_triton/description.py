"""An operator's description as a string: what the Triton ops take as an argument.

:func:`plain` writes a :class:`~torchgrad._separable.Separable` as nested tuples of plain values,
every field of every dataclass in it, whatever the fields are (so it follows changes of
:class:`~torchgrad._stencil.Stencil` without edits here); Dynamo traces it. :func:`describe` is its
``repr`` and :func:`parse` reads that back (cached), :func:`from_plain` the tuples. The string is the
whole operator, not a key into a table of this process, so graphs captured by ``torch.compile`` and
``torch.export`` carry it. This file never imports Triton.
"""

from __future__ import annotations

import ast
import dataclasses
from functools import lru_cache
from typing import Any

import torch

from .._separable import Separable
from .._stencil import Row, Stencil
from .plan import Unsupported

_CLASSES: dict[str, Any] = {"@" + cls.__name__: cls for cls in (Separable, Stencil, Row)}


def plain(value: Any) -> Any:
    """``value`` as nested tuples of numbers, strings and ``None``: a dataclass is ``("@Name", ((field,
    value), ...))``, a dtype ``("@dtype", name)``, a tensor ``("@tensor",)`` (no description has one)."""
    if isinstance(value, (Separable, Stencil, Row)):
        body = tuple((f.name, plain(getattr(value, f.name))) for f in dataclasses.fields(value))
        return ("@" + type(value).__name__, body)
    if isinstance(value, tuple):
        return tuple(plain(v) for v in value)
    if isinstance(value, torch.dtype):
        return ("@dtype", str(value).removeprefix("torch."))
    if isinstance(value, torch.Tensor):
        return ("@tensor",)
    return value


def from_plain(value: Any) -> Any:
    """The value that :func:`plain` wrote; :class:`Unsupported` for one with a tensor."""
    if isinstance(value, tuple) and value and isinstance(value[0], str) and value[0].startswith("@"):
        tag = value[0]
        if tag == "@dtype":
            return getattr(torch, value[1])
        if tag not in _CLASSES:
            raise Unsupported("tensor weights have no description")
        return _CLASSES[tag](**{name: from_plain(v) for name, v in value[1]})
    if isinstance(value, tuple):
        return tuple(from_plain(v) for v in value)
    return value


def describe(op: Separable) -> str:
    """``op`` as a string that :func:`parse` reads back; :class:`Unsupported` for tensor weights."""
    text = repr(plain(op))
    parse(text)
    return text


@lru_cache(maxsize=512)
def parse(description: str) -> Separable:
    """The operator that :func:`describe` wrote."""
    op = from_plain(ast.literal_eval(description))
    if not isinstance(op, Separable):
        raise Unsupported(f"the description is not an operator: {description[:80]!r}")
    return op
