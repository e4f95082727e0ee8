"""What the JUnit parser lets libxml2 load, and how much unreported XML it may hold.

Every parser in this package is built with ``HARDENED_OPTIONS`` and reads in
``READ_CHUNK`` pieces; the budgets below are the fixed limits past which a file is
refused rather than buffered. They live together so that the package's whole
security and memory posture can be reviewed in one place.
"""

from __future__ import annotations

# 64 KiB reads measured fastest: bigger chunks make lxml build more of the tree
# ahead of us (worse cache locality, more memory); smaller ones cost Python calls.
READ_CHUNK = 64 * 1024
# What may pile up between two testcases (or suites) ending before the file is
# refused: elements lxml keeps (~130 bytes each, so 200k are ~26 MB) and bytes
# (text nodes are capped at 10 MB each by libxml2, but not their number). Real
# reports end a testcase every few tags; these only stop hostile floods.
MAX_PENDING_ELEMENTS = 200_000
MAX_PENDING_BYTES = 32 * 1024 * 1024
# Before the first event there is no tree handle to count elements exactly, so
# the '<' count (an upper bound: CDATA may hold '<' too) gets more slack.
MAX_TAGS_BEFORE_FIRST_EVENT = 500_000
# The root start tag must appear within this many bytes, so that a file that is
# one giant comment cannot make us buffer it whole while looking for the root.
MAX_PROLOG_BYTES = 1024 * 1024

# Never load a DTD or external entity, never touch the network, keep libxml2's
# default limits (depth 256, 10 MB text nodes), keep no ID table (it would grow
# with the file however much we clear).
HARDENED_OPTIONS = {
    "resolve_entities": False,
    "no_network": True,
    "load_dtd": False,
    "dtd_validation": False,
    "huge_tree": False,
    "collect_ids": False,
    "remove_comments": True,
    "remove_pis": True,
}
XINCLUDE_NAMESPACES = ("http://www.w3.org/2001/XInclude", "http://www.w3.org/2003/XInclude")
