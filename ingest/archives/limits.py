"""The caps on one archive and the two ways of refusing: the archive, or one member alone.

``ArchiveLimits`` carries every cap as an argument (the pure reader reads no settings);
``ArchiveError`` refuses the whole archive and ``MemberRefused`` one member, which is also a
``JUnitError`` so that callers reading reports one at a time record it like any unreadable
report and carry on.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from ingest.junit.errors import JUnitError

MiB = 1 << 20


class ArchiveError(ValueError):
    """The archive is refused as a whole; the message says why in words a user can act on."""


class MemberRefused(ArchiveError, JUnitError):
    """One member is refused; the archive's other members are still read.

    Raised by the member's stream. It is a JUnitError too, on purpose: callers read members
    one report at a time and already record a report that cannot be read (the store takes
    back its rows, ``parse_junit`` prints an error object for it) and carry on with the next,
    which is exactly what a bomb or a badly named member deserves. ``produced`` is how many
    bytes the member had inflated to when it was refused.
    """

    def __init__(self, message: str, *, produced: int = 0) -> None:
        super().__init__(message)
        self.produced = produced


@dataclass(frozen=True)
class ArchiveLimits:
    """Caps on one archive. Byte caps count bytes actually produced, never declared sizes."""

    max_members: int = 10_000
    max_member_bytes: int = 1 << 30  # uncompressed bytes produced by one member
    max_total_bytes: int = 4 << 30  # uncompressed bytes produced by the whole archive
    # Bytes produced / compressed bytes consumed, checked after every read on what the
    # inflater has really done, so a bomb is caught by its deeds, not by the sizes it claims.
    max_ratio: int = 200
    # The ratio is only enforced past this many produced bytes: tiny XML files compress far
    # beyond any sane ratio, and a bomb has to get well past this to do harm.
    ratio_grace_bytes: int = MiB
    # The most credit a member earns by compressing worse than max_ratio, so that a prefix
    # of incompressible bytes buys the bomb behind it at most about this much room. Real
    # reports have no stretch this long that compresses better than 200:1 (repeated
    # testcases differ in their names, libxml2 caps a text node at 10 MB).
    ratio_credit_bytes: int = 16 * MiB

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            least = 0 if field.name in ("ratio_grace_bytes", "ratio_credit_bytes") else 1
            if not isinstance(value, int) or value < least:
                raise ValueError(f"ArchiveLimits.{field.name} must be an int >= {least}")


DEFAULT_LIMITS = ArchiveLimits()


def size_text(n: int) -> str:
    return f"{n // MiB} MiB" if n % MiB == 0 else f"{n} bytes"
