from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "jobs"
    verbose_name = "Jobs"

    def ready(self) -> None:
        # Register the sweeper in every process, not only in workers, so that
        # the embedded default can run it in-process.
        from jobs import tasks  # noqa: F401
        from jobs.state_metrics import register_job_metrics

        register_job_metrics()
