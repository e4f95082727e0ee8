"""Tallies on PostgreSQL: the passes of tests at rest, counted without rewriting their scores."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.test import Client

from analysis.models import PendingTally, TestScore
from analysis.services import analyze_run, recompute_repository, settle_tallies
from analysis.tallies import with_tallies
from ingest.models import Repository, TestCase
from ingest.runs import RunFile, RunInfo
from ingest.store import store_run
from tests.analysis.test_services import BASE, REPO, store
from tests.processes import scored_vs_stored

STABLE = {f"test_{n}": "passed" for n in range(6)}


def stored_rows() -> dict[str, tuple[int, int, bool]]:
    """(stored results, tallied_through, at_rest) per test name, as the table holds them."""
    return {
        name: (results, tallied, at_rest)
        for name, results, tallied, at_rest in TestScore.objects.values_list(
            "test__name", "results", "tallied_through", "at_rest"
        )
    }


def live_results() -> dict[str, int]:
    return {s.test.name: s.results for s in with_tallies(TestScore.objects.select_related("test"))}


def import_runs(tmp_path: Path, runs: range, outcomes: dict[str, str]) -> None:
    for run in runs:
        analyze_run(run_pk=store(tmp_path, run, outcomes))


@pytest.mark.django_db
def test_a_pass_of_a_test_at_rest_is_tallied_not_written_and_every_count_includes_it(
    tmp_path: Path, admin_client: Client
) -> None:
    # Ten results make a test stable, and at rest: run 11 is already a tally.
    import_runs(tmp_path, range(1, 12), STABLE | {"test_flaky": "passed"})
    before = stored_rows()
    assert all(at_rest for _, _, at_rest in before.values())

    import_runs(tmp_path, range(12, 15), STABLE | {"test_flaky": "failed"})

    after = stored_rows()
    for name in STABLE:
        assert after[name] == before[name]  # not written: three more runs in tallies
    assert after["test_flaky"][0] == 14 and not after["test_flaky"][2]  # written, no longer at rest
    assert PendingTally.objects.count() == 4  # runs 11 to 14
    assert live_results() == dict.fromkeys([*STABLE, "test_flaky"], 14)
    scored, counted = scored_vs_stored()
    assert scored == counted
    # What people see counts the tallies too.
    test_0 = TestCase.objects.get(name="test_0")
    body = admin_client.get(f"/api/v1/tests/{test_0.pk}/").json()
    assert body["runs"] == 14
    listed = admin_client.get("/api/v1/tests/", {"repo": REPO, "page_size": 50}).json()
    assert {row["name"]: row["runs"] for row in listed["results"]}["test_0"] == 14
    page = admin_client.get(f"/repos/{REPO}/").content.decode()
    assert "0 / 14" in page


@pytest.mark.django_db
def test_settling_folds_the_tallies_into_the_scores_and_forgets_them(tmp_path: Path) -> None:
    import_runs(tmp_path, range(1, 16), STABLE)
    assert PendingTally.objects.exists()
    live = live_results()

    summary = settle_tallies(Repository.objects.get(full_name=REPO))

    assert summary["tallies"] == 5 and summary["scores"] == len(STABLE)  # runs 11 to 15
    assert not PendingTally.objects.exists()
    assert (
        {name: results for name, (results, _, _) in stored_rows().items()}
        == live
        == dict.fromkeys(STABLE, 15)
    )


@pytest.mark.django_db
def test_a_test_at_rest_that_fails_is_scored_from_every_result_it_had(tmp_path: Path) -> None:
    import_runs(tmp_path, range(1, 15), STABLE)  # runs 11-14 in tallies
    import_runs(tmp_path, range(15, 16), STABLE | {"test_3": "failed"})

    assert stored_rows()["test_3"][0] == 15  # its tallies folded in before it was rescored
    scored, counted = scored_vs_stored()
    assert scored == counted


@pytest.mark.django_db
def test_a_recompute_leaves_nothing_to_settle_but_what_came_after_it(tmp_path: Path) -> None:
    import_runs(tmp_path, range(1, 15), STABLE)

    recompute_repository(repository=Repository.objects.get(full_name=REPO))

    assert not PendingTally.objects.exists()
    import_runs(tmp_path, range(15, 17), STABLE)
    assert PendingTally.objects.count() == 2
    assert live_results() == dict.fromkeys(STABLE, 16)


@pytest.mark.django_db
def test_the_tests_of_a_refused_report_are_not_left_behind(tmp_path: Path, settings) -> None:
    settings.FLAKEGUARD_INGEST_BATCH_SIZE = 2  # identities are created before the report ends
    good = tmp_path / "good.xml"
    good.write_text('<testsuite name="s"><testcase classname="m" name="test_kept"/></testsuite>')
    broken = tmp_path / "broken.xml"
    broken.write_text(
        '<testsuite name="s">'
        + "".join(f'<testcase classname="m" name="test_lost_{n}"/>' for n in range(5))
        + '<testcase classname="m" name="test_cut'
    )
    run = RunInfo(
        repo=REPO, run_id=1, run_attempt=1, sha="a" * 40, branch="main", event="push",
        workflow="ci", started_at=BASE,
    )  # fmt: skip

    outcome = store_run(run=run, files=[RunFile(path=good), RunFile(path=broken)])

    assert outcome.files_stored == 1 and len(outcome.files_refused) == 1
    assert list(TestCase.objects.values_list("name", flat=True)) == ["test_kept"]
