"""Tallies: the passes of tests at rest, counted without rewriting their scores.

Most tests of a large suite are stable and have never shown evidence
(``TestScore.at_rest``). A run in which such a test only passed changes
nothing in its verdict but its count of results and the time it last ran, so
runs-analyze does not write those scores: it records a ``PendingTally`` (this
run, this batch of tests) and leaves the rows as they are. Rewriting half a
million score rows per run cost more than storing the run did.

Nothing is lost or counted twice, by construction:

- A score counts every tally up to its ``tallied_through``; every writer of
  a score (runs-analyze, a recompute, retention) holds the repository's
  analysis lock and sets it to the newest tally (``current_mark``), since its
  verdict counts everything applied so far.
- A score's results are its stored count plus, for every later tally whose
  range holds the test, the test's results in that tally's run
  (``counted_in``). Readers that show counts ask for that
  (``with_tallies``); runs-analyze settles the tests it is about to write
  (``settle_tests``) before it reads their scores.
- ``analysis.services.settle_tallies`` folds every tally into the scores and deletes them:
  after each recompute, and when ``FLAKEGUARD_TALLY_SETTLE_AFTER`` runs of
  a repository are pending.

PostgreSQL only: elsewhere runs-analyze writes every score, and no tally exists.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from django.db import connection

from analysis.models import PendingTally, TestScore
from ingest.models import TestResult, WorkflowRun


def _tables() -> dict[str, str]:
    return {
        "scores": TestScore._meta.db_table,
        "tallies": PendingTally._meta.db_table,
        "results": TestResult._meta.db_table,
        "runs": WorkflowRun._meta.db_table,
    }


def counted_in_sql(scores_where: str, *, scores_from: str = "") -> str:
    """SELECT test_id, n, latest: what later tallies add to the scores matching ``scores_where``.

    ``scores_where`` is a condition on ``s`` (the scores), and ``scores_from``
    the FROM item that names them ``s`` (the scores table by default);
    ``%(below)s``, when the caller binds it, leaves out the tallies from that id on.
    """
    t = _tables()
    return f"""
        SELECT s.test_id, SUM(r.n)::bigint AS n, MAX(w.started_at) AS latest
        FROM {scores_from or f"{t['scores']} s"}
        JOIN {t["tallies"]} a ON a.repository_id = s.repository_id
            AND a.id > s.tallied_through AND a.id < %(below)s
            AND s.test_id > a.after_test AND s.test_id <= a.upto_test
        -- A primary-key probe per test and tally: an aggregate is never turned
        -- into a join, which stale statistics can plan as a scan per score.
        CROSS JOIN LATERAL (
            SELECT COUNT(*) AS n FROM {t["results"]}
            WHERE test_id = s.test_id AND run_id = a.run_id
        ) r
        JOIN {t["runs"]} w ON w.id = a.run_id
        WHERE {scores_where} AND r.n > 0
        GROUP BY s.test_id
    """


def scores_of_tests_sql() -> str:
    """FROM item naming ``s`` the scores of the tests in ``%(tests)s``, a probe each."""
    return (
        "unnest(%(tests)s::bigint[]) AS q(test_id) CROSS JOIN LATERAL ("
        f"SELECT * FROM {_tables()['scores']} WHERE test_id = q.test_id OFFSET 0) s"
    )


def settle_sql(scores_where: str, *, scores_from: str = "") -> str:
    """UPDATE folding the tallies below ``%(below)s`` into the scores matching ``scores_where``."""
    t = _tables()
    # Counted once, then written by primary key: in a plain UPDATE … FROM the
    # planner may run the count again for every score it visits.
    return f"""
        WITH c AS MATERIALIZED ({counted_in_sql(scores_where, scores_from=scores_from)})
        UPDATE {t["scores"]} s SET
            results = s.results + c.n,
            latest_result_at = GREATEST(s.latest_result_at, c.latest),
            tallied_through = %(mark)s
        FROM c
        WHERE s.test_id = c.test_id
    """


_NO_LIMIT = 2**63 - 1


def is_tallying() -> bool:
    return connection.vendor == "postgresql"


def current_mark(repository_id: int) -> int:
    """The newest tally of the repository (0 for none): what a score written now counts."""
    if not is_tallying():
        return 0
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT COALESCE(MAX(id), 0) FROM {_tables()['tallies']} WHERE repository_id = %s",
            [repository_id],
        )
        return int(cursor.fetchone()[0])


def has_pending_tallies(repository_id: int, *, below: int) -> bool:
    """Whether the repository has a tally with id under ``below`` not settled yet."""
    return PendingTally.objects.filter(repository_id=repository_id, id__lt=below).exists()


def record_tally(*, repository_id: int, run_pk: int, after_test: int, upto_test: int) -> int:
    """Record that the run is applied to its tests at rest in (after_test, upto_test]; its id."""
    return PendingTally.objects.create(
        repository_id=repository_id, run_id=run_pk, after_test=after_test, upto_test=upto_test
    ).pk


def forget_tally(tally: int) -> None:
    """Delete a tally that counts nothing."""
    PendingTally.objects.filter(pk=tally).delete()


def settle_tests(repository_id: int, test_pks: Sequence[int]) -> int:
    """Fold the repository's pending tallies into these tests' scores; how many moved.

    The caller holds the repository's analysis lock.
    """
    if not is_tallying() or not test_pks:
        return 0
    with connection.cursor() as cursor:
        cursor.execute(
            settle_sql("TRUE", scores_from=scores_of_tests_sql()),
            {"tests": list(test_pks), "below": _NO_LIMIT, "mark": current_mark(repository_id)},
        )
        return cursor.rowcount


def counted_in(test_pks: Iterable[int]) -> dict[int, tuple[int, datetime]]:
    """{test pk: (results, latest run start)} the pending tallies add to these tests' scores."""
    test_pks = list(test_pks)
    found: dict[int, tuple[int, datetime]] = {}
    if not is_tallying() or not test_pks:
        return found
    with connection.cursor() as cursor:
        for start in range(0, len(test_pks), 10_000):
            cursor.execute(
                counted_in_sql("TRUE", scores_from=scores_of_tests_sql()),
                {"tests": test_pks[start : start + 10_000], "below": _NO_LIMIT},
            )
            found.update((test_pk, (n, latest)) for test_pk, n, latest in cursor.fetchall())
    return found


