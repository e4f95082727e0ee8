"""Member names, only ever as text: which look like JUnit reports, which no honest archiver
writes, and how a name is shown in a message or a result so that a hostile one cannot forge
a line or hide what it is.
"""

from __future__ import annotations

import json
import re
import unicodedata

# A drive letter, as in C:\x.xml, C:/x.xml or C:x.xml (relative to that drive's directory).
_DRIVE = re.compile(r"[A-Za-z]:")
# Characters that change how a line reads without being seen: bidirectional overrides and
# isolates (the "Trojan Source" trick), the marks around them.
_BIDI_CONTROLS = frozenset("\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def is_junit_member(name: str) -> bool:
    """Whether a member name looks like a JUnit report worth parsing.

    True for names ending in ``.xml`` (any case), except directories and the metadata macOS
    Archive Utility adds (``__MACOSX/`` trees and ``._name.xml`` AppleDouble files), which
    end in ``.xml`` but hold resource forks, not XML.
    """
    path = name.replace("\\", "/")  # archives made on Windows may use either separator
    if path.endswith("/") or not path.lower().endswith(".xml"):
        return False
    *folders, base = path.split("/")
    return "__MACOSX" not in folders and not base.startswith("._")


def unsafe_name_reason(name: str) -> str | None:
    """Why a member name is one no honest archiver writes, or None when it is fine.

    Names are never used as paths here, but one that would climb out of an extraction
    directory, is absolute, names a drive or hides control characters is a sign of a crafted
    archive, and would mislead whoever reads it in a list of results or a log.
    """
    if not (name.isascii() and name.isprintable()) and any(_hidden(char) for char in name):
        return "it holds control characters"
    path = name.replace("\\", "/")  # archives made on Windows may use either separator
    if path.startswith("/"):
        return "it is an absolute path"
    if _DRIVE.match(path):
        return "it names a drive"
    if ".." in path.split("/"):
        return "it climbs out of the archive with '..'"
    return None


def quote(name: str) -> str:
    """Quote a member name for a message: escaped, so hostile names cannot forge log lines."""
    if len(name) > 200:
        name = name[:200] + "…"
    # json.dumps escapes quotes, backslashes and C0 controls; escape() the rest it leaves.
    return escape(json.dumps(name, ensure_ascii=False))


def _hidden(char: str) -> bool:
    """Whether a character would be invisible or rewrite a line: controls, separators, bidi."""
    return unicodedata.category(char) in ("Cc", "Zl", "Zp") or char in _BIDI_CONTROLS


def escape(text: str) -> str:
    """The text with every hidden character written as a \\uXXXX escape."""
    if text.isascii() and text.isprintable():
        return text
    return "".join(f"\\u{ord(char):04x}" if _hidden(char) else char for char in text)
