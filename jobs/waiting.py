"""Following job rows from a command until they finish: the one wait loop of every CLI.

A command that queued jobs for the workers (an import, a recompute, a
backfill) polls their rows, reports their progress as it moves, says what it
is waiting for when nothing moved for a while, and carries on through a
database blip instead of dying with a traceback while the workers work on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from django.db import InterfaceError, OperationalError, close_old_connections

from jobs.models import Job, JobState

logger = logging.getLogger(__name__)

FINISHED_STATES = frozenset({JobState.SUCCEEDED, JobState.DEAD})

JobsSeen = Callable[[dict[int, Job]], None]


def wait_for_jobs(
    ids: Sequence[int],
    *,
    on_update: JobsSeen | None = None,
    on_quiet: Callable[[int], None] | None = None,
    poll_seconds: float = 0.5,
    quiet_seconds: float = 30.0,
) -> dict[int, Job]:
    """Poll the jobs until each has succeeded or died; returns them as last read.

    ``on_update(jobs)`` is called after every read, ``on_quiet(outstanding)``
    when nothing changed for ``quiet_seconds``.
    """
    ids = list(ids)
    last_seen: object = None
    last_change = time.monotonic()
    while True:
        try:
            jobs = Job.objects.in_bulk(ids)
        except (OperationalError, InterfaceError) as exc:
            # The workers carry on through a database restart; so does the waiting.
            logger.warning("waiting for %s job(s): database unavailable (%s)", len(ids), exc)
            close_old_connections()
            time.sleep(poll_seconds)
            continue
        if on_update:
            on_update(jobs)
        unfinished = [job for job in jobs.values() if job.state not in FINISHED_STATES]
        if not unfinished:
            return jobs
        seen = tuple((job.pk, job.state, job.attempts, str(job.progress)) for job in unfinished)
        if seen != last_seen:
            last_seen, last_change = seen, time.monotonic()
        elif on_quiet and time.monotonic() - last_change > quiet_seconds:
            on_quiet(len(unfinished))
            last_change = time.monotonic()
        time.sleep(poll_seconds)
