"""The flaky-test report of a repository: its scored tests, worst first, and two ways to print them.

``flaky_report`` reads the stored scores (no writes) and returns one plain dict
per scored test, the JSON contract of ``manage.py flaky_report``. The renderers
turn those rows into a terminal table or a Markdown document that a person can
check against GitHub: counts by status, one line per test, and under each test
that needs attention the evidence behind its verdict.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from django.db.models import Count, Exists, OuterRef, Q

from analysis.models import TestScore
from analysis.quarantines import active_quarantines
from analysis.scoring import TestStatus, describe_event
from analysis.tallies import with_tallies
from ingest.models import Repository
from ingest.timestamps import parse_timestamp

# Report order of the statuses: the ones that need a person first.
STATUSES: tuple[str, ...] = (
    TestStatus.FLAKY,
    TestStatus.FAILING,
    TestStatus.QUARANTINED,
    TestStatus.NEW,
    TestStatus.STABLE,
)
# What the table and Markdown reports show unless asked for everything.
NEEDS_ATTENTION: frozenset[str] = frozenset(
    {TestStatus.FLAKY, TestStatus.FAILING, TestStatus.QUARANTINED}
)
EVIDENCE_SHOWN = 5
NAME_WIDTH = 90


class UnknownRepositoryError(LookupError):
    """No repository of that name is stored; the message lists the ones that are."""


def repository_named(full_name: str, *, known_listed: int = 10) -> Repository:
    """The stored repository ``owner/name`` (GitHub names ignore case)."""
    repository = Repository.objects.filter(full_name=full_name).first()
    if repository is not None:
        return repository
    matches = list(Repository.objects.filter(full_name__iexact=full_name)[:2])
    if len(matches) == 1:
        return matches[0]
    known = list(Repository.objects.order_by("full_name").values_list("full_name", flat=True))
    if not known:
        raise UnknownRepositoryError(
            f"unknown repository {full_name!r}: no repositories are stored yet "
            "(import runs with `python manage.py ingest_junit` or add one with "
            "`python manage.py add_repo OWNER/NAME`)"
        )
    listed = ", ".join(known[:known_listed])
    more = f" and {len(known) - known_listed} more" if len(known) > known_listed else ""
    raise UnknownRepositoryError(
        f"unknown repository {full_name!r}; known repositories: {listed}{more}"
    )


def flaky_report(
    repository: Repository,
    *,
    statuses: set[str] | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """One dict per scored test of the repository, highest score first, in one query.

    ``statuses`` keeps the tests whose status (``quarantined`` for a quarantined
    test, else its verdict) is among them; ``limit`` keeps the first N.
    """
    scores = (
        TestScore.objects.filter(repository=repository)
        .select_related("test")
        .annotate(in_quarantine=Exists(active_quarantines().filter(test_id=OuterRef("test_id"))))
    )
    if statuses is not None:
        verdicts = set(statuses) - {TestStatus.QUARANTINED}
        wanted = Q(in_quarantine=False, verdict__in=sorted(verdicts))
        if TestStatus.QUARANTINED in statuses:
            wanted |= Q(in_quarantine=True)
        scores = scores.filter(wanted)
    scores = scores.order_by("-score", "-failures", "test__classname", "test__name", "test_id")
    if limit is not None:
        scores = scores[:limit]
    full_name = repository.full_name
    return [_row(score, full_name) for score in with_tallies(scores)]


def status_counts(repository: Repository) -> dict[str, int]:
    """How many scored tests of the repository have each status (every status present)."""
    counts = dict.fromkeys(STATUSES, 0)
    rows = (
        TestScore.objects.filter(repository=repository)
        .values("verdict")
        .annotate(tests=Count("pk"), quarantined=Count("test__quarantine"))
        .order_by()
    )
    for row in rows:
        counts[row["verdict"]] = counts.get(row["verdict"], 0) + row["tests"] - row["quarantined"]
        counts[TestStatus.QUARANTINED] += row["quarantined"]
    return counts


def _row(score: TestScore, repo: str) -> dict[str, Any]:
    test = score.test
    quarantined = bool(score.in_quarantine)
    evidence = score.evidence if isinstance(score.evidence, list) else []
    components = score.components if isinstance(score.components, dict) else {}
    return {
        "repo": repo,
        "test_id": test.pk,
        "classname": test.classname,
        "name": test.name,
        "file": test.file,
        "score": round(min(1.0, max(0.0, score.score)), 4),
        "is_flaky": score.verdict == TestStatus.FLAKY,
        "status": TestStatus.QUARANTINED.value if quarantined else score.verdict,
        "quarantined": quarantined,
        "verdict": score.verdict,
        "runs": score.results,
        "failures": score.failures,
        "flaky_since": _iso(score.flaky_since),
        "last_failure_at": _iso(score.last_failure_at),
        "latest_result_at": _iso(score.latest_result_at),
        "evidence": [
            describe_event(event) for event in evidence[:EVIDENCE_SHOWN] if isinstance(event, dict)
        ],
        "failing_in": [
            describe_streak(streak)
            for streak in components.get("failing", [])
            if isinstance(streak, dict)
        ],
        "components": score.components,
    }


def describe_streak(streak: dict[str, Any]) -> str:
    """One line on a job where the test fails on every commit (a real breakage, not a flake)."""
    since = _day(streak.get("since"))
    sha = str(streak.get("since_sha", ""))[:7]
    start = f" since {sha}" if sha else ""
    when = f" ({since})" if since else ""
    return (
        f"failing in {streak.get('job') or 'every job'} on "
        f"{streak.get('commits', '?')} commits in a row{start}{when}"
    )


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _day(value: str | None) -> str:
    """'2026-09-03 17:04' from an ISO time; '' when there is none."""
    if not value:
        return ""
    try:
        parsed = parse_timestamp(value)
        return parsed.strftime("%Y-%m-%d %H:%M") if parsed else ""
    except ValueError:
        return value


def short_name(classname: str, name: str, width: int = NAME_WIDTH) -> str:
    """``classname::name`` fitted to ``width``: package prefixes become initials, then the end is cut."""
    full = f"{classname}::{name}" if classname else name
    if len(full) <= width:
        return full
    parts = classname.split(".") if classname else []
    # Abbreviate from the outermost package inwards, keeping the class itself whole.
    for i in range(max(0, len(parts) - 1)):
        parts[i] = parts[i][:1]
        full = f"{'.'.join(parts)}::{name}"
        if len(full) <= width:
            return full
    return full[: width - 1] + "…"


def _detail_lines(row: dict[str, Any]) -> list[str]:
    """What explains a test's status: its failing streaks and its evidence, most recent first."""
    return [*row.get("failing_in", []), *row.get("evidence", [])]


