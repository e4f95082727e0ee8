"""factory-boy factories for test identities, their scores and quarantines."""

from __future__ import annotations

from datetime import UTC, datetime

import factory

from analysis.models import Quarantine, TestScore, TestStatus
from ingest.models import TestCase
from tests.factories import RepositoryFactory


class TestCaseFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = TestCase

    __test__ = False  # not a pytest test class

    repository = factory.SubFactory(RepositoryFactory)
    identity = factory.Sequence(lambda n: f"{n:040x}")
    classname = "tests.test_shop.TestCart"
    name = factory.Sequence(lambda n: f"test_case_{n}")
    file = "tests/test_shop.py"


class TestScoreFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = TestScore

    __test__ = False

    test = factory.SubFactory(TestCaseFactory)
    repository = factory.SelfAttribute("test.repository")
    verdict = TestStatus.STABLE
    score = 0.0
    results = 40
    failures = 0
    latest_result_at = datetime(2026, 9, 3, 12, tzinfo=UTC)

    class Params:
        # Failed and passed on one commit twice: what the scoring calls flaky.
        flaky = factory.Trait(
            verdict=TestStatus.FLAKY,
            score=0.8647,
            failures=2,
            flaky_since=datetime(2026, 9, 2, 9, 30, tzinfo=UTC),
            last_failure_at=datetime(2026, 9, 3, 10, tzinfo=UTC),
            evidence=factory.LazyFunction(
                lambda: [
                    {
                        "kind": "same_commit",
                        "sha": "abc1234" + "0" * 33,
                        "job": "linux",
                        "at": "2026-09-03T10:00:00+00:00",
                        "failed": [{"run_id": 812, "attempt": 1}],
                        "passed": [{"run_id": 812, "attempt": 2}],
                    },
                    {
                        "kind": "rerun",
                        "sha": "def5678" + "0" * 33,
                        "job": "windows",
                        "run_id": 790,
                        "attempt": 1,
                        "at": "2026-09-02T09:30:00+00:00",
                    },
                ]
            ),
            components=factory.LazyFunction(
                lambda: {"same_commit": {"events": 1, "weight": 1.0, "evidence": 1.0}}
            ),
        )
        # Failing on every commit of a job lately: a breakage.
        failing = factory.Trait(
            verdict=TestStatus.FAILING,
            score=0.1,
            failures=5,
            last_failure_at=datetime(2026, 9, 3, 11, tzinfo=UTC),
            components=factory.LazyFunction(
                lambda: {
                    "failing": [
                        {
                            "job": "linux",
                            "commits": 5,
                            "since_sha": "9876fed" + "0" * 33,
                            "since": "2026-09-03T08:00:00+00:00",
                        }
                    ]
                }
            ),
        )


class QuarantineFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Quarantine

    test = factory.SubFactory(TestCaseFactory)
    repository = factory.SelfAttribute("test.repository")
    reason = "times out on the shared runners"
    created_by = "octocat"
