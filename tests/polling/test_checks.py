"""Check-run rendering (pure): conclusion per policy, summary sections and bounds, annotations, actions."""

from __future__ import annotations

import pytest

from polling.checks import (
    ALWAYS_NEUTRAL,
    ANNOTATION_TEXT_MAX_BYTES,
    NEUTRAL_WHEN_ALL_FLAKY,
    SUCCESS_WHEN_ALL_FLAKY,
    SUMMARY_MAX_BYTES,
    FailedTest,
    annotation_location,
    render_check_run,
)

EVIDENCE = (
    "failed and passed on abc1234 in linux: failed in run 812 attempt 1; passed in run 812 attempt 2",
    "failed, then passed on an in-run rerun in run 790 attempt 1 (9f00e1a in linux)",
)


def new_failure(n: int = 1, **fields: object) -> FailedTest:
    values: dict[str, object] = {
        "test_id": n,
        "name": f"test_new_{n}",
        "classname": "tests.test_cart",
        "message": "AssertionError: assert 3 == 4",
        "jobs": ("linux",),
        "verdict": "stable",
    }
    return FailedTest(**(values | fields))  # type: ignore[arg-type]


def flaky_failure(n: int = 100, **fields: object) -> FailedTest:
    values: dict[str, object] = {
        "test_id": n,
        "name": f"test_flaky_{n}",
        "classname": "tests.test_pay",
        "file": "tests/test_pay.py",
        "message": "TimeoutError: gateway did not answer",
        "jobs": ("linux", "macos"),
        "verdict": "flaky",
        "score": 0.8647,
        "evidence": EVIDENCE,
    }
    return FailedTest(**(values | fields))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("policy", "none", "all_flaky", "some_new"),
    [
        (NEUTRAL_WHEN_ALL_FLAKY, "success", "neutral", "failure"),
        (SUCCESS_WHEN_ALL_FLAKY, "success", "success", "failure"),
        (ALWAYS_NEUTRAL, "neutral", "neutral", "neutral"),
    ],
)
def test_conclusion_follows_the_policy(
    policy: str, none: str, all_flaky: str, some_new: str
) -> None:
    quarantined = new_failure(2, verdict="failing", quarantined=True)
    assert render_check_run([], policy=policy).conclusion == none
    assert render_check_run([flaky_failure(), quarantined], policy=policy).conclusion == all_flaky
    assert render_check_run([flaky_failure(), new_failure()], policy=policy).conclusion == some_new


def test_an_unknown_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown conclusion policy"):
        render_check_run([new_failure()], policy="always_green")


def test_summary_separates_new_failures_from_known_flakes() -> None:
    rendered = render_check_run(
        [
            flaky_failure(100),
            flaky_failure(101, name="test_refund", quarantined=True, score=0.42),
            new_failure(1),
        ]
    )

    assert rendered.title == "1 new failure, 2 known flaky"
    assert (rendered.new_failures, rendered.known_flaky_failures) == (1, 2)
    new_part, known_part = rendered.summary.split("## Known flaky (2)")
    assert "## New failures (1)" in new_part
    assert "`tests.test_cart::test_new_1` (stable until now), failed in `linux`" in new_part
    assert "`AssertionError: assert 3 == 4`" in new_part
    assert "test_flaky" not in new_part
    assert (
        "`tests.test_pay::test_flaky_100`: flakiness 0.86, not quarantined, "
        "failed in `linux`, `macos`" in known_part
    )
    assert "`tests.test_pay::test_refund`: flakiness 0.42, quarantined" in known_part
    assert "failed and passed on abc1234 in linux" in known_part
    assert "test_new_1" not in known_part
    # Worst flake first.
    assert known_part.index("test_flaky_100") < known_part.index("test_refund")


def test_a_commit_without_failures_says_so() -> None:
    rendered = render_check_run([])
    assert rendered.title == "No test failures"
    assert rendered.conclusion == "success"
    assert rendered.annotations == [] and rendered.actions == []


def test_all_known_flaky_title() -> None:
    rendered = render_check_run([flaky_failure(100), flaky_failure(101)])
    assert rendered.title == "2 failures, all known flaky"


def test_summary_of_3000_failures_stays_within_githubs_limit_and_counts_what_it_leaves_out() -> (
    None
):
    long_message = "E   AssertionError: " + "x" * 5000 + "\nsecond line"
    failures = [
        new_failure(n, name=f"test_{n:05d}_" + "é" * 200, message=long_message) for n in range(1500)
    ] + [flaky_failure(10_000 + n, name=f"test_flake_{n:05d}") for n in range(1500)]

    rendered = render_check_run(failures)

    summary = rendered.summary
    assert len(summary.encode()) <= SUMMARY_MAX_BYTES
    assert len(summary) < 65_535
    assert "## New failures (1,500)" in summary and "## Known flaky (1,500)" in summary
    shown_new = summary.count("- `tests.test_cart::test_")
    shown_flaky = summary.count("- `tests.test_pay::test_flake_")
    assert 0 < shown_new < 1500 and 0 < shown_flaky < 1500
    assert f"_… and {1500 - shown_new:,} more not shown._" in summary
    assert f"_… and {1500 - shown_flaky:,} more not shown._" in summary