def _explained(row: dict[str, Any]) -> bool:
    return row["status"] in NEEDS_ATTENTION or row["verdict"] in NEEDS_ATTENTION


def _counts_line(counts: dict[str, int]) -> str:
    return ", ".join(f"{counts.get(status, 0)} {status}" for status in _ordered(counts))


def _ordered(counts: dict[str, int]) -> list[str]:
    return [*STATUSES, *sorted(set(counts) - set(STATUSES))]


def _not_shown(rows: Sequence[dict[str, Any]], counts: dict[str, int]) -> str:
    """'not shown: 1 new, 73 stable', or '' when every scored test is in the rows."""
    shown: dict[str, int] = {}
    for row in rows:
        shown[row["status"]] = shown.get(row["status"], 0) + 1
    hidden = {status: counts.get(status, 0) - shown.get(status, 0) for status in _ordered(counts)}
    hidden = {status: n for status, n in hidden.items() if n > 0}
    if not hidden:
        return ""
    listed = ", ".join(f"{n} {status}" for status, n in hidden.items())
    return f"not shown: {listed}"


def _empty_sentence(repo: str) -> str:
    return (
        f"No scored tests for {repo} yet: import runs, then run "
        f"`python manage.py recompute --repo {repo}`"
    )


def _counts_of(rows: Iterable[dict[str, Any]]) -> dict[str, int]:
    counts = dict.fromkeys(STATUSES, 0)
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    return counts


# --- terminal table ---------------------------------------------------------


