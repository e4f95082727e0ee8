"""What a testcase inherits from the suites around it: the suite name and the CI label.

A record's ``suite`` is the innermost enclosing ``<testsuite>``'s name; its
``label`` (which CI configuration ran it) comes from the innermost suite that
has one, read from a suite's ``<properties>`` by ``LABEL_PROPERTY_NAMES`` or,
failing that, from a ``hostname`` that says something. The parse loop calls
``suite_context`` once per change of parent, not once per testcase.
"""

from __future__ import annotations

import sys

from lxml import etree

# Suite <property> names that say which CI configuration ran the suite, best first.
LABEL_PROPERTY_NAMES = ("ci.job", "job", "matrix", "configuration")
_LABEL_RANK = {name: rank for rank, name in enumerate(LABEL_PROPERTY_NAMES)}

# hostname values that say nothing about the configuration (lower-cased).
_PLACEHOLDER_HOSTNAMES = frozenset(
    {"", "localhost", "localhost.localdomain", "127.0.0.1", "::1", "0.0.0.0", "hostname"}
    | {"unknown", "none", "null", "n/a", "(none)"}
)


def suite_context(
    parent: etree._Element | None, ts_tag: str, tc_tag: str, labels: dict[etree._Element, str]
) -> tuple[str, str, bool]:
    """Innermost enclosing suite's name, innermost label going outward, and
    whether ``parent`` is itself a testcase or inside one."""
    name: str | None = None
    label = ""
    nested = False
    node = parent
    while node is not None:
        tag = node.tag
        if tag == ts_tag:
            if name is None:
                name = node.get("name") or ""
            if not label:
                label = labels.get(node) or _hostname_label(node.get("hostname"))
        elif tag == tc_tag:
            nested = True
        elif not label and node in labels:  # a <testsuites> root with properties
            label = labels[node]
        node = node.getparent()
    return sys.intern(name or ""), label, nested


def _hostname_label(hostname: str | None) -> str:
    if not hostname:
        return ""
    hostname = hostname.strip()
    return "" if hostname.lower() in _PLACEHOLDER_HOSTNAMES else hostname


def label_from_properties(properties: etree._Element) -> str:
    # A Surefire suite carries dozens of properties: one dict probe per child
    # keeps this to the unavoidable cost of reading each name.
    best, best_rank = "", len(LABEL_PROPERTY_NAMES)
    for prop in properties:
        rank = _LABEL_RANK.get(prop.get("name"))
        if rank is not None and rank < best_rank:
            value = prop.get("value")
            value = (prop.text if value is None else value) or ""
            if value.strip():
                best, best_rank = value.strip(), rank
                if rank == 0:
                    break
    return best
