from django.apps import AppConfig


class IngestConfig(AppConfig):
    name = "ingest"
    verbose_name = "Ingestion"

    def ready(self) -> None:
        from ingest import (
            tasks,  # noqa: F401  (registers the runs-ingest task)
            uploads,  # noqa: F401  (registers the upload file source)
        )