def with_tallies(scores: Iterable[TestScore]) -> list[TestScore]:
    """The scores, their ``results`` and ``latest_result_at`` brought up to date (in place)."""
    scores = list(scores)
    pending = counted_in(score.test_id for score in scores)
    for score in scores:
        found = pending.get(score.test_id)
        if found is None:
            continue
        n, latest = found
        score.results += n
        if score.latest_result_at is None or latest > score.latest_result_at:
            score.latest_result_at = latest
    return scores


def runs_pending(repository_id: int) -> int:
    """How many runs of the repository have tallies not settled yet."""
    return (
        PendingTally.objects.filter(repository_id=repository_id).values("run_id").distinct().count()
    )


def settle_range(repository_id: int, *, after_test: int, upto_test: int, mark: int) -> int:
    """Fold the tallies up to ``mark`` into the repository's scores in (after_test, upto_test].

    The caller holds the repository's analysis lock. Returns how many scores moved.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            settle_sql(
                "s.repository_id = %(repository)s "
                "AND s.test_id > %(after)s AND s.test_id <= %(upto)s"
            ),
            {
                "repository": repository_id,
                "after": after_test,
                "upto": upto_test,
                "below": mark + 1,
                "mark": mark,
            },
        )
        return cursor.rowcount


def forget_settled(repository_id: int, *, mark: int) -> int:
    """Delete the repository's tallies up to ``mark``, once every score counts them."""
    deleted, _ = PendingTally.objects.filter(repository_id=repository_id, id__lte=mark).delete()
    return deleted
