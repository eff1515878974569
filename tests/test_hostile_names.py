"""Names are data, never markup: hostile method names stay inert text in the board's markdown and page."""

from __future__ import annotations

import re
import unicodedata

import pytest

from latbench.leaderboard import site
from latbench.leaderboard.board import md_text

HOSTILE = [
    "![x](https://evil.example/p.png)",
    "[click](javascript:alert(1))",
    "<img src=x onerror=alert(1)>",
    "a | b | c",
    "**bold** _it_ `code` ~~s~~",
    "https://evil.example/autolink",
    "www.evil.example",
    "line\nbreak",
    "__NOSCRIPT__\\",
    "__DATA__",
    "</script><script>alert(1)</script>",
    "evil {: onmouseover=alert(document.domain) style=position:fixed;inset:0 }",  # attr_list (docs site)
    "$x^{2}$",  # maths on GitHub
    "fl\u200bops \u202eevil \x1b[31mred\x00\x08",  # zero-width, bidi override, ESC, NUL, BS
    "admin@latbench.example",  # an e-mail autolink on GitHub
    "blank\u3164\u2800\u034f\ufe0f\u2028\u3000fillers",  # letters and separators that draw nothing
]


@pytest.mark.parametrize("name", HOSTILE)
def test_markdown_cell_is_inert(name):
    cell = md_text(name)
    assert "\n" not in cell and "<" not in cell and ">" not in cell
    assert not re.search(r"(?<!\\)[|*_`\[\]!~]", cell), cell  # every markdown opener escaped
    assert "://" not in cell and "www." not in cell  # no bare-URL autolinks
    assert not re.search(r"[{}$@]", cell)  # no attribute list, no maths, no e-mail link
    assert not any(unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp") for c in cell)  # nothing invisible
    assert not set(cell) & set("\u3164\u2800\u034f\ufe0f\u3000")


def test_attribute_list_payload_stays_text_in_the_docs_sites_markdown():
    import markdown  # what mkdocs renders docs/results.md with (in the test extra)

    name = "evil {: onmouseover=alert(document.domain) }"
    table = f"| method | x |\n|---|---|\n| {md_text(name)} | 1 |\n"
    out = markdown.markdown(table, extensions=["attr_list", "tables"])
    assert "onmouseover=" in out and 'onmouseover="' not in out and "<td>evil &#123;:" in out


def test_placeholders_are_filled_in_one_pass(monkeypatch):
    """Text that looks like a template placeholder stays literal (it used to break the embedded JSON)."""
    monkeypatch.setattr(site, "page_data", lambda entries: {"generated": "__COUNT__ __DATA__", "x": "__NOSCRIPT__\\"})
    monkeypatch.setattr(site, "_noscript_tables", lambda entries: "__DATA__ <p>t</p>")
    page = site.render_html([])
    assert page.count('id="board-data"') == 1
    payload = re.search(r'<script type="application/json" id="board-data">(.*?)</script>', page, re.S).group(1)
    assert "__NOSCRIPT__" in payload and "__COUNT__ __DATA__" in payload
    assert "__DATA__ <p>t</p>" in page
