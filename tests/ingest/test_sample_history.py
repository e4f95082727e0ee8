"""Tests for the sample CI history generator: determinism, the manifest contract, the reports
and the ground truth they must agree with."""

from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from xml.etree import ElementTree

import pytest

from ingest.sample_history import GeneratedHistory, HistoryConfig, generate_history

SMALL = HistoryConfig(runs=150, tests=120)
MANIFEST_KEYS = {
    "repo", "run_id", "run_attempt", "sha", "branch", "event", "started_at", "workflow", "files",
}  # fmt: skip


@dataclass(frozen=True)
class Result:
    run_id: int
    attempt: int
    sha: str
    branch: str
    event: str
    job: str
    key: str
    outcome: str  # passed | failure | error | skipped


def _manifest(history: GeneratedHistory) -> list[dict]:
    lines = history.manifest_path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def _documents(path: Path) -> Iterator[tuple[str, bytes]]:
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as archive:
            for name in archive.namelist():
                yield name, archive.read(name)
    else:
        yield path.name, path.read_bytes()


def _results(history: GeneratedHistory) -> list[Result]:
    results = []
    for line in _manifest(history):
        for entry in line["files"]:
            for _, data in _documents(history.manifest_path.parent / entry["path"]):
                for case in ElementTree.fromstring(data).iter("testcase"):
                    outcome = "passed"
                    for tag in ("failure", "error", "skipped"):
                        if case.find(tag) is not None:
                            outcome = tag
                    key = f"{case.get('classname')}::{case.get('name')}"
                    result = Result(
                        line["run_id"], line["run_attempt"], line["sha"], line["branch"],
                        line["event"], entry["job"], key, outcome,
                    )  # fmt: skip
                    results.append(result)
    return results


