"""Untrusted text in what latbench generates: one rule for names, one escape for free text.

- **Names** that become folder names, dataset keys and card entries (measured device names,
  registered source names, ``latbench profile --name``) must match :data:`NAME_PATTERN`: lower-case
  letters, digits, ``.``, ``_`` and ``-``, starting with a letter or digit. Such a name is one path
  component (never ``..``, never absolute, never hidden) and is inert in markdown, HTML and YAML.
- **Free text** (a CPU model string, a description, anything read from a file someone else wrote)
  is rendered through :func:`md_text`: one line, HTML-escaped, every markdown opener backslash-escaped
  and bare URLs defused, so it never becomes a link, an image, a tag or a broken table cell.
"""

from __future__ import annotations

import html
import re
import unicodedata

NAME_PATTERN = r"[a-z0-9][a-z0-9._-]{0,99}"
_NAME = re.compile(NAME_PATTERN)
#: what can open a markdown construct inside a table cell (links, images, emphasis, code, cell breaks);
#: < > & are HTML-escaped instead
_MD_SPECIAL = re.compile(r"([\\`*_\[\]!|~])")
#: written as character references: ``{:`` opens an attribute list in Python-Markdown (``attr_list``,
#: on in the docs site: ``{: onmouseover=...}`` would become an HTML attribute), ``$`` opens maths
#: on GitHub; a backslash does not escape them in both
_ENTITIES = {"{": "&#123;", "}": "&#125;", "$": "&#36;", "@": "&#64;"}  # "@": no e-mail autolink on GitHub


def is_safe_name(name: object) -> bool:
    """Whether ``name`` follows the naming rule (see the module docstring)."""
    return isinstance(name, str) and _NAME.fullmatch(name) is not None


def name_problem(name: object) -> str | None:
    """None for a good name, else why it is refused (one line, for error messages)."""
    if is_safe_name(name):
        return None
    return (
        f"{str(name)[:80]!r} is not a valid name: use lower-case letters, digits, '.', '_' and '-', "
        f"starting with a letter or digit (at most 100 characters)"
    )


def slug(text: str) -> str:
    """A best-effort safe name from free text (``"My Results"`` -> ``"my-results"``); '' if nothing is left."""
    s = re.sub(r"[^a-z0-9._-]+", "-", str(text).lower()).strip("-._")
    return s[:100].rstrip("-._")


#: letters and marks that draw nothing: Hangul and halfwidth fillers, the blank braille pattern, the
#: combining grapheme joiner, variation selectors
_BLANK = {0x115F, 0x1160, 0x3164, 0xFFA0, 0x2800, 0x034F, *range(0xFE00, 0xFE10), *range(0xE0100, 0xE01F0)}


def _invisible(c: str) -> bool:
    if c in "\t\n\r ":
        return False
    category = unicodedata.category(c)
    return category in ("Cc", "Cf", "Cs", "Zl", "Zp", "Zs") or ord(c) in _BLANK


def visible(text: object) -> str:
    """``text`` without what draws nothing or disguises: control, format (zero-width, bidi override),
    surrogate and separator characters other than the plain space, tab and newline, and blank
    letters. What a reader cannot see must not reach a page, a chart or a terminal."""
    return "".join(c for c in str(text) if not _invisible(c))


def md_text(text: object) -> str:
    """Free text made inert for a markdown table cell or list item: one line, invisible characters
    dropped, HTML-escaped, markdown openers backslash-escaped, ``{`` ``}`` ``$`` as character
    references, ``://`` and ``www.`` defused (no bare-URL autolinks)."""
    one_line = " ".join(visible(text).split())
    escaped = _MD_SPECIAL.sub(r"\\\1", one_line).replace("://", ":\\/\\/").replace("www.", "www\\.")
    return "".join(_ENTITIES.get(c, c) for c in html.escape(escaped, quote=True))
