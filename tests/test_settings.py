"""Settings outside the embedded default: no public secret, a deploy check that passes as documented."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import REPO_ROOT

POSTGRES = "postgres://flakeguard@127.0.0.1:5432/flakeguard"  # never connected to here
# The production settings the README documents, behind a TLS-terminating proxy.
PRODUCTION = {
    "DATABASE_URL": POSTGRES,
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "SECRET_KEY": "k3Qv9-XJm2Zr7PwLc5Hn8TbYf4Ds6Ga1Ue0Ri_Vo-Wq2Ex7Ty9Np3Ms5Lk8Jh6Gf4Dd",
    "ALLOWED_HOSTS": "flakeguard.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://flakeguard.example.com",
    "SECURE_PROXY_SSL_HEADER": "HTTP_X_FORWARDED_PROTO,https",
    "SECURE_SSL_REDIRECT": "true",
    "SECURE_HSTS_SECONDS": "31536000",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": "true",
    "SECURE_HSTS_PRELOAD": "true",
    "FLAKEGUARD_METRICS_TOKEN": "a-long-random-metrics-token",
}


def outside_env() -> dict[str, str]:
    """The environment without the suite's own settings (the browser tests' async switch too)."""
    return {
        k: v
        for k, v in os.environ.items()
        if k not in PRODUCTION and not k.startswith("SECURE_") and k != "DJANGO_ALLOW_ASYNC_UNSAFE"
    }


def django(code: str, **env: str) -> subprocess.CompletedProcess:
    clean = outside_env()
    return subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {code}"],
        cwd=REPO_ROOT,
        env={**clean, "DJANGO_SETTINGS_MODULE": "flakeguard.settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    clean = outside_env()
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO_ROOT, env={**clean, **env}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_a_deployment_refuses_to_start_without_a_secret_key() -> None:
    missing = django("print('started')", DATABASE_URL=POSTGRES)
    public = django(
        "print('started')", DATABASE_URL=POSTGRES, SECRET_KEY="flakeguard-insecure-embedded-default"
    )
    given = django("print('started')", DATABASE_URL=POSTGRES, SECRET_KEY="s" * 50)

    assert missing.returncode != 0 and "started" not in missing.stdout
    assert "SECRET_KEY must be set outside the embedded default" in missing.stderr
    assert public.returncode != 0 and "SECRET_KEY must be set" in public.stderr
    assert given.returncode == 0 and given.stdout.strip() == "started"


def test_the_embedded_default_needs_no_secret_and_keeps_cookies_on_plain_http() -> None:
    shown = django(
        "from django.conf import settings as s; "
        "print(s.EMBEDDED, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.LOG_FORMAT)",
        DATABASE_URL="",
    )

    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.split() == ["True", "False", "False", "console"]


def test_a_deployment_defaults_to_secure_cookies_and_json_logs() -> None:
    shown = django(
        "from django.conf import settings as s; "
        "print(s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.LOG_FORMAT, s.SECURE_HSTS_SECONDS)",
        DATABASE_URL=POSTGRES,
        SECRET_KEY="s" * 50,
    )

    assert shown.stdout.split() == ["True", "True", "json", "0"], shown.stderr


def test_check_deploy_is_clean_with_the_documented_production_settings() -> None:
    checked = manage("check", "--deploy", "--fail-level", "WARNING", **PRODUCTION)

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "System check identified no issues" in checked.stdout


def test_settings_read_from_the_environment_say_which_variable_is_wrong() -> None:
    typo = django("", DATABASE_URL="", DEBUG="ture")
    header = django("", DATABASE_URL="", SECURE_PROXY_SSL_HEADER="HTTP_X_FORWARDED_PROTO")
    number = django("", DATABASE_URL="", SECURE_HSTS_SECONDS="a year")

    assert "DEBUG must be a boolean" in typo.stderr
    assert "SECURE_PROXY_SSL_HEADER must be 'HEADER,value'" in header.stderr
    assert "SECURE_HSTS_SECONDS must be an integer" in number.stderr