def _truth(history: GeneratedHistory) -> dict:
    return json.loads(history.truth_path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> GeneratedHistory:
    return generate_history(tmp_path_factory.mktemp("small"), SMALL)


@pytest.fixture(scope="module")
def small_results(small: GeneratedHistory) -> list[Result]:
    return _results(small)


@pytest.fixture(scope="module")
def default(tmp_path_factory: pytest.TempPathFactory) -> GeneratedHistory:
    return generate_history(tmp_path_factory.mktemp("default"))


def _digest(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def test_same_config_writes_identical_bytes(tmp_path: Path) -> None:
    config = HistoryConfig(runs=60, tests=50, seed=11)
    first = generate_history(tmp_path / "a", config)
    second = generate_history(tmp_path / "b", config)
    other = generate_history(tmp_path / "c", HistoryConfig(runs=60, tests=50, seed=12))

    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert first.truth == second.truth
    assert first.manifest_path.read_bytes() != other.manifest_path.read_bytes()


def test_surefire_and_plain_xml_are_deterministic_too(tmp_path: Path) -> None:
    config = HistoryConfig(runs=45, tests=45, flavour="surefire", zip_artifacts=False)
    generate_history(tmp_path / "a", config)
    generate_history(tmp_path / "b", config)

    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")


def test_manifest_lines_follow_the_run_manifest_contract(small: GeneratedHistory) -> None:
    lines = _manifest(small)
    root = small.manifest_path.parent

    for line in lines:
        assert set(line) == MANIFEST_KEYS
        assert line["repo"] == SMALL.repo
        assert isinstance(line["run_id"], int) and line["run_id"] > 0
        assert line["run_attempt"] in (1, 2, 3)
        assert re.fullmatch(r"[0-9a-f]{40}", line["sha"])
        assert line["event"] in ("push", "pull_request")
        assert line["branch"] == "main" or line["branch"].startswith("feature/")
        assert line["branch"] != "main" or line["event"] == "push"
        assert datetime.fromisoformat(line["started_at"]).tzinfo is not None
        assert line["workflow"] == "ci"
        assert [entry["job"] for entry in line["files"]] == list(SMALL.jobs)
        for entry in line["files"]:
            assert set(entry) == {"path", "job"}
            assert not Path(entry["path"]).is_absolute() and ".." not in entry["path"]
            assert entry["path"].endswith(f"junit-{entry['job']}.zip")
            assert (root / entry["path"]).is_file()


def test_manifest_counts_match_the_summary(small: GeneratedHistory) -> None:
    lines = _manifest(small)
    attempts: dict[int, list[int]] = {}
    for line in lines:
        attempts.setdefault(line["run_id"], []).append(line["run_attempt"])

    assert small.runs == SMALL.runs == len(attempts)
    assert small.attempts == len(lines)
    assert small.files == sum(len(line["files"]) for line in lines)
    assert all(numbers == list(range(1, len(numbers) + 1)) for numbers in attempts.values())
    assert any(len(numbers) > 1 for numbers in attempts.values())


def test_reruns_repeat_the_commit_later(small: GeneratedHistory) -> None:
    first: dict[int, dict] = {}
    for line in _manifest(small):
        if line["run_attempt"] == 1:
            first[line["run_id"]] = line
        else:
            original = first[line["run_id"]]
            assert (line["sha"], line["branch"], line["event"]) == (
                original["sha"], original["branch"], original["event"],
            )  # fmt: skip
            later = datetime.fromisoformat(line["started_at"])
            assert later > datetime.fromisoformat(original["started_at"])


def test_history_has_main_pushes_pull_requests_and_branch_pushes(small: GeneratedHistory) -> None:
    firsts = [line for line in _manifest(small) if line["run_attempt"] == 1]
    kinds = {(line["branch"] == "main", line["event"]) for line in firsts}
    shas_by_event: dict[str, set[str]] = {}
    for line in firsts:
        if line["branch"] != "main":
            shas_by_event.setdefault(line["event"], set()).add(line["sha"])

    assert kinds == {(True, "push"), (False, "pull_request"), (False, "push")}
    assert shas_by_event["push"] <= shas_by_event["pull_request"]  # pushed PR commits
    assert len({line["branch"] for line in firsts}) > 10


def test_zip_artifacts_hold_well_formed_junit_with_true_counts(small: GeneratedHistory) -> None:
    root = small.manifest_path.parent
    for line in _manifest(small):
        for entry in line["files"]:
            with zipfile.ZipFile(root / entry["path"]) as archive:
                assert archive.testzip() is None
                assert archive.namelist() == ["reports/junit.xml"]
                document = ElementTree.fromstring(archive.read("reports/junit.xml"))
            assert document.tag == "testsuites"
            for suite in document.iter("testsuite"):
                cases = suite.findall("testcase")
                assert int(suite.get("tests")) == len(cases)
                for tag, attribute in (
                    ("failure", "failures"), ("error", "errors"), ("skipped", "skipped"),
                ):  # fmt: skip
                    count = sum(1 for case in cases if case.find(tag) is not None)
                    assert int(suite.get(attribute)) == count


def test_result_count_matches_summary_and_truth(
    small: GeneratedHistory, small_results: list[Result]
) -> None:
    observed = sum(entry["observed"]["results"] for entry in _truth(small)["tests"].values())

    assert small.results == len(small_results) == observed


def test_truth_covers_every_test_in_the_reports(
    small: GeneratedHistory, small_results: list[Result]
) -> None:
    truth = _truth(small)

    assert {result.key for result in small_results} == set(small.truth)
    assert len(small.truth) == SMALL.tests
    assert {key: entry["category"] for key, entry in truth["tests"].items()} == small.truth


def test_truth_holds_every_category_and_infra_outages(small: GeneratedHistory) -> None:
    truth = _truth(small)
    kinds = {entry.get("kind") for entry in truth["tests"].values()}

    assert set(small.truth.values()) == {
        "stable", "flaky", "failing", "pr_broken", "fixed_flake", "skipped",
    }  # fmt: skip
    assert {"random", "job_specific", "bursty", "order_dependent"} <= kinds
    assert truth["infra_outages"]
    assert truth["config"]["seed"] == SMALL.seed


def test_stable_tests_never_fail_outside_outages(
    small: GeneratedHistory, small_results: list[Result]
) -> None:
    truth = _truth(small)
    outages = {(o["run_id"], o["job"]) for o in truth["infra_outages"]}
    infra_failures: dict[str, int] = {}
    for result in small_results:
        if small.truth[result.key] == "stable" and (result.run_id, result.job) not in outages:
            assert result.outcome == "passed", result
        if small.truth[result.key] == "stable" and result.outcome != "passed":
            infra_failures[result.key] = infra_failures.get(result.key, 0) + 1
        if small.truth[result.key] == "skipped":
            assert result.outcome == "skipped"
    for key, entry in truth["tests"].items():
        if entry["category"] == "stable":
            assert entry["observed"]["infra_failures"] == infra_failures.get(key, 0)


def test_infra_incidents_of_every_kind_fail_their_share_of_one_job(
    small: GeneratedHistory, small_results: list[Result]
) -> None:
    outages = _truth(small)["infra_outages"]
    assert {o["kind"] for o in outages} == {"runner", "noisy_neighbour", "outage", "partial"}
    for outage in outages:
        hit = [r for r in small_results if r.run_id == outage["run_id"] and r.job == outage["job"]]
        first = [r for r in hit if r.attempt == 1]
        failed = sum(1 for r in first if r.outcome in ("error", "failure"))
        assert failed >= outage["tests_failed"] > 0
        if outage["kind"] == "runner":
            assert 0.1 <= outage["share"] <= 1.0
            assert failed >= 0.05 * len(first)
        elif outage["kind"] == "noisy_neighbour":
            assert outage["share"] <= 0.05
            assert outage["message"].startswith("Failed: Timeout")
        elif outage["kind"] == "partial":
            assert outage["service"] and outage["tests_failed"] <= 0.2 * len(first)
        if outage["kind"] != "noisy_neighbour":  # infrastructure is back for the re-run
            assert any(r.attempt == 2 for r in hit)
            assert not any(r.outcome == "error" for r in hit if r.attempt == 2)


def test_an_outage_spans_several_runs_and_jobs_within_about_an_hour(
    small: GeneratedHistory,
) -> None:
    outages = [o for o in _truth(small)["infra_outages"] if o["kind"] == "outage"]
    started = {
        line["run_id"]: datetime.fromisoformat(line["started_at"])
        for line in _manifest(small)
        if line["run_attempt"] == 1
    }
    runs = sorted({o["run_id"] for o in outages})

    assert len(runs) >= 2
    assert started[runs[-1]] - started[runs[0]] <= timedelta(minutes=80)
    assert len({o["message"] for o in outages}) == 1


def test_infra_errors_read_like_infrastructure(small: GeneratedHistory) -> None:
    outage = next(o for o in _truth(small)["infra_outages"] if o["kind"] == "runner")
    path = small.manifest_path.parent / (f"runs/{outage['run_id']}/1/junit-{outage['job']}.zip")
    ((_, data),) = _documents(path)
    messages = [error.get("message") for error in ElementTree.fromstring(data).iter("error")]
    dominant = max(set(messages), key=messages.count)

    assert messages.count(dominant) >= 0.75 * len(messages)  # mostly one error
    assert all(message.startswith("failed on setup with") for message in messages)
    assert outage["message"].split(":")[0] in dominant


def test_flaky_test_fails_at_about_its_rate(tmp_path: Path) -> None:
    history = generate_history(tmp_path, HistoryConfig(runs=300, tests=60))
    truth = _truth(history)
    key, entry = max(
        (
            (key, entry)
            for key, entry in truth["tests"].items()
            if entry.get("kind") == "random" and "added_in" not in entry
        ),
        key=lambda item: item[1]["rate"],
    )
    failed, total = 0, 0
    for result in _results(history):
        if result.key == key:
            total += 1
            failed += result.outcome == "failure"
    spread = 4 * (entry["rate"] * (1 - entry["rate"]) / total) ** 0.5

    assert total == entry["observed"]["results"]
    assert entry["rate"] >= 0.08
    assert abs(failed / total - entry["rate"]) <= max(spread, 0.02)


def test_default_size_is_about_a_quarter_million_results(default: GeneratedHistory) -> None:
    assert default.runs == 300
    assert default.results >= 240_000
    assert default.attempts > default.runs


def test_failing_test_fails_on_main_exactly_between_break_and_fix(
    small: GeneratedHistory, small_results: list[Result]
) -> None:
    truth = _truth(small)
    infra = {(o["run_id"], o["job"]) for o in truth["infra_outages"]}
    rates = set()
    for key, entry in truth["tests"].items():
        if entry["category"] != "failing":
            continue
        broken, fixed = entry["broken_in"]["run_id"], entry["fixed_in"]["run_id"]
        jobs = entry["jobs"] or SMALL.jobs
        rates.add(entry["fail_rate"])
        inside = []
        for result in small_results:
            if result.key == key and result.branch == "main" and result.job in jobs:
                if broken <= result.run_id < fixed:
                    inside.append(result.outcome == "failure")
                elif (result.run_id, result.job) not in infra:
                    assert result.outcome == "passed"
        if entry["fail_rate"] == 1:
            assert all(inside)
        else:  # broken on most attempts
            assert 0.9 <= entry["fail_rate"] < 1
            assert sum(inside) >= 0.6 * len(inside)
    assert 1.0 in rates


def test_failing_test_in_one_job_passes_in_the_others(
    small: GeneratedHistory, small_results: list[Result]
) -> None:
    truth = _truth(small)["tests"]
    (key,) = [k for k, e in truth.items() if e["category"] == "failing" and e["jobs"]]
    failed_jobs = {r.job for r in small_results if r.key == key and r.outcome == "failure"}

    assert failed_jobs == set(truth[key]["jobs"])


def test_pr_broken_test_fails_only_on_its_branch_before_the_fix(
    small: GeneratedHistory, small_results: list[Result]
) -> None:
    truth = _truth(small)
    infra = {(o["run_id"], o["job"]) for o in truth["infra_outages"]}
    entries = [e for e in truth["tests"].values() if e["category"] == "pr_broken"]
    assert entries and entries[0]["fail_rate"] == 1
    for entry in entries:
        key = f"{entry['classname']}::{entry['name']}"
        mine = [r for r in small_results if r.key == key and (r.run_id, r.job) not in infra]
        broken = set(entry["broken_shas"])

        assert {r.sha for r in mine if r.outcome == "failure"} <= broken
        if entry["fail_rate"] == 1:
            assert {r.sha for r in mine if r.outcome == "failure"} == broken
            assert all(r.outcome == "failure" for r in mine if r.sha in broken)
        assert {r.branch for r in mine if r.sha in broken} == {entry["branch"]}
        assert entry["fixed_sha"] not in broken


def test_order_dependent_test_fails_reproducibly_per_commit(
    small: GeneratedHistory, small_results: list[Result]
) -> None:
    truth = _truth(small)
    infra = {(o["run_id"], o["job"]) for o in truth["infra_outages"]}
    (key,) = [k for k, e in truth["tests"].items() if e.get("kind") == "order_dependent"]
    outcomes: dict[str, set[str]] = {}
    for result in small_results:
        if result.key == key and (result.run_id, result.job) not in infra:
            outcomes.setdefault(result.sha, set()).add(result.outcome)

    assert all(len(seen) == 1 for seen in outcomes.values())
    assert {"passed", "failure"} == set().union(*outcomes.values())


def test_fixed_flake_stops_failing_after_its_fix(
    small: GeneratedHistory, small_results: list[Result]
) -> None:
    for key, entry in _truth(small)["tests"].items():
        if entry["category"] == "fixed_flake":
            fixed = entry["fixed_in"]["run_id"]
            mine = [r for r in small_results if r.key == key and r.branch == "main"]
            assert not any(r.outcome == "failure" for r in mine if r.run_id >= fixed)


def test_renamed_and_added_tests_appear_mid_history(
    small: GeneratedHistory, small_results: list[Result]
) -> None:
    tests = _truth(small)["tests"]
    (old,) = [k for k, e in tests.items() if "renamed_to" in e]
    new = tests[old]["renamed_to"]
    added = [k for k, e in tests.items() if "added_in" in e and "renamed_from" not in e]
    on_main: dict[str, list[int]] = {}
    for result in small_results:
        if result.branch == "main":
            on_main.setdefault(result.key, []).append(result.run_id)

    assert tests[new]["renamed_from"] == old
    assert max(on_main[old]) < tests[old]["removed_in"]["run_id"] == min(on_main[new])
    assert len(added) >= 3
    assert all(min(on_main[k]) == tests[k]["added_in"]["run_id"] for k in added)
    assert any(tests[k]["category"] == "flaky" for k in added)


def test_failures_carry_realistic_messages_and_tracebacks(small: GeneratedHistory) -> None:
    root = small.manifest_path.parent
    texts = []
    for line in _manifest(small):
        for entry in line["files"]:
            for _, data in _documents(root / entry["path"]):
                texts.extend(ElementTree.fromstring(data).iter("failure"))
    messages = {failure.get("message").split(":")[0] for failure in texts}

    assert texts
    assert "AssertionError" in messages and len(messages) >= 3
    assert any("\nE       " in (failure.text or "") for failure in texts)


def test_surefire_flavour_writes_one_suite_per_class_with_reruns(tmp_path: Path) -> None:
    config = HistoryConfig(runs=80, tests=100, flavour="surefire", jobs=("jdk17", "jdk21"))
    history = generate_history(tmp_path, config)
    flaky_reruns, results = 0, 0
    for line in _manifest(history):
        for entry in line["files"]:
            with zipfile.ZipFile(tmp_path / entry["path"]) as archive:
                names = archive.namelist()
                assert all(
                    re.fullmatch(r"target/surefire-reports/TEST-[\w.]+\.xml", n) for n in names
                )
                for name in names:
                    suite = ElementTree.fromstring(archive.read(name))
                    assert suite.tag == "testsuite"
                    assert name.endswith(f"TEST-{suite.get('name')}.xml")
                    assert suite.find("properties/property") is not None
                    cases = suite.findall("testcase")
                    assert int(suite.get("tests")) == len(cases)
                    results += len(cases)
                    for case in cases:
                        if case.find("flakyFailure") is not None:
                            assert case.find("failure") is None
                            flaky_reruns += 1

    assert results == history.results
    assert flaky_reruns > 0
    assert {"flaky", "failing", "pr_broken"} <= set(history.truth.values())


def test_plain_xml_files_when_zip_artifacts_is_off(tmp_path: Path) -> None:
    history = generate_history(tmp_path, HistoryConfig(runs=40, tests=40, zip_artifacts=False))
    paths = [entry["path"] for line in _manifest(history) for entry in line["files"]]

    assert all(path.endswith(".xml") for path in paths)
    assert sum(len(ElementTree.parse(tmp_path / p).findall(".//testcase")) for p in paths) == (
        history.results
    )


def test_start_time_and_repo_are_honoured(tmp_path: Path) -> None:
    start = datetime(2027, 3, 1, 9, 0, tzinfo=timezone(timedelta(hours=2)))
    history = generate_history(tmp_path, HistoryConfig(runs=40, tests=40, start=start, repo="o/r"))
    lines = _manifest(history)

    assert {line["repo"] for line in lines} == {"o/r"}
    assert min(datetime.fromisoformat(line["started_at"]) for line in lines) >= start
    assert lines[0]["started_at"].endswith("+02:00")


@pytest.mark.parametrize(
    "change",
    [
        {"flavour": "junit5"},
        {"runs": 10},
        {"tests": 5},
        {"jobs": ()},
        {"jobs": ("a", "a")},
        {"jobs": ("linux/py",)},
        {"rerun_rate": 1.5},
        {"repo": "no-slash"},
        {"start": datetime(2026, 9, 1)},
    ],
)
def test_rejects_unusable_configs(tmp_path: Path, change: dict) -> None:
    with pytest.raises(ValueError):
        generate_history(tmp_path, HistoryConfig(**change))


def test_zip_entries_have_fixed_metadata(small: GeneratedHistory) -> None:
    line = _manifest(small)[0]
    data = (small.manifest_path.parent / line["files"][0]["path"]).read_bytes()
    (info,) = zipfile.ZipFile(io.BytesIO(data)).infolist()
    started = datetime.fromisoformat(line["started_at"])

    assert info.compress_type == zipfile.ZIP_DEFLATED
    assert datetime(*info.date_time, tzinfo=started.tzinfo) >= started