def test_summary_bound_holds_for_any_limit_it_is_given() -> None:
    failures = [new_failure(n) for n in range(200)] + [flaky_failure(1000 + n) for n in range(200)]
    for limit in (2_000, 10_000, 30_000):
        rendered = render_check_run(failures, max_summary_bytes=limit)
        assert len(rendered.summary.encode()) <= limit
        assert "more not shown" in rendered.summary


def test_annotations_warn_for_known_flakes_and_fail_for_new_failures() -> None:
    rendered = render_check_run([flaky_failure(100), new_failure(1)])

    new, flaky = rendered.annotations
    assert new["annotation_level"] == "failure"
    assert new["title"] == "New failure: tests.test_cart::test_new_1"
    assert new["path"] == "tests/test_cart" and new["start_line"] == new["end_line"] == 1
    assert "AssertionError: assert 3 == 4" in new["message"]
    assert "raw_details" not in new
    assert flaky["annotation_level"] == "warning"
    assert flaky["path"] == "tests/test_pay.py"
    assert (
        "Known flaky test (flakiness 0.86, not quarantined) failed in linux, macos"
        in (flaky["message"])
    )
    assert EVIDENCE[0] in flaky["raw_details"]


def test_annotation_texts_stay_within_64_kb() -> None:
    huge = "ü" * 100_000
    rendered = render_check_run(
        [flaky_failure(100, message=huge, evidence=(huge, huge)), new_failure(1, name="n" * 1000)]
    )
    for annotation in rendered.annotations:
        assert len(annotation["message"].encode()) <= ANNOTATION_TEXT_MAX_BYTES
        assert len(annotation.get("raw_details", "").encode()) <= ANNOTATION_TEXT_MAX_BYTES
        assert len(annotation["title"]) <= 255


@pytest.mark.parametrize(
    ("file", "classname", "message", "expected"),
    [
        (
            "tests/test_pay.py",
            "",
            "tests/test_pay.py:42: AssertionError",
            ("tests/test_pay.py", 42),
        ),
        # A line of another file (a library frame) does not move the annotation.
        ("tests/test_pay.py", "", "lib/http.py:301: TimeoutError", ("tests/test_pay.py", 1)),
        (
            "tests/test_pay.py",
            "",
            "/home/runner/work/shop/shop/tests/test_pay.py:7: in test_pay",
            ("tests/test_pay.py", 7),
        ),
        (
            "",
            "tests.test_shop.TestCart",
            "tests/test_shop.py:88: in test_add",
            ("tests/test_shop.py", 88),
        ),
        ("", "tests.test_shop", "no location here", ("tests/test_shop", 1)),
        (
            "",
            "com.acme.CartTest",
            "at com.acme.CartTest.pay(CartTest.java:31)",
            ("com/acme/CartTest", 1),
        ),
        ("", "", "tests/test_x.py:3", None),
    ],
)
def test_annotation_location(
    file: str, classname: str, message: str, expected: tuple[str, int] | None
) -> None:
    assert annotation_location(file=file, classname=classname, message=message) == expected


def test_a_test_with_neither_file_nor_class_gets_no_annotation_but_is_counted() -> None:
    rendered = render_check_run([new_failure(1, classname="", file="")])
    assert rendered.annotations == []
    assert rendered.new_failures == 1 and "`test_new_1`" in rendered.summary


def test_max_annotations_bounds_the_annotations_new_failures_first() -> None:
    failures = [flaky_failure(1000 + n) for n in range(10)] + [new_failure(n) for n in range(10)]
    rendered = render_check_run(failures, max_annotations=12)
    levels = [a["annotation_level"] for a in rendered.annotations]
    assert levels == ["failure"] * 10 + ["warning"] * 2
    assert "Annotations are shown for the first 12 failures." in rendered.summary


def test_quarantine_action_is_offered_only_for_unquarantined_flaky_failures() -> None:
    assert render_check_run([new_failure(1)]).actions == []
    assert render_check_run([flaky_failure(100, quarantined=True), new_failure(1)]).actions == []
    # Quarantined but not flaky by the evidence: nothing left to quarantine.
    assert render_check_run([new_failure(2, verdict="failing", quarantined=True)]).actions == []

    rendered = render_check_run(
        [flaky_failure(100), flaky_failure(101, quarantined=True), new_failure(1)]
    )

    assert rendered.to_quarantine == [100]
    [action] = rendered.actions
    assert action["identifier"] == "quarantine"
    # GitHub's limits on requested actions.
    assert len(action["label"]) <= 20
    assert len(action["description"]) <= 40
    assert len(action["identifier"]) <= 20


def test_names_with_backticks_and_markdown_stay_code() -> None:
    rendered = render_check_run(
        [new_failure(1, name="test_`quoted`[x]", message="<b>*bold*</b> | `tick`")]
    )
    assert "``tests.test_cart::test_`quoted`[x]``" in rendered.summary
    assert "`` <b>*bold*</b> | `tick` ``" in rendered.summary


def test_output_carries_one_batch_of_annotations() -> None:
    rendered = render_check_run([new_failure(1)])
    assert rendered.output() == {"title": rendered.title, "summary": rendered.summary}
    assert rendered.output(rendered.annotations)["annotations"] == rendered.annotations
