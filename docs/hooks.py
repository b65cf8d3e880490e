"""mkdocs hooks: the API sources in their installed layout, the gallery and the included tables.

- ``on_config``: the repository keeps the losses in ``losses/``; the wheel installs them as
  ``torchgrad/losses/``. mkdocstrings reads the sources statically, so they are staged in that layout
  under ``build/docs-api/`` (a copy, made afresh by every build), whatever the installation.
- ``on_files``: the gallery's figures, drawn by ``docs/gallery.py`` from the photographs bundled with
  scikit-image, so they never go stale.
- ``on_page_markdown``: ``benchmarks/RESULTS.md`` in the performance page, and the table of the
  deblurring example's committed results (``docs/deblur_results.json``) in the gallery.
- ``on_page_content``: formulas (``pymdownx.arithmatex``'s ``\\( \\)`` and ``\\[ \\]``) rendered to MathML when the
  site is built, so that a page needs no script to show them.
- ``on_post_page``, ``on_post_build``: the site works offline: a page or style sheet that loads a script, a style
  sheet, a font or an image from another host fails the build (links to follow are not loads).
"""

from __future__ import annotations

import html
import importlib.util
import json
import logging
import re
import shutil
import time
from pathlib import Path
from typing import Any

import latex2mathml.converter
from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError
from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
# [tool.setuptools.package-dir] of pyproject.toml: where each installed package lives in the repository
PACKAGES = {"torchgrad": ROOT / "torchgrad", "torchgrad/losses": ROOT / "losses"}
STAGED = ROOT / "build" / "docs-api"
INCLUDE = re.compile(r"<!-- include (?P<path>[\w./-]+) -->")
# pymdownx.arithmatex's output with `generic: true`: inline \( \) in a span, display \[ \] in a div
FORMULA = re.compile(
    r'<(?P<tag>span|div) class="arithmatex">\s*\\(?P<open>[(\[])(?P<tex>.*?)\\[)\]]\s*</(?P=tag)>', re.S
)
# what a page loads by itself from another host: an attribute that fetches (any tag but a link to follow), or a
# url() or @import in a style sheet; quoted either way
FETCHED = re.compile(
    r"(?:<(?!a\b)\w+\b[^>]*?\b(?:src|href|srcset|poster|data)\s*=\s*[\"']\s*|url\(\s*[\"']?|@import\s+[\"'])"
    r"(?P<url>(?:https?:)?//[^\"'\s)]+)"
)
log = logging.getLogger("mkdocs.hooks.torchgrad")


@event_priority(100)  # before mkdocstrings reads its search paths, in its own on_config
def on_config(config: MkDocsConfig, **kwargs: Any) -> None:
    shutil.rmtree(STAGED, ignore_errors=True)
    for installed, source in PACKAGES.items():
        target = STAGED / installed
        target.mkdir(parents=True)
        for path in source.glob("*.py"):
            shutil.copy2(path, target / path.name)


def _gallery() -> Any:
    spec = importlib.util.spec_from_file_location("torchgrad_docs_gallery", DOCS / "gallery.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def on_files(files: Files, config: MkDocsConfig, **kwargs: Any) -> Files:
    start = time.perf_counter()
    figures = _gallery().figures()
    for name, png in figures.items():
        files.append(File.generated(config, f"gallery/{name}.png", content=png))
    log.info(f"gallery: {len(figures)} figures drawn in {time.perf_counter() - start:.1f} s")
    return files


def _include(match: re.Match) -> str:
    """A Markdown file of the repository, its headings one level down (its title becomes a section)."""
    text = (ROOT / match["path"]).read_text()
    return re.sub(r"^(#+) ", r"#\1 ", text, flags=re.M)


def _deblur_table() -> str:
    results = json.loads((DOCS / "deblur_results.json").read_text())
    names = {"degraded": "degraded input", "l1": "L1", "l1+gradient": "L1 + gradient loss"}
    rows = ["| run | PSNR (dB) | gradient-magnitude error | SSIM |", "|---|---|---|---|"]
    for key in ("degraded", "l1", "l1+gradient"):
        r = results[key]
        rows.append(f"| {names[key]} | {r['psnr']:.2f} | {r['gradient_error']:.4f} | {r['ssim']:.3f} |")
    return "\n".join(rows)


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files, **kwargs: Any) -> str:
    markdown = INCLUDE.sub(_include, markdown)
    return markdown.replace("<!-- deblur-table -->", _deblur_table())


def _mathml(match: re.Match) -> str:
    display = "block" if match["open"] == "[" else "inline"
    mathml = latex2mathml.converter.convert(html.unescape(match["tex"]).strip(), display=display)
    return f'<{match["tag"]} class="arithmatex">{mathml}</{match["tag"]}>'


def on_page_content(content: str, page: Page, config: MkDocsConfig, files: Files, **kwargs: Any) -> str:
    return FORMULA.sub(_mathml, content)


def _refuse_fetches(text: str, where: str) -> None:
    fetched = sorted({match["url"] for match in FETCHED.finditer(text)})
    if fetched:
        raise PluginError(f"{where} loads from another host (the site must work offline): {fetched}")


def on_post_page(output: str, page: Page, config: MkDocsConfig, **kwargs: Any) -> str:
    _refuse_fetches(output, page.file.src_uri)
    return output


def on_post_build(config: MkDocsConfig, **kwargs: Any) -> None:
    """The style sheets the pages load (the theme's and the site's own) fetch nothing from another host either."""
    for sheet in Path(config.site_dir).rglob("*.css"):
        _refuse_fetches(sheet.read_text(errors="replace"), str(sheet.relative_to(config.site_dir)))
