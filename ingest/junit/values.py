"""Reading a testcase's values as reporters actually write them.

Readers the parse loop calls per testcase: ``parse_seconds`` turns a ``time``
attribute into seconds (or None when unusable), accepting the grouping and
decimal-comma forms that ``float()`` refuses, and ``element_text`` gives the body
of a ``<failure>``, ``<error>`` or ``<skipped>`` element, CDATA included
(``trace_text`` the same for Eclipse's, whose compared values are not the trace).
"""

from __future__ import annotations

import math
import re

from lxml import etree

_INF = math.inf


def element_text(elem: etree._Element) -> str:
    """Text body of a failure/error/skipped element, CDATA included, edges stripped."""
    if len(elem):
        return "".join(elem.itertext()).strip()
    return (elem.text or "").strip()


# Children of an Eclipse <failure>/<error> that hold the compared values, not the trace.
_COMPARED_VALUES = frozenset({"expected", "actual"})


def trace_text(elem: etree._Element) -> str:
    """Like ``element_text``, without the <expected>/<actual> children Eclipse writes."""
    if not len(elem):
        return (elem.text or "").strip()
    parts = [elem.text or ""]
    for child in elem:
        if etree.QName(child).localname not in _COMPARED_VALUES:
            parts.extend(child.itertext())
        parts.append(child.tail or "")
    return "".join(parts).strip()


def parse_seconds(raw: str) -> float | None:
    """Seconds from a time attribute; None when unusable (empty, NaN, inf, negative).

    Also reads what float() refuses but reporters write: "1,234.5" (grouping)
    and "0,25" (decimal comma).
    """
    try:
        seconds = float(raw)
    except ValueError:
        pass
    else:
        return seconds if 0.0 <= seconds < _INF else None
    value = raw.strip()
    if "," in value:
        if "." in value:
            # Both separators: the last one is the decimal point.
            if value.rfind(",") > value.rfind("."):
                value = value.replace(".", "").replace(",", ".")
            else:
                value = value.replace(",", "")
        elif re.fullmatch(r"[1-9]\d{0,2}(,\d{3})+", value):
            value = value.replace(",", "")  # 1,234 as written with grouping
        else:
            value = value.replace(",", ".")  # 0,25 as written in a comma locale
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if 0.0 <= seconds < _INF else None
