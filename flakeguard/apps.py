from django.apps import AppConfig


class FlakeguardConfig(AppConfig):
    name = "flakeguard"
    verbose_name = "FlakeGuard"

    def ready(self) -> None:
        # Register the tasks in every process, not only in workers, so that the
        # embedded default can run them in-process.
        from flakeguard import tasks  # noqa: F401
        from flakeguard.metrics import register_job_metrics

        register_job_metrics()
