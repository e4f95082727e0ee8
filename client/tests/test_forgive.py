from flakeguard_client.api import Quarantine
from flakeguard_client.forgive import decide, match
from flakeguard_client.junit import FailedTest, Report
from flakeguard_client.keys import test_key

FLAKY = FailedTest("tests.test_shop", "", "test_checkout")
BROKEN = FailedTest("tests.test_shop", "", "test_refund")


def quarantine(test: FailedTest, reason: str = "flaky network") -> Quarantine:
    return Quarantine(
        test_key(test.classname, test.file, test.name),
        test.classname,
        test.name,
        test.file,
        reason,
        "alice",
        "",
    )


def report(*failed: FailedTest) -> Report:
    return Report("junit.xml", tests=5, failed=list(failed))


def test_all_quarantined_forgives() -> None:
    decision = decide(1, reports=[report(FLAKY)], quarantines=[quarantine(FLAKY)], uploaded=True)
    assert decision.exit_status == 0
    assert decision.forgave
    assert [f.test for f in decision.forgiven] == [FLAKY]


def test_one_not_quarantined_keeps_the_status() -> None:
    decision = decide(
        2, reports=[report(FLAKY, BROKEN)], quarantines=[quarantine(FLAKY)], uploaded=True
    )
    assert (decision.exit_status, decision.not_quarantined) == (2, [BROKEN])
    assert not decision.forgave


def test_a_passing_command_passes() -> None:
    assert decide(0, reports=[], quarantines=None, uploaded=False).exit_status == 0


def test_nothing_is_forgiven_on_a_guess() -> None:
    reports, quarantines = [report(FLAKY)], [quarantine(FLAKY)]
    cases = {
        "list not fetched": dict(reports=reports, quarantines=None, uploaded=True),
        "upload failed": dict(reports=reports, quarantines=quarantines, uploaded=False),
        "unreadable report": dict(
            reports=reports, quarantines=quarantines, uploaded=True, unreadable=["bad.xml"]
        ),
        "killed": dict(reports=reports, quarantines=quarantines, uploaded=True, killed_by=9),
        "no failed test": dict(reports=[report()], quarantines=quarantines, uploaded=True),
        "no report": dict(reports=[], quarantines=quarantines, uploaded=True),
        "incomplete report": dict(
            reports=[Report("r.xml", 1, [FLAKY], ["r.xml: declares 2 but lists 1"])],
            quarantines=quarantines,
            uploaded=True,
        ),
    }
    for name, kwargs in cases.items():
        decision = decide(1, **kwargs)  # type: ignore[arg-type]
        assert decision.exit_status == 1, name
        assert decision.reason, name


def test_match_counts_each_test_once_across_reports() -> None:
    forgiven, not_quarantined = match([FLAKY, BROKEN, FLAKY, BROKEN], [quarantine(FLAKY)])
    assert [f.test for f in forgiven] == [FLAKY]
    assert not_quarantined == [BROKEN]
