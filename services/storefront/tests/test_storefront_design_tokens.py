"""Invariant 13: the storefront's styles use design tokens only.

Every colour and length is named once, in ``static/tokens.css``; the stylesheet and the templates
only refer to them (``var(--...)``). Breakpoints in ``@media`` preludes are the one exception CSS
forces (custom properties do not work there). Templates carry no inline styles at all.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import storefront

PACKAGE = Path(storefront.__file__).parent
STATIC = PACKAGE / "static"
TEMPLATES = PACKAGE / "templates"

HEX = re.compile(r"#[0-9a-fA-F]{3,8}(?![\w-])")
FUNCTIONS = re.compile(r"\b(?:rgba?|hsla?|hwb|lab|lch|oklab|oklch|color)\(", re.IGNORECASE)
LENGTH = re.compile(r"(?<![\w#-])-?\d*\.?\d+(?:px|rem|em|pt|pc|cm|mm|in|vh|vw|vmin|vmax|ch|ex)\b")
NAMED = re.compile(
    r":\s*[^;{}]*\b(?:white|black|red|green|blue|gray|grey|orange|brown|yellow|purple|pink|"
    r"navy|teal|silver|maroon|olive|beige|tan|ivory)\b",
    re.IGNORECASE,
)
COLOUR_ATTRIBUTE = re.compile(
    r'\b(?:fill|stroke|color|bgcolor|stop-color)="(?!none|currentColor)', re.I
)


def _strip_comments(css: str) -> str:
    return re.sub(r"/\*.*?\*/", "", css, flags=re.DOTALL)


def _declarations(css: str) -> list[str]:
    """The stylesheet's lines with @media preludes removed (breakpoints may be literal)."""
    lines = []
    for line in _strip_comments(css).splitlines():
        if line.strip().startswith("@media"):
            continue
        lines.append(line)
    return lines


def stylesheets() -> list[Path]:
    return sorted(p for p in STATIC.glob("*.css") if p.name != "tokens.css")


def templates() -> list[Path]:
    return sorted(TEMPLATES.rglob("*.html"))


def test_there_is_one_token_file_and_one_stylesheet() -> None:
    assert (STATIC / "tokens.css").is_file()
    assert [p.name for p in stylesheets()] == ["app.css"]


def test_tokens_are_custom_properties_only() -> None:
    body = _strip_comments((STATIC / "tokens.css").read_text())
    assert body.strip().startswith(":root")
    declarations = [
        d.strip() for d in body.split("{", 1)[1].rsplit("}", 1)[0].split(";") if d.strip()
    ]
    assert len(declarations) > 40
    assert all(d.startswith("--") for d in declarations), [
        d for d in declarations if not d.startswith("--")
    ]


def test_every_token_the_stylesheet_uses_is_defined() -> None:
    defined = set(re.findall(r"(--[\w-]+)\s*:", (STATIC / "tokens.css").read_text()))
    used = set(re.findall(r"var\((--[\w-]+)", (STATIC / "app.css").read_text()))
    used |= {m for t in templates() for m in re.findall(r"var\((--[\w-]+)", t.read_text())}
    assert used, "the stylesheet uses the tokens"
    assert used - defined == set()


@pytest.mark.parametrize("path", stylesheets(), ids=lambda p: p.name)
def test_the_stylesheet_has_no_colour_or_size_literal(path: Path) -> None:
    offending = []
    for number, line in enumerate(_declarations(path.read_text()), start=1):
        for pattern in (HEX, FUNCTIONS, LENGTH, NAMED):
            if pattern.search(line):
                offending.append(f"{path.name}:{number}: {line.strip()}")
    assert offending == []


@pytest.mark.parametrize("path", templates(), ids=lambda p: str(p.relative_to(TEMPLATES)))
def test_templates_have_no_inline_style_colour_or_size(path: Path) -> None:
    html = path.read_text()
    assert "style=" not in html, "no inline styles: use a class from app.css"
    assert "<style" not in html, "no style blocks: app.css holds every style"
    assert not HEX.search(html), HEX.search(html)
    assert not FUNCTIONS.search(html), FUNCTIONS.search(html)
    assert not re.search(r"\d+px\b", html), re.search(r"\d+px\b", html)
    assert not COLOUR_ATTRIBUTE.search(html), COLOUR_ATTRIBUTE.search(html)


def test_the_scan_would_catch_a_literal() -> None:
    """The patterns above find what they are meant to (so a pass means something)."""
    for line in (
        "color: #fff;",
        "margin: 12px;",
        "background: rgb(0 0 0);",
        "width: 3rem;",
        "color: white;",
    ):
        assert any(p.search(line) for p in (HEX, FUNCTIONS, LENGTH, NAMED)), line
    for line in ("color: var(--color-ink);", "width: 100%;", "flex: 1;", "grid-area: 1 / -1;"):
        assert not any(p.search(line) for p in (HEX, FUNCTIONS, LENGTH, NAMED)), line


def test_htmx_is_vendored_not_fetched() -> None:
    assert (STATIC / "htmx.min.js").stat().st_size > 40_000
    base = (TEMPLATES / "base.html").read_text()
    assert "static('htmx.min.js')" in base
    assert "https://" not in base
    assert "//unpkg" not in base
    assert "cdn" not in base.lower()
