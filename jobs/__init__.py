"""The job core: the durable Job table, its runner, sweeper, queues and the one job-task decorator.

It sits at the bottom of the layout and imports no app: apps declare their job
kinds here (``JobKind``), their tasks with ``jobs.registry.job_task``, and tell
a higher app something by enqueuing a job for it.
"""
