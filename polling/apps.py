from django.apps import AppConfig


class PollingConfig(AppConfig):
    name = "polling"
    verbose_name = "GitHub"

    def ready(self) -> None:
        from ingest.services import register_file_source
        from polling import tasks  # noqa: F401  (registers the polling tasks)
        from polling.artifacts import fetch_github_run

        register_file_source("github", fetch_github_run)
