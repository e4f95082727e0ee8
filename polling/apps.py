from django.apps import AppConfig


class PollingConfig(AppConfig):
    name = "polling"
    verbose_name = "GitHub"

    def ready(self) -> None:
        from polling import tasks  # noqa: F401  (registers the polling tasks)