def render_table(
    rows: Sequence[dict[str, Any]], *, repo: str, counts: dict[str, int] | None = None
) -> str:
    """A plain-text table: counts by status, one line per test, evidence indented beneath.

    ``counts`` are the status counts of every scored test (``status_counts``);
    without them the rows are counted, as when the report holds every test.
    """
    counts = counts if counts is not None else _counts_of(rows)
    total = sum(counts.values())
    if total == 0:
        return _empty_sentence(repo)
    lines = [f"Flaky test report for {repo}: {total} scored tests ({_counts_line(counts)})"]
    hidden = _not_shown(rows, counts)
    if hidden:
        lines.append(f"Showing {len(rows)} of {total}; {hidden}.")
    if not rows:
        lines.append("No tests match.")
        return "\n".join(lines)
    ratios = [f"{row['failures']}/{row['runs']}" for row in rows]
    ratio_width = max(len("FAILED"), *(len(r) for r in ratios))
    lines.append("")
    lines.append(
        f"{'STATUS':<11}  {'SCORE':>5}  {'FAILED':>{ratio_width}}  {'FLAKY SINCE':<16}  TEST"
    )
    for row, ratio in zip(rows, ratios, strict=True):
        since = _day(row["flaky_since"]) or "-"
        name = short_name(row["classname"], row["name"])
        lines.append(
            f"{row['status']:<11}  {row['score']:>5.2f}  {ratio:>{ratio_width}}  {since:<16}  {name}"
        )
        if _explained(row):
            lines.extend(f"    {detail}" for detail in _detail_lines(row))
    return "\n".join(lines)


# --- Markdown ---------------------------------------------------------------

_MD_SPECIAL = str.maketrans({c: f"\\{c}" for c in "\\`*_[]<>|#"})


def _md_text(text: str) -> str:
    """Text that Markdown shows as written."""
    return text.translate(_MD_SPECIAL)


def _md_code(text: str, *, in_table: bool = False) -> str:
    """An inline code span; a table cell also needs its pipes escaped."""
    fence = "``" if "`" in text else "`"
    pad = " " if fence == "``" else ""
    span = f"{fence}{pad}{text}{pad}{fence}"
    return span.replace("|", "\\|") if in_table else span


def render_markdown(
    rows: Sequence[dict[str, Any]], *, repo: str, counts: dict[str, int] | None = None
) -> str:
    """A Markdown document: a heading, a table of the tests, then the evidence per test."""
    counts = counts if counts is not None else _counts_of(rows)
    total = sum(counts.values())
    lines = [f"# Flaky test report: {_md_text(repo)}", ""]
    if total == 0:
        lines.append(_empty_sentence(repo))
        return "\n".join(lines) + "\n"
    lines.append(f"{total} scored tests: {_counts_line(counts)}.")
    hidden = _not_shown(rows, counts)
    if hidden:
        lines.append(f"Showing {len(rows)} of {total}; {hidden}.")
    lines.append("")
    if not rows:
        lines.append("No tests match.")
        return "\n".join(lines) + "\n"
    lines.append("| Status | Score | Failed / runs | Flaky since | Test |")
    lines.append("| --- | ---: | ---: | --- | --- |")
    for row in rows:
        since = _day(row["flaky_since"]) or "-"
        name = _md_code(short_name(row["classname"], row["name"]), in_table=True)
        lines.append(
            f"| {row['status']} | {row['score']:.2f} | {row['failures']} / {row['runs']} "
            f"| {since} | {name} |"
        )
    explained = [row for row in rows if _explained(row) and _detail_lines(row)]
    if explained:
        lines.extend(["", "## Evidence"])
        for row in explained:
            full = f"{row['classname']}::{row['name']}" if row["classname"] else row["name"]
            lines.extend(["", f"### {_md_code(full)}", ""])
            where = f" in {_md_code(row['file'])}" if row["file"] else ""
            lines.append(f"{row['status']}, score {row['score']:.2f}{where}:")
            lines.append("")
            lines.extend(f"- {_md_text(detail)}" for detail in _detail_lines(row))
    return "\n".join(lines) + "\n"
