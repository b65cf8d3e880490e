"""The one builder of the named operators: a registry description becomes stencil chains."""

from __future__ import annotations

from functools import lru_cache
from typing import Optional

import torch
from torch import Tensor

from ._registry import Form, OperatorSpec
from ._separable import Separable
from ._stencil import padded_stencil
from ._validation import check_bool, check_image, check_int_choice, check_min_size, check_padding, check_spatial_dims
from .gradient import central_difference_operator


def check_form(caller: str, spec: OperatorSpec, spatial_dims: int, ksize: object) -> Form:
    """The form of ``spec`` for ``spatial_dims`` (checked) and ``ksize`` (checked here, on behalf of ``caller``)."""
    ksize = check_int_choice(caller, "ksize", ksize, spec.ksizes)
    form = spec.form(spatial_dims, ksize)
    if form is None:
        dims = " or ".join(str(d) for d in spec.spatial_dims if spec.form(d, ksize) is not None)
        raise ValueError(f"{caller}: `ksize={ksize}` needs spatial_dims={dims}, got spatial_dims={spatial_dims}")
    return form


def build_operator(
    caller: str,
    spec: OperatorSpec,
    image: Tensor,
    padding: Optional[str],
    normalized: bool,
    spatial_dims: int,
    ksize: int = 1,
) -> Separable:
    """The operator ``spec`` for ``image``; checks the arguments on behalf of ``caller``.

    ``padding`` is the border mode of an operator that takes one (else ignored); ``normalized``
    divides every output by the form's divisor. Each output's terms become chains of stencils, the
    divisor on each chain's last stage.
    """
    spatial_dims = check_spatial_dims(caller, "spatial_dims", spatial_dims, spec.spatial_dims)
    if spec.border == "one-sided":
        return central_difference_operator(image, spatial_dims, caller)
    image = check_image(caller, "image", image, spatial_dims)
    form = check_form(caller, spec, spatial_dims, ksize)
    border = spec.border
    if border is None:
        border = check_padding(caller, "padding", padding)
        normalized = check_bool(caller, "normalized", normalized)
        if border == "reflect":
            check_min_size(caller, "image", image, spatial_dims, 2, "reflect padding")
    divisor = form.divisor if normalized else 1
    if torch.compiler.is_compiling():  # (Dynamo traces through caches, and warns)
        return _chains(form, border, divisor, spatial_dims)
    return _cached_chains(form, border, divisor, spatial_dims)


def _chains(form: Form, border: str, divisor: int, spatial_dims: int) -> Separable:
    chains, output_of = [], []
    for o, output in enumerate(form.outputs):
        for term in output:
            chain = []
            for k, (axis, taps) in enumerate(term):
                dim = axis - spatial_dims
                last = k == len(term) - 1
                chain.append(padded_stencil(dim, taps, border, divisor=divisor if last else 1))
            chains.append(tuple(chain))
            output_of.append(o)
    summed = len(chains) > len(form.outputs)
    return Separable(tuple(chains), tuple(output_of) if summed else ())


@lru_cache(maxsize=256)
def _cached_chains(form: Form, border: str, divisor: int, spatial_dims: int) -> Separable:
    """:func:`_chains`, built once: every call of a named operator with the same arguments shares one
    :class:`Separable` (and what it caches about itself)."""
    return _chains(form, border, divisor, spatial_dims)
