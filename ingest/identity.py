"""Test identities and failure fingerprints: pure functions, no Django.

A test keeps one identity across runs however its report spells it: Windows
path separators in the file, surrounding whitespace and runs of spaces are
normalised, and the class name wins over the file when both are given (some
runners emit the file only on some runs). Names keep their backslashes: pytest
writes non-ASCII parameters as backslash escapes, and they are part of the name.
Fingerprints group failures that share a cause by
hashing the failure type and the message with its volatile parts (numbers,
addresses, quoted values, temp paths) masked.
"""

from __future__ import annotations

import hashlib
import re

_VOLATILE = re.compile(
    r"""
      0x[0-9a-fA-F]+                 # addresses
    | [0-9a-fA-F]{8,}                # hashes, uuids chunks
    | '[^'\n]{0,200}'                # quoted values
    | "[^"\n]{0,200}"
    | /tmp/\S+ | /var/folders/\S+   # temp paths
    | \d+(?:\.\d+)?                  # numbers, durations, line numbers
    """,
    re.VERBOSE,
)


def normalise_part(value: str) -> str:
    # str.split() splits on what the regex \s matches; several times faster.
    return " ".join(value.split())


def normalise_path(value: str) -> str:
    return normalise_part(value.replace("\\", "/"))


def test_identity(classname: str, file: str, name: str) -> tuple[str, str, str, str]:
    """Return (identity hash, classname, name, file) with every part normalised."""
    classname, file, name = normalise_part(classname), normalise_path(file), normalise_part(name)
    scope = classname or file
    digest = hashlib.sha1(f"{scope}\x1f{name}".encode(), usedforsecurity=False).hexdigest()
    return digest, classname, name, file


test_identity.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


def failure_fingerprint(failure_type: str, message: str) -> str:
    """16 hex chars identifying the kind of failure, stable across runs."""
    first_line = message.strip().split("\n", 1)[0][:500]
    masked = _VOLATILE.sub("#", first_line)
    return hashlib.blake2b(
        f"{failure_type.strip()}\x1f{masked}".encode(), digest_size=8
    ).hexdigest()
