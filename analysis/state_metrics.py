"""Verdicts as Prometheus sees them, read from the database when the web is scraped.

Flaky tests per repository and the distribution of scores are the numbers a
team watches over weeks; incidents per repository count infrastructure
failures found in the results. The score distribution reads every score, so
it is kept for a minute in the shared cache rather than recounted on each
scrape.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from django.core.cache import cache
from django.db.models import Count, Q, Sum
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
)
from prometheus_client.registry import REGISTRY, Collector, CollectorRegistry

logger = logging.getLogger(__name__)

SCORE_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0)
_SCORES_KEY = "metrics:score-buckets"


def score_buckets() -> tuple[list[int], float]:
    """Tests with a score ≤ each bound of SCORE_BUCKETS, then all of them; and the scores' sum."""
    from analysis.models import TestScore

    cached = cache.get(_SCORES_KEY)
    if cached is not None:
        return cached
    counts = TestScore.objects.filter(results__gt=0).aggregate(
        total=Count("pk"),
        sum=Sum("score"),
        **{f"le{i}": Count("pk", filter=_le(bound)) for i, bound in enumerate(SCORE_BUCKETS)},
    )
    buckets = [counts[f"le{i}"] for i in range(len(SCORE_BUCKETS))] + [counts["total"]]
    cache.set(_SCORES_KEY, (buckets, counts["sum"] or 0.0), timeout=60)
    return buckets, counts["sum"] or 0.0


def _le(bound: float) -> Q:
    return Q(score__lte=bound)


class VerdictCollector(Collector):
    def describe(self) -> list:
        return list(self._families())

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, CounterMetricFamily]:
        return (
            GaugeMetricFamily("flakeguard_flaky_tests", "Tests whose verdict is flaky, by repository", labels=["repo"]),
            CounterMetricFamily("flakeguard_incidents", "Infrastructure incidents found in results, by repository", labels=["repo"]),
        )  # fmt: skip

    def collect(self) -> Iterator:
        from analysis.models import Incident, TestScore
        from analysis.scoring import TestStatus

        flaky, incidents = self._families()
        try:
            rows = (
                TestScore.objects.filter(verdict=TestStatus.FLAKY)
                .values("repository__full_name")
                .annotate(n=Count("pk"))
                .order_by()
            )
            for row in rows:
                flaky.add_metric([row["repository__full_name"]], row["n"])
            rows = (
                Incident.objects.values("repository__full_name").annotate(n=Count("pk")).order_by()
            )
            for row in rows:
                incidents.add_metric([row["repository__full_name"]], row["n"])
            buckets, total = score_buckets()
        except Exception:  # a scrape must never fail because the database is away
            logger.warning("verdict metrics unavailable", exc_info=True)
            return
        yield flaky
        yield incidents
        yield GaugeHistogramMetricFamily(
            "flakeguard_test_score",
            "Scores of tests with results (0 stable, 1 flaky), cumulative",
            buckets=[
                *((str(bound), n) for bound, n in zip(SCORE_BUCKETS, buckets, strict=False)),
                ("+Inf", buckets[-1]),
            ],
            gsum_value=total,
        )


_registered: set[int] = set()


def register_verdict_metrics(registry: CollectorRegistry = REGISTRY) -> None:
    if id(registry) not in _registered:
        registry.register(VerdictCollector())
        _registered.add(id(registry))
