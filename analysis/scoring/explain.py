"""Turning stored evidence into sentences a person can check against GitHub.

The events are the dicts that ``analysis.scoring.signals`` records in
``Verdict.evidence`` (and the database keeps as JSON), so an explanation reads
only those: the commit, the job, the run attempts, the branch. The dashboard,
the API, the admin, the flaky report and the check runs all explain evidence
through ``describe_event``, so they say the same thing.
"""

from __future__ import annotations

from typing import Any


def describe_event(event: dict[str, Any]) -> str:
    """One line a person can check against GitHub."""
    sha, job = event.get("sha", "")[:7], event.get("job", "")
    where = f"{sha} in {job}" if job else sha
    kind = event.get("kind")
    if kind == "same_commit":
        failed = ", ".join(_run_label(r) for r in event.get("failed", []))
        passed = ", ".join(_run_label(r) for r in event.get("passed", []))
        return f"failed and passed on {where}: failed in {failed}; passed in {passed}"
    if kind == "rerun":
        return f"failed, then passed on an in-run rerun in {_run_label(event)} ({where})"
    if kind == "isolated":
        return f"failed on {where} ({_run_label(event)}, branch {event.get('branch', '?')}) between passing commits"
    if kind == "incident":
        others = int(event.get("others", 0))
        tests = "test" if others == 1 else "tests"
        same = " with the same error" if event.get("rule") == "shared fingerprint" else ""
        return (
            f"failed with {others} other {tests}{same} in {job or '?'}, {_run_label(event)} "
            f"({sha}): {event.get('cause', 'infrastructure')}, not counted"
        )
    return str(event)


def _run_label(run: dict[str, Any]) -> str:
    return f"run {run.get('run_id')} attempt {run.get('attempt')}"
