"""Recording infrastructure incidents: the job attempts whose failures scoring put down to the machine.

``analysis.scoring.incidents`` finds them from the job loads (many tests of a
job attempt failing at once, or with one error); this module keeps one
``Incident`` row per (run, job) for the admin and ``/api/v1/incidents/``.
``record_incidents`` is called with the runs an analysis applies: it upserts
the incidents of those runs and removes the ones they no longer have (the
job's usual failure count moves as history grows), so calling it again with
the same runs changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from django.db import transaction

from analysis.loading import load_context
from analysis.models import Incident, ScoringConfig
from analysis.scoring import HistoryContext, ScoringSettings, list_incidents
from ingest.models import Repository

_UPDATED = (
    "repository",
    "github_run_id",
    "run_attempt",
    "started_at",
    "tests_failed",
    "tests_in_job",
    "usual_failures",
    "rule",
    "fingerprints",
    "recorded_at",
)


def record_incidents(
    *,
    repository: Repository,
    run_pks: Iterable[int],
    context: HistoryContext | None = None,
    settings: ScoringSettings | None = None,
) -> int:
    """Record the incidents of these runs of the repository; returns how many they have.

    ``context`` and ``settings`` are what the caller's analysis already loaded
    (``analysis.loading.load_context`` with these runs in it, the repository's
    scoring settings); without them they are loaded here.
    """
    wanted = sorted(set(run_pks))
    if not wanted:
        return 0
    if context is None:
        context = load_context(repository, including=wanted)
    if settings is None:
        config = ScoringConfig.objects.filter(repository=repository).first()
        settings = config.settings() if config else ScoringSettings()
    found = list_incidents(context, settings, wanted)
    now = datetime.now(UTC)
    rows = []
    for incident in found:
        run = context.runs[incident.run_pk]
        shared = {fingerprint for fingerprint, _ in incident.shared}
        rows.append(
            Incident(
                repository=repository,
                run_id=incident.run_pk,
                github_run_id=run.run_id,
                run_attempt=run.attempt,
                job=incident.job,
                started_at=datetime.fromtimestamp(run.started_at, UTC),
                tests_failed=incident.failures,
                tests_in_job=incident.results,
                usual_failures=incident.usual,
                rule=incident.rule,
                fingerprints=[
                    {
                        "fingerprint": fingerprint,
                        "tests": count,
                        "marks_incident": fingerprint in shared,
                    }
                    for fingerprint, count in incident.fingerprints
                ],
                recorded_at=now,
            )
        )
    kept = {(incident.run_pk, incident.job) for incident in found}
    with transaction.atomic():
        stale = [
            pk
            for pk, run_pk, job in Incident.objects.filter(run_id__in=wanted).values_list(
                "pk", "run_id", "job"
            )
            if (run_pk, job) not in kept
        ]
        if stale:
            Incident.objects.filter(pk__in=stale).delete()
        if rows:
            Incident.objects.bulk_create(
                rows,
                update_conflicts=True,
                unique_fields=["run", "job"],
                update_fields=list(_UPDATED),
                batch_size=1000,
            )
            _announce_recent(repository, rows)
    return len(rows)


def _announce_recent(repository: Repository, rows: list[Incident]) -> None:
    """Channels hear of an incident of the last day once; older ones (a backfill, a
    recompute restating the history) are history, not news."""
    from analysis.events import EventKind, announce_event

    recent = datetime.now(UTC) - timedelta(days=1)
    for incident in rows:
        if incident.started_at < recent:
            continue
        announce_event(
            repository_id=repository.pk,
            kind=EventKind.INCIDENT,
            key=f"{incident.run_id}:{incident.job}",
            payload={
                "repo": repository.full_name,
                "job": incident.job,
                "run_id": incident.github_run_id,
                "run_attempt": incident.run_attempt,
                "tests_failed": incident.tests_failed,
                "tests_in_job": incident.tests_in_job,
                "rule": incident.rule,
            },
        )
