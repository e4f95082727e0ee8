"""What analysis tells the layers above it, always through the job table, never by a call.

After a run is applied (or a quarantine changes what a commit's failures
mean), analysis enqueues one ``verdicts_changed`` job for the commit. Whoever
declared that kind (the GitHub edge) decides what follows; analysis neither
knows nor cares whether a check run exists.
"""

from __future__ import annotations

from jobs.dispatch import enqueue_job
from jobs.models import Job, JobKind


def announce_verdicts_changed(*, repository_id: int, head_sha: str, cause: str) -> Job:
    """Enqueue, in the caller's transaction, the news that this commit's verdicts changed.

    ``cause`` (the run applied, or the quarantine made) keeps distinct causes
    apart and makes a redelivered cause one job.
    """
    job, _ = enqueue_job(
        kind=JobKind.VERDICTS_CHANGED,
        dedup_key=f"verdicts:{repository_id}:{head_sha}:{cause}",
        payload={"repository_id": repository_id, "head_sha": head_sha},
    )
    return job
