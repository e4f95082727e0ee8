"""The ``flaky_report`` and ``recompute`` commands, as DESIGN.md states them."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from analysis.models import TestScore
from analysis.report import render_markdown, render_table, short_name
from ingest.models import Repository, WorkflowRun
from ingest.runs import RunFile, RunInfo
from ingest.store import store_run
from jobs.models import Job, JobKind, JobState
from tests.analysis.factories import QuarantineFactory, TestCaseFactory, TestScoreFactory
from tests.factories import RepositoryFactory
from tests.ingest.junit_samples import pytest_report, write

REPO = "acme/shop"
CONTRACT_TYPES: dict[str, type | tuple[type, ...]] = {
    "repo": str,
    "classname": str,
    "name": str,
    "file": str,
    "score": float,
    "is_flaky": bool,
    "status": str,
    "quarantined": bool,
    "runs": int,
    "failures": int,
    "flaky_since": (str, type(None)),
    "verdict": str,
    "last_failure_at": (str, type(None)),
    "evidence": list,
    "components": dict,
}


def run_command(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def report_json(*args: str) -> list[dict[str, Any]]:
    out, _ = run_command("flaky_report", "--repo", REPO, "--format", "json", *args)
    return json.loads(out)


@pytest.fixture
def repository() -> Repository:
    return RepositoryFactory(full_name=REPO)


@pytest.fixture
def eager(settings) -> None:
    # The embedded default: no broker, so recompute rescores in-process.
    settings.CELERY_TASK_ALWAYS_EAGER = True


@pytest.fixture
def broker(settings) -> None:
    settings.CELERY_TASK_ALWAYS_EAGER = False


# --- flaky_report -------------------------------------------------------------


@pytest.mark.django_db
def test_json_report_holds_one_object_per_scored_test_with_the_contract_keys(
    repository: Repository,
) -> None:
    flaky = TestScoreFactory(test__repository=repository, flaky=True)
    TestScoreFactory(test__repository=repository)
    TestCaseFactory(repository=repository)  # never scored: not in the report

    rows = report_json()

    assert len(rows) == 2
    for row in rows:
        for key, kind in CONTRACT_TYPES.items():
            assert isinstance(row[key], kind), key
        assert 0.0 <= row["score"] <= 1.0
    top = rows[0]
    assert top["repo"] == REPO
    assert (top["classname"], top["name"], top["file"]) == (
        flaky.test.classname,
        flaky.test.name,
        flaky.test.file,
    )
    assert top["is_flaky"] is True and top["status"] == "flaky" and top["quarantined"] is False
    assert (top["score"], top["runs"], top["failures"]) == (0.8647, 40, 2)
    assert datetime.fromisoformat(top["flaky_since"]) == datetime(2026, 9, 2, 9, 30, tzinfo=UTC)
    assert top["evidence"] == [
        "failed and passed on abc1234 in linux: failed in run 812 attempt 1; "
        "passed in run 812 attempt 2",
        "failed, then passed on an in-run rerun in run 790 attempt 1 (def5678 in windows)",
    ]
    assert rows[1]["is_flaky"] is False and rows[1]["flaky_since"] is None


@pytest.mark.django_db
def test_report_ranks_by_score_then_failures_then_name(repository: Repository) -> None:
    def score(name: str, value: float, failures: int) -> None:
        TestScoreFactory(
            test__repository=repository, test__name=name, score=value, failures=failures
        )

    score("test_c", 0.5, 3)
    score("test_b", 0.5, 3)
    score("test_low", 0.1, 9)
    score("test_more_failures", 0.5, 4)
    score("test_top", 0.96, 1)

    rows = report_json()

    assert [row["name"] for row in rows] == [
        "test_top",
        "test_more_failures",
        "test_b",
        "test_c",
        "test_low",
    ]


@pytest.mark.django_db
def test_quarantined_test_is_reported_as_quarantined_and_keeps_its_verdict(
    repository: Repository,
) -> None:
    score = TestScoreFactory(test__repository=repository, flaky=True)
    QuarantineFactory(test=score.test)
    TestScoreFactory(test__repository=repository)

    rows = {row["name"]: row for row in report_json()}

    quarantined = rows[score.test.name]
    assert quarantined["status"] == "quarantined" and quarantined["quarantined"] is True
    assert quarantined["verdict"] == "flaky" and quarantined["is_flaky"] is True
    assert [row["status"] for row in rows.values()].count("quarantined") == 1


@pytest.mark.django_db
def test_status_and_limit_narrow_the_json_report(repository: Repository) -> None:
    TestScoreFactory(test__repository=repository, flaky=True, score=0.9)
    TestScoreFactory(test__repository=repository, flaky=True, score=0.7)
    TestScoreFactory(test__repository=repository, failing=True)
    quarantined = TestScoreFactory(test__repository=repository, flaky=True, score=0.6)
    QuarantineFactory(test=quarantined.test)
    TestScoreFactory.create_batch(3, test__repository=repository)

    assert len(report_json()) == 7
    assert [r["status"] for r in report_json("--status", "flaky")] == ["flaky", "flaky"]
    assert {r["status"] for r in report_json("--status", "failing,quarantined")} == {
        "failing",
        "quarantined",
    }
    assert [r["score"] for r in report_json("--limit", "2")] == [0.9, 0.7]


@pytest.mark.django_db
def test_report_reads_in_a_fixed_number_of_queries(
    repository: Repository, django_assert_num_queries
) -> None:
    for n in range(30):
        score = TestScoreFactory(test__repository=repository, flaky=n % 2 == 0)
        if n % 3 == 0:
            QuarantineFactory(test=score.test)

    with django_assert_num_queries(3):  # the repository, the report, what tallies add
        rows = report_json()
    with django_assert_num_queries(4):  # and the counts by status
        run_command("flaky_report", "--repo", REPO, "--format", "table")

    assert len(rows) == 30 and sum(r["quarantined"] for r in rows) == 10


@pytest.mark.django_db
def test_table_shows_tests_that_need_attention_with_their_evidence(
    repository: Repository,
) -> None:
    flaky = TestScoreFactory(test__repository=repository, flaky=True)
    failing = TestScoreFactory(test__repository=repository, failing=True)
    quarantined = TestScoreFactory(test__repository=repository, test__name="test_quarantined")
    QuarantineFactory(test=quarantined.test)
    stable = TestScoreFactory.create_batch(3, test__repository=repository)

    out, _ = run_command("flaky_report", "--repo", REPO, "--format", "table")

    lines = out.splitlines()
    assert lines[0] == (
        f"Flaky test report for {REPO}: 6 scored tests "
        "(1 flaky, 1 failing, 1 quarantined, 0 new, 3 stable)"
    )
    assert "not shown: 3 stable" in lines[1]
    assert f"{flaky.test.classname}::{flaky.test.name}" in out
    assert f"{failing.test.classname}::{failing.test.name}" in out
    assert "test_quarantined" in out
    assert all(s.test.name not in out for s in stable)
    flaky_line = next(i for i, line in enumerate(lines) if flaky.test.name in line)
    assert lines[flaky_line].split()[:4] == ["flaky", "0.86", "2/40", "2026-09-02"]
    assert lines[flaky_line + 1] == (
        "    failed and passed on abc1234 in linux: failed in run 812 attempt 1; "
        "passed in run 812 attempt 2"
    )
    assert lines[flaky_line + 2].startswith("    failed, then passed on an in-run rerun")
    assert "    failing in linux on 5 commits in a row since 9876fed (2026-09-03 08:00)" in lines

    everything, _ = run_command("flaky_report", "--repo", REPO, "--format", "table", "--all")
    assert all(s.test.name in everything for s in stable)


@pytest.mark.django_db
def test_markdown_has_a_heading_a_table_and_the_evidence_per_test(
    repository: Repository,
) -> None:
    flaky = TestScoreFactory(
        test__repository=repository, test__name="test_pay[card|visa]", flaky=True
    )
    TestScoreFactory.create_batch(2, test__repository=repository)

    out, _ = run_command("flaky_report", "--repo", REPO, "--format", "markdown")

    assert out.startswith(f"# Flaky test report: {REPO}\n")
    assert "| Status | Score | Failed / runs | Flaky since | Test |" in out
    # A pipe inside a name must not split the table row.
    assert (
        "| flaky | 0.86 | 2 / 40 | 2026-09-02 09:30 | `tests.test_shop.TestCart::test_pay[card\\|visa]` |"
        in out
    )
    assert "## Evidence" in out
    assert f"### `{flaky.test.classname}::{flaky.test.name}`" in out
    assert (
        "- failed and passed on abc1234 in linux: failed in run 812 attempt 1; "
        "passed in run 812 attempt 2"
    ) in out


@pytest.mark.django_db
def test_report_of_a_repository_without_scores_says_how_to_get_them(
    repository: Repository,
) -> None:
    out, _ = run_command("flaky_report", "--repo", REPO)

    assert out.strip() == (
        f"No scored tests for {REPO} yet: import runs, then run "
        f"`python manage.py recompute --repo {REPO}`"
    )
    assert json.loads(run_command("flaky_report", "--repo", REPO, "--format", "json")[0]) == []


@pytest.mark.django_db
def test_unknown_repository_is_refused_naming_the_known_ones() -> None:
    for n in range(12):
        RepositoryFactory(full_name=f"acme/repo{n:02}")

    with pytest.raises(CommandError) as error:
        run_command("flaky_report", "--repo", "acme/nope", "--format", "json")

    message = str(error.value)
    assert "'acme/nope'" in message
    assert "acme/repo00, acme/repo01" in message and "acme/repo09" in message
    assert "acme/repo10" not in message and "and 2 more" in message


@pytest.mark.django_db
def test_repository_names_are_matched_ignoring_case(repository: Repository) -> None:
    TestScoreFactory(test__repository=repository)

    out, _ = run_command("flaky_report", "--repo", "ACME/Shop", "--format", "json")

    assert [row["repo"] for row in json.loads(out)] == [REPO]


@pytest.mark.django_db
def test_unknown_status_is_refused_listing_the_statuses(repository: Repository) -> None:
    with pytest.raises(CommandError, match="unknown status flakey; choose from flaky, failing"):
        run_command("flaky_report", "--repo", REPO, "--status", "flakey")


def test_long_test_names_lose_package_prefixes_before_anything_else() -> None:
    classname = "com.example.webshop.payments.gateways.stripe.StripeGatewayIntegrationTest"
    name = "refundsAPartiallyCapturedPaymentIntent"

    assert short_name(classname, name, width=90) == (
        "c.e.w.p.g.stripe.StripeGatewayIntegrationTest::refundsAPartiallyCapturedPaymentIntent"
    )
    assert short_name(classname, name, width=70) == (
        "c.e.w.p.g.s.StripeGatewayIntegrationTest::refundsAPartiallyCapturedPa…"
    )
    assert short_name("tests.test_a", "test_b") == "tests.test_a::test_b"
    assert len(short_name("", "test_" + "x" * 200, width=40)) == 40


def test_renderers_say_so_when_nothing_is_scored() -> None:
    for render in (render_table, render_markdown):
        assert "No scored tests for acme/empty yet" in render([], repo="acme/empty")


# --- recompute ------------------------------------------------------------------

START = datetime(2026, 9, 1, 8, tzinfo=UTC)


def store(tmp_path: Path, run_id: int, outcomes: dict[str, str], *, attempt: int = 1) -> None:
    cases = [("tests.test_shop", name, outcome) for name, outcome in outcomes.items()]
    path = write(tmp_path / f"{run_id}-{attempt}" / "junit.xml", pytest_report(cases))
    run = RunInfo(
        repo=REPO,
        run_id=run_id,
        run_attempt=attempt,
        sha=f"{run_id:040x}",
        branch="main",
        event="push",
        workflow="ci",
        started_at=START + timedelta(minutes=40 * run_id + 15 * (attempt - 1)),
    )
    assert store_run(run=run, files=[RunFile(path=path, label="linux")]).imported


def store_history(tmp_path: Path) -> None:
    """Twelve commits; test_flaky fails and then passes on a re-run of two of them."""
    for run_id in range(1, 13):
        flakes = run_id in (4, 9)
        store(
            tmp_path,
            run_id,
            {
                "test_stable": "passed",
                "test_flaky": "failed" if flakes else "passed",
                "test_other": "passed",
            },
        )
        if flakes:
            store(
                tmp_path,
                run_id,
                {"test_stable": "passed", "test_flaky": "passed", "test_other": "passed"},
                attempt=2,
            )


@pytest.mark.django_db
@pytest.mark.usefixtures("eager")
def test_recompute_scores_an_imported_history_in_process(tmp_path: Path) -> None:
    store_history(tmp_path)
    assert not TestScore.objects.exists()

    out, err = run_command("recompute", "--repo", REPO, "--json")

    summary = json.loads(out)
    assert list(summary) == ["repositories"]
    (entry,) = summary["repositories"]
    assert (entry["repo"], entry["tests"], entry["flaky"], entry["job"]) == (REPO, 3, 1, None)
    assert isinstance(entry["seconds"], float)
    assert f"{REPO}: 3 tests rescored, 1 flaky" in err
    assert not WorkflowRun.objects.filter(analyzed_at__isnull=True).exists()
    assert not Job.objects.filter(kind=JobKind.RECOMPUTE_REPO).exists()

    rows = {row["name"]: row for row in report_json()}
    assert rows["test_flaky"]["is_flaky"] and rows["test_flaky"]["failures"] == 2
    assert rows["test_flaky"]["runs"] == 14 and rows["test_flaky"]["flaky_since"] is not None
    assert rows["test_flaky"]["evidence"][0].startswith("failed and passed on 0000000 in linux")
    assert rows["test_stable"]["status"] == "stable" and rows["test_stable"]["score"] == 0.0
    assert next(iter(rows)) == "test_flaky"


@pytest.mark.django_db
@pytest.mark.usefixtures("eager")
def test_recompute_run_twice_gives_the_same_scores(tmp_path: Path) -> None:
    store_history(tmp_path)
    run_command("recompute", "--repo", REPO)
    first = report_json()

    out, err = run_command("recompute")

    assert out == "" and f"{REPO}: 3 tests rescored, 1 flaky" in err
    assert report_json() == first


@pytest.mark.django_db
@pytest.mark.usefixtures("eager")
def test_recompute_without_repo_rescores_every_repository(tmp_path: Path) -> None:
    store_history(tmp_path)
    RepositoryFactory(full_name="acme/empty")

    out, _ = run_command("recompute", "--json")

    assert [(r["repo"], r["tests"]) for r in json.loads(out)["repositories"]] == [
        ("acme/empty", 0),
        (REPO, 3),
    ]


@pytest.mark.django_db
def test_recompute_of_an_unknown_repository_is_refused(repository: Repository) -> None:
    with pytest.raises(CommandError, match=f"unknown repository 'acme/nope'.*{REPO}"):
        run_command("recompute", "--repo", "acme/nope")


@pytest.mark.django_db
@pytest.mark.usefixtures("broker")
def test_recompute_job_that_dies_fails_the_command_with_its_error(
    repository: Repository, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jobs import waiting

    def job_dies(seconds: float) -> None:
        Job.objects.filter(kind=JobKind.RECOMPUTE_REPO).update(
            state=JobState.DEAD, last_error="Traceback ...\nOperationalError: disk full"
        )

    monkeypatch.setattr(waiting.time, "sleep", job_dies)

    with pytest.raises(
        CommandError, match=r"(?s)recompute of acme/shop failed \(job \d+\): .*disk full"
    ):
        run_command("recompute", "--repo", REPO)


@pytest.mark.django_db
@pytest.mark.usefixtures("broker")
def test_recompute_no_wait_prints_the_queued_job(repository: Repository) -> None:
    out, _ = run_command("recompute", "--repo", REPO, "--no-wait", "--json")

    job = Job.objects.get(kind=JobKind.RECOMPUTE_REPO)
    assert json.loads(out) == {"repositories": [{"repo": REPO, "job": job.pk, "queued": True}]}
    assert job.state == JobState.PENDING

    again, _ = run_command("recompute", "--repo", REPO, "--no-wait")
    assert again.strip() == f"{REPO}: recompute job {job.pk} already pending"
