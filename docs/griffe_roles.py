"""A griffe extension for the documentation build: the docstrings' reStructuredText idioms as Markdown.

torchgrad's docstrings are Google style with two reStructuredText idioms, which Markdown would print
literally:

- cross-reference roles (``:func:`gradient_loss```, ``:class:`~torchgrad.losses.vgg.VGGFeatures```,
  ``:mod:`torchgrad.tf_compat```) become mkdocstrings cross-references when they name an object of
  the documented packages (so a reference to something undocumented fails the strict build), and
  inline code otherwise (``:func:`torch.gradient```);
- ``.. math::`` blocks become ``$$ ... $$`` blocks for MathJax.

and two Napoleon forms of Google style that griffe reads otherwise: an ``Example:`` section (griffe
knows ``Examples:``), and one ``Args`` entry for several parameters (``a, b: text`` becomes one entry
per parameter).

A module whose docstring opens with ``Module form of :func:`name``` and has no ``Args`` section of its own
gets the function's entries for the parameters its constructor takes, so that its page has a parameter
table while each parameter is described once, in the function.

Names are looked up as Sphinx does: as written, then in the enclosing class and module. A function
or class that shares its name with its module (``torchgrad.sobel``) is the function, not the module.
"""

from __future__ import annotations

import re
import textwrap
from typing import Any, Optional

import griffe

_EXAMPLE = re.compile(r"^([ \t]*)Example:[ \t]*$", re.M)
_ARGS = re.compile(r"^[ \t]*(?:Args|Arguments|Parameters):[ \t]*$")
_NAMES = re.compile(r"^(?P<indent>[ \t]+)(?P<names>\w+(?:, \w+)+): (?P<text>.*)$")
_ROLE = re.compile(r":(?:py:)?(func|class|mod|meth|attr|data|exc|obj):`(~?)([\w.]+)(?:\(\))?`")
_MATH = re.compile(r"^(?P<indent>[ \t]*)\.\. math::[ \t]*(?P<inline>.*)$")
_MODULE_FORM = re.compile(r"^Module form of :func:`(?P<name>[\w.]+)`")
_ENTRY = re.compile(r"^(?P<names>\w+(?:, \w+)*):")


def _lookup(obj: griffe.Object, name: str) -> Optional[griffe.Object | griffe.Alias]:
    collection = obj.modules_collection
    scopes = []
    scope: Any = obj
    while scope is not None:
        scopes.append(scope.path + ".")
        scope = scope.parent
    for prefix in ["", *scopes]:
        try:
            found = collection.get_member(prefix + name)
        except (KeyError, ValueError, griffe.AliasResolutionError, griffe.CyclicAliasError):
            continue
        if found is not None:
            return found
    return None


def _target(obj: griffe.Object, role: str, name: str) -> Optional[str]:
    """The canonical path of what ``name`` names from ``obj``, or None outside the loaded packages."""
    found = _lookup(obj, name)
    if found is None:
        return None
    try:
        if role != "mod" and found.is_module:
            last = name.rsplit(".", 1)[-1]
            if last in found.members:  # torchgrad.sobel the function, defined in torchgrad/sobel.py
                return found.members[last].canonical_path
        return found.canonical_path
    except (griffe.AliasResolutionError, griffe.CyclicAliasError):  # an import from outside (torch, ...)
        return None


def _roles(obj: griffe.Object, text: str) -> str:
    def replace(match: re.Match) -> str:
        role, short, name = match.groups()
        shown = name.rsplit(".", 1)[-1] if short else name
        target = _target(obj, role, name)
        return f"[`{shown}`][{target}]" if target else f"`{shown}`"

    return _ROLE.sub(replace, text)


def _math(text: str) -> str:
    lines, out, i = text.splitlines(), [], 0
    while i < len(lines):
        match = _MATH.match(lines[i])
        if not match:
            out.append(lines[i])
            i += 1
            continue
        indent, body = match["indent"], [match["inline"]] if match["inline"].strip() else []
        i += 1
        block = []
        while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > len(indent)):
            block.append(lines[i])
            i += 1
        body += textwrap.dedent("\n".join(block)).strip().splitlines()
        out += ["", f"{indent}$$", *(indent + line for line in body), f"{indent}$$", ""]
    return "\n".join(out)


def _napoleon(text: str) -> str:
    lines: list[str] = []
    args_indent: Optional[int] = None  # the indentation of the "Args:" header while inside that section
    for line in _EXAMPLE.sub(r"\1Examples:", text).splitlines():
        indent = len(line) - len(line.lstrip())
        if line.strip() and args_indent is not None and indent <= args_indent:
            args_indent = None
        if _ARGS.match(line):
            args_indent = indent
        match = _NAMES.match(line) if args_indent is not None else None
        if match:
            lines += [f"{match['indent']}{name}: {match['text']}" for name in match["names"].split(", ")]
        else:
            lines.append(line)
    return "\n".join(lines)


def _args(text: str) -> list[list[str]]:
    """The entries of a Google-style ``Args`` section, dedented, each a list of lines."""
    entries: list[list[str]] = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if _ARGS.match(line):
            header = len(line) - len(line.lstrip())
            body = []
            for entry_line in lines[i + 1 :]:
                if entry_line.strip() and len(entry_line) - len(entry_line.lstrip()) <= header:
                    break
                body.append(entry_line)
            for entry_line in textwrap.dedent("\n".join(body)).splitlines():
                if _ENTRY.match(entry_line):
                    entries.append([entry_line])
                elif entries:
                    entries[-1].append(entry_line)
            break
    return entries


def _module_form_args(obj: griffe.Object) -> None:
    """Gives the class ``obj`` (``Module form of :func:`name```) the function's entries for its constructor's
    parameters, unless it has an ``Args`` section of its own."""
    match = _MODULE_FORM.match(obj.docstring.value) if obj.docstring is not None else None
    if match is None or obj.docstring is None or any(_ARGS.match(line) for line in obj.docstring.value.splitlines()):
        return
    function = _lookup(obj, match["name"])
    constructor = obj.members.get("__init__")
    if function is None or function.docstring is None or constructor is None:
        return
    parameters = {parameter.name for parameter in constructor.parameters}  # type: ignore[union-attr]
    entries = [
        entry
        for entry in _args(function.docstring.value)
        if set(_ENTRY.match(entry[0])["names"].split(", ")) & parameters  # type: ignore[index]
    ]
    if entries:
        args = ["Args:", *(f"    {line}" if line.strip() else "" for entry in entries for line in entry), ""]
        text = obj.docstring.value.rstrip().splitlines()
        examples = [i for i, line in enumerate(text) if re.match(r"^Examples?:\s*$", line)]
        at = examples[0] if examples else len(text) + 1
        obj.docstring.value = "\n".join(text[:at] + ([""] if at > len(text) else []) + args + text[at:])


class RestructuredTextIdioms(griffe.Extension):
    """Rewrites the docstrings of a loaded package once all its objects are known."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        self._module_forms(pkg)
        self._visit(pkg)

    def _module_forms(self, obj: griffe.Object) -> None:
        if obj.is_class:
            _module_form_args(obj)
        for member in obj.members.values():
            if not member.is_alias:
                self._module_forms(member)  # type: ignore[arg-type]

    def _visit(self, obj: griffe.Object) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _napoleon(_math(_roles(obj, obj.docstring.value)))
        for member in obj.members.values():
            if not member.is_alias:
                self._visit(member)  # type: ignore[arg-type]
