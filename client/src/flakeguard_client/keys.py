"""Test keys: how a failed test in a report is matched to a quarantine.

This must stay byte-for-byte what the server computes (ingest/identity.py), or
a quarantined test would silently stop being recognised.
"""

from __future__ import annotations

import hashlib


def normalise_part(value: str) -> str:
    return " ".join(value.split())


def normalise_path(value: str) -> str:
    return normalise_part(value.replace("\\", "/"))


def test_key(classname: str, file: str, name: str) -> str:
    """The server's identity of a ``<testcase>`` from its raw attributes (missing = "")."""
    classname, file, name = normalise_part(classname), normalise_path(file), normalise_part(name)
    scope = classname or file
    return hashlib.sha1(f"{scope}\x1f{name}".encode(), usedforsecurity=False).hexdigest()


def display_name(classname: str, file: str, name: str) -> str:
    """``scope::name`` as people read it in logs."""
    scope = normalise_part(classname) or normalise_path(file)
    return f"{scope}::{normalise_part(name)}" if scope else normalise_part(name)


test_key.__test__ = False  # type: ignore[attr-defined]  # not a pytest test
