"""Whether a failed command may pass because every failure in its reports is quarantined.

The decision is conservative by construction: anything unknown (the list not
fetched, a report unreadable or incomplete, the upload lost, the command
killed) keeps the command's own exit status.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from flakeguard_client.api import Quarantine
from flakeguard_client.junit import FailedTest, Report


@dataclass(frozen=True)
class Forgiven:
    test: FailedTest
    quarantine: Quarantine


@dataclass
class Decision:
    exit_status: int
    # Why the status is what it is, for the log; empty when the command passed.
    reason: str = ""
    forgiven: list[Forgiven] = field(default_factory=list)
    not_quarantined: list[FailedTest] = field(default_factory=list)

    @property
    def forgave(self) -> bool:
        return bool(self.forgiven) and self.exit_status == 0


def match(
    failed: Sequence[FailedTest], quarantines: Sequence[Quarantine]
) -> tuple[list[Forgiven], list[FailedTest]]:
    """Split failed tests into quarantined and not, each test once."""
    by_key = {q.test_key: q for q in quarantines}
    forgiven: list[Forgiven] = []
    not_quarantined: list[FailedTest] = []
    seen: set[str] = set()
    for test in failed:
        key = test.key
        if key in seen:
            continue
        seen.add(key)
        quarantine = by_key.get(key)
        if quarantine is None:
            not_quarantined.append(test)
        else:
            forgiven.append(Forgiven(test, quarantine))
    return forgiven, not_quarantined


def decide(
    command_status: int,
    *,
    reports: Sequence[Report],
    unreadable: Sequence[str] = (),
    quarantines: Sequence[Quarantine] | None,
    uploaded: bool,
    killed_by: int | None = None,
) -> Decision:
    """The exit status for ``flakeguard run`` and why.

    ``quarantines`` is None when the list could not be fetched; ``unreadable``
    names the reports that could not be parsed; ``killed_by`` is the signal
    that ended the command, if one did.
    """
    if command_status == 0:
        return Decision(0)
    failed = [test for report in reports for test in report.failed]
    forgiven: list[Forgiven] = []
    not_quarantined: list[FailedTest] = []
    if quarantines is not None:
        forgiven, not_quarantined = match(failed, quarantines)

    def keep(reason: str) -> Decision:
        return Decision(command_status, reason, forgiven, not_quarantined)

    if killed_by is not None:
        return keep(f"the command was killed by signal {killed_by}")
    if unreadable:
        return keep(f"{len(unreadable)} report(s) could not be read")
    problems = [p for report in reports for p in report.problems]
    if problems:
        return keep(f"a report may not list every failure ({problems[0]})")
    if not reports:
        return keep("no report was written by the command")
    if not failed:
        return keep("the reports list no failed test, so the command failed for another reason")
    if not uploaded:
        return keep("the reports could not be uploaded")
    if quarantines is None:
        return keep("the quarantine list could not be fetched")
    if not_quarantined:
        return keep(f"{len(not_quarantined)} failed test(s) are not quarantined")
    return Decision(0, f"all {len(forgiven)} failed test(s) are quarantined", forgiven, [])
