from django.apps import AppConfig


class FlakeguardConfig(AppConfig):
    name = "flakeguard"
    verbose_name = "FlakeGuard"
