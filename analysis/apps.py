from django.apps import AppConfig


class AnalysisConfig(AppConfig):
    name = "analysis"
    verbose_name = "Analysis"

    def ready(self) -> None:
        from analysis import tasks  # noqa: F401  (registers runs-analyze and tests-recompute)
        from analysis.state_metrics import register_verdict_metrics

        register_verdict_metrics()
