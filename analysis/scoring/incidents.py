"""Infrastructure incidents: job attempts whose failures say more about the machine than about the tests.

A runner that dies, a service container that is down, a full disk, a noisy
neighbour: many tests of one job attempt fail at once, mostly with one error,
and pass when the job runs again. Incidents are found from the job loads alone
(``JobLoad``: the results, the failures and the most common failure
fingerprints of each job of each run attempt), by two rules:

- **co-failure**: the attempt's failures exceed the job's usual (median)
  number by at least ``incident_min_tests`` and by ``incident_share`` of its
  results, or by so many that a failure among them weighs less than
  ``mass_failure_cutoff`` (``signals.failure_discount``). Every failure of the
  attempt is explained, whatever its error.
- **shared fingerprint**: at least ``incident_min_tests`` tests failed with one
  fingerprint, and the job did not fail that way (at least half as many tests,
  two at least) in the commit's other attempts, on the previous commit of the
  branch, nor in its previous run. A regression stays where infrastructure
  comes and goes: a fingerprint that repeats on the same code, or that was
  already there just before, is a breakage and counts. The failures with that
  fingerprint are explained, the others count.

A failure an incident explains adds no evidence, for or against: the walk
(``signals``) and ``incremental.quiet_tally`` both leave it out, so a
same-commit re-run after an incident is no flip, and the verdict's evidence
says which failures were discounted and why (``incident_note``, rendered by
``explain.describe_event``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from analysis.scoring.history import HistoryContext, JobLoad, RunMeta
from analysis.scoring.settings import ScoringSettings


@dataclass(frozen=True, slots=True)
class Incident:
    """One job attempt whose failures are put down to infrastructure."""

    run_pk: int
    job: str
    failures: int  # tests that failed in the job attempt
    results: int  # tests the job attempt reported
    usual: float  # the job's usual (median) failures in one attempt
    co_failure: bool  # so many failures at once that every one of them is explained
    #: the fingerprints shared by many tests that the job's neighbouring
    #: attempts did not fail with, most common first: failures with them are explained
    shared: tuple[tuple[str, int], ...]
    #: the most common fingerprints of the attempt's failures, as counted
    fingerprints: tuple[tuple[str, int], ...]

    @property
    def rule(self) -> str:
        if self.co_failure and self.shared:
            return "co-failure, shared fingerprint"
        return "co-failure" if self.co_failure else "shared fingerprint"

    def explains(self, fingerprint: str | None) -> bool | None:
        """Whether a failure with this fingerprint is put down to the incident.

        None when it depends on the fingerprint and the fingerprint is not
        known (a caller that counted failures without their fingerprints).
        """
        if self.co_failure:
            return True
        if fingerprint is None:
            return None
        return any(shared == fingerprint for shared, _ in self.shared)

    def others(self, fingerprint: str | None) -> int:
        """How many other tests failed with this one (with the same error, for a shared fingerprint)."""
        if self.co_failure:
            return self.failures - 1
        for shared, count in self.shared:
            if shared == fingerprint:
                return count - 1
        return self.shared[0][1] - 1 if self.shared else self.failures - 1


def incident_at(
    context: HistoryContext, settings: ScoringSettings, run_pk: int, job: str
) -> Incident | None:
    """The incident in this job of this run attempt, if its job load shows one."""
    cache = context._incidents
    known = context._incidents_settings
    if known is not settings:
        if known != settings:
            cache.clear()
        context._incidents_settings = settings
    key = (run_pk, job)
    if key in cache:
        found: Incident | None = cache[key]
        return found
    found = cache[key] = _detect(context, settings, run_pk, job)
    return found


def list_incidents(
    context: HistoryContext, settings: ScoringSettings, run_pks: Iterable[int]
) -> list[Incident]:
    """The incidents of these run attempts (of the context's runs), in time order, then by job."""
    wanted = set(run_pks)
    runs = context.runs
    found = [
        incident
        for run_pk, job in context.loads
        if run_pk in wanted and run_pk in runs
        for incident in (incident_at(context, settings, run_pk, job),)
        if incident is not None
    ]
    return sorted(found, key=lambda i: (runs[i.run_pk].order, i.job))


def incident_note(incident: Incident, run: RunMeta, fingerprint: str | None) -> dict[str, Any]:
    """The evidence entry of a failure the incident explains (``explain.describe_event``)."""
    return {
        "kind": "incident",
        "sha": run.sha,
        "job": incident.job,
        "branch": run.branch,
        "run_id": run.run_id,
        "attempt": run.attempt,
        "at": run.started_iso,
        "others": incident.others(fingerprint),
        "rule": "co-failure" if incident.co_failure else "shared fingerprint",
        "cause": "infrastructure",
    }


def note_order(note: dict[str, Any]) -> tuple[str, int, int, str]:
    """Notes sort in time order, like the results they come from."""
    return (str(note.get("at", "")), note.get("run_id", 0), note.get("attempt", 0), note["job"])


def _detect(
    context: HistoryContext, settings: ScoringSettings, run_pk: int, job: str
) -> Incident | None:
    load = context.loads.get((run_pk, job))
    if load is None or load.failures < 2:
        return None
    usual = context.usual_failures.get(job, 0.0)
    excess = load.failures - usual
    co_failure = (
        excess >= settings.incident_min_tests and excess >= settings.incident_share * load.results
    ) or (
        # What signals.failure_discount gives one failure among these.
        excess - 1 > 0
        and 1.0 / (1.0 + (excess - 1) / settings.mass_failure_scale) < settings.mass_failure_cutoff
    )
    shared: list[tuple[str, int]] = []
    for fingerprint, count in load.fingerprints:
        if count < settings.incident_min_tests:
            break  # most common first
        if not _repeats(context, run_pk, job, fingerprint, count):
            shared.append((fingerprint, count))
    if not co_failure and not shared:
        return None
    return Incident(
        run_pk=run_pk,
        job=job,
        failures=load.failures,
        results=load.results,
        usual=usual,
        co_failure=co_failure,
        shared=tuple(shared),
        fingerprints=load.fingerprints,
    )


def _repeats(context: HistoryContext, run_pk: int, job: str, fingerprint: str, count: int) -> bool:
    """The job failed tests with this fingerprint (half as many, two at least) on the same
    commit, on the branch's commit before, or in its run before."""
    enough = max(2, (count + 1) // 2)
    for other in _neighbours(context).get((run_pk, job), ()):
        load = context.loads.get((other, job))
        if load is not None and _count(load, fingerprint) >= enough:
            return True
    return False


def _count(load: JobLoad, fingerprint: str) -> int:
    for known, count in load.fingerprints:
        if known == fingerprint:
            return count
    return 0


def _neighbours(context: HistoryContext) -> dict[tuple[int, str], tuple[int, ...]]:
    """(run, job) -> the job's other attempts of the run's commit, its attempts of the
    previous commit on the run's branch that started before it, and its run before it."""
    if context._neighbours is not None:
        return context._neighbours
    runs = context.runs
    by_job: dict[str, list[RunMeta]] = {}
    for run_pk, job in context.loads:
        run = runs.get(run_pk)
        if run is not None:
            by_job.setdefault(job, []).append(run)
    neighbours: dict[tuple[int, str], tuple[int, ...]] = {}
    for job, attempts in by_job.items():
        attempts.sort(key=lambda r: r.order)
        by_sha: dict[str, list[RunMeta]] = {}
        previous: dict[tuple[str, str], str | None] = {}
        last_on_branch: dict[str, str] = {}
        for run in attempts:
            by_sha.setdefault(run.sha, []).append(run)
            key = (run.branch, run.sha)
            if key not in previous:
                previous[key] = last_on_branch.get(run.branch)
                last_on_branch[run.branch] = run.sha
        for position, run in enumerate(attempts):
            related = [other.pk for other in by_sha[run.sha] if other.pk != run.pk]
            before = previous[(run.branch, run.sha)]
            if before is not None:
                related.extend(o.pk for o in by_sha[before] if o.order < run.order)
            if position:
                related.append(attempts[position - 1].pk)
            neighbours[(run.pk, job)] = tuple(dict.fromkeys(related))
    context._neighbours = neighbours
    return neighbours
