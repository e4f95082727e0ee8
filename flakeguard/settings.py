"""Django settings for FlakeGuard.

With nothing configured the project runs on one machine: SQLite in the project
folder and Celery tasks executed in-process (the embedded default).
``DATABASE_URL`` switches to PostgreSQL and ``REDIS_URL`` to a Redis broker with
real workers; from then on the settings are a deployment's, and the unsafe
conveniences of the embedded default are refused. Every variable is read
through ``flakeguard.env`` (django-environ).
"""

from __future__ import annotations

import warnings
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from flakeguard import logs
from flakeguard.env import env_bool, env_db, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent

DATABASES = {"default": env_db("DATABASE_URL", f"sqlite:///{BASE_DIR / 'flakeguard.sqlite3'}")}
# The embedded default: one machine, one SQLite file, nothing exposed. Anything
# else is a deployment and gets a deployment's defaults.
EMBEDDED = DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3"

DEBUG = env_bool("DEBUG", False)
_EMBEDDED_SECRET_KEY = "flakeguard-insecure-embedded-default"
SECRET_KEY = env_str("SECRET_KEY", _EMBEDDED_SECRET_KEY if EMBEDDED else "")
if not EMBEDDED and SECRET_KEY in ("", _EMBEDDED_SECRET_KEY):
    # Sessions, CSRF tokens and password resets are signed with it: a public
    # fallback would let anyone forge them.
    raise ImproperlyConfigured(
        "SECRET_KEY must be set outside the embedded default (DATABASE_URL is set); generate "
        "one with: python -c 'import secrets; print(secrets.token_urlsafe(50))'"
    )
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

# --- HTTPS -------------------------------------------------------------------
# A deployment serves over TLS, usually terminated at an ingress or load
# balancer that says so in X-Forwarded-Proto: SECURE_PROXY_SSL_HEADER names
# that header ("HTTP_X_FORWARDED_PROTO,https"). Set it only behind such a proxy,
# which must overwrite the header a client sends.
_proxy_ssl_header = env_list("SECURE_PROXY_SSL_HEADER", [])
if _proxy_ssl_header:
    if len(_proxy_ssl_header) != 2:
        raise ImproperlyConfigured(
            "SECURE_PROXY_SSL_HEADER must be 'HEADER,value', e.g. HTTP_X_FORWARDED_PROTO,https"
        )
    SECURE_PROXY_SSL_HEADER = (_proxy_ssl_header[0], _proxy_ssl_header[1])
# Cookies travel over HTTPS only, except on the embedded default (plain http on localhost).
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", not EMBEDDED)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", not EMBEDDED)
SESSION_COOKIE_HTTPONLY = True
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
# Probes and Prometheus speak plain HTTP to the pod: never redirect them.
SECURE_REDIRECT_EXEMPT = [r"^health(/|$)", r"^metrics$"]
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_filters",
    "django_prometheus",
    "django_celery_beat",
    "jobs",
    "ingest",
    "analysis",
    "polling",
    "notify",
]

MIDDLEWARE = [
    # First: the probes answer whatever Host the kubelet sends (its pod IP).
    "flakeguard.probes.ProbeHostMiddleware",
    # Every log line of a request carries its id, and so do the jobs it queues.
    "flakeguard.logs.CorrelationIdMiddleware",
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Static files (the admin's, the API docs') from the app itself: no CDN,
    # no separate web server to configure.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "flakeguard.urls"
WSGI_APPLICATION = "flakeguard.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# The dashboard signs people in through the admin's login page.
# FlakeGuard's own sign-in page, for every user (the admin's is for staff only).
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"

DATABASES["default"]["CONN_MAX_AGE"] = 60
if EMBEDDED:
    # WAL lets the dashboard read while an import writes; a 128 MiB page cache
    # keeps index inserts of large imports in memory.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": (
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA cache_size=-131072;"
        ),
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# Without `collectstatic`, WhiteNoise finds the files in the apps (the
# embedded default and the tests); a deployment collects them at build time.
WHITENOISE_USE_FINDERS = env_bool("WHITENOISE_USE_FINDERS", True)
# ...and then STATIC_ROOT does not exist, which is not worth a warning per request.
warnings.filterwarnings("ignore", message="No directory at: ", category=UserWarning)

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # Stored history names a team's code and failures: no anonymous reads.
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "ingest.authentication.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.BasicAuthentication",
    ],
    # Proxies in front of the web pods (an ingress, a load balancer): rate
    # limits then count per client address from X-Forwarded-For, not per proxy.
    "NUM_PROXIES": env_int("FLAKEGUARD_NUM_PROXIES", 0) or None,
    "DEFAULT_PAGINATION_CLASS": "ingest.pagination.CappedCursorPagination",
    "PAGE_SIZE": 100,
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.OrderingFilter",
    ],
}
# Uploads a token (or user) may make, as DRF writes rates: N/second|minute|hour|day.
FLAKEGUARD_UPLOAD_RATE = env_str("FLAKEGUARD_UPLOAD_RATE", "120/min")
# Where people open FlakeGuard: the links in notifications start with it.
FLAKEGUARD_BASE_URL = env_str("FLAKEGUARD_BASE_URL", "http://127.0.0.1:8000").rstrip("/")
# Clean passes in a row after which a test FlakeGuard quarantined is released.
FLAKEGUARD_RELEASE_PASSES = env_int("FLAKEGUARD_RELEASE_PASSES", 30)
# Days a quarantine lasts unless it is given an expiry of its own.
FLAKEGUARD_QUARANTINE_DAYS = env_int("FLAKEGUARD_QUARANTINE_DAYS", 30)
# Largest upload request accepted (413 beyond), 512 MiB by default.
FLAKEGUARD_UPLOAD_MAX_BYTES = env_int("FLAKEGUARD_UPLOAD_MAX_BYTES", 512 << 20)
# Failed token authentications a client may make per minute before it gets 429.
FLAKEGUARD_AUTH_FAILURES_PER_MINUTE = env_int("FLAKEGUARD_AUTH_FAILURES_PER_MINUTE", 10)
SPECTACULAR_SETTINGS = {
    "TITLE": "FlakeGuard API",
    "DESCRIPTION": (
        "Flaky-test detection for any CI: runs, uploads, scored tests, quarantines, incidents, "
        "jobs. Authenticate with `Authorization: Bearer <token>` (`manage.py create_token`) "
        "or a signed-in session."
    ),
    "VERSION": "1",
    # The docs page's JavaScript and CSS come from drf-spectacular-sidecar, served here.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# Bearer token Prometheus sends to scrape the web's /metrics; without one only
# the embedded default serves them. Workers serve theirs on their own port.
FLAKEGUARD_METRICS_TOKEN = env_str("FLAKEGUARD_METRICS_TOKEN")

# --- GitHub -----------------------------------------------------------------
GITHUB_API_URL = env_str("GITHUB_API_URL", "https://api.github.com").rstrip("/")
GITHUB_TOKEN = env_str("GITHUB_TOKEN")
GITHUB_APP_ID = env_str("GITHUB_APP_ID")
GITHUB_APP_PRIVATE_KEY = env_str("GITHUB_APP_PRIVATE_KEY")
GITHUB_APP_PRIVATE_KEY_PATH = env_str("GITHUB_APP_PRIVATE_KEY_PATH")
# Comma-separated: while a secret is rotated, deliveries signed with the old or
# the new one are accepted. Without any, /webhooks/github answers 503.
GITHUB_WEBHOOK_SECRET = env_list("GITHUB_WEBHOOK_SECRET", [])
# Largest webhook body read; GitHub caps payloads at 25 MB, a workflow_run
# delivery is about 20 KB.
FLAKEGUARD_WEBHOOK_MAX_BYTES = env_int("FLAKEGUARD_WEBHOOK_MAX_BYTES", 5 * 1024**2)
# Seconds per GitHub request, and retries of connection errors and 5xx answers.
GITHUB_TIMEOUT_SECONDS = env_int("GITHUB_TIMEOUT_SECONDS", 15)
GITHUB_RETRIES = env_int("GITHUB_RETRIES", 3)
# Largest artifact ZIP downloaded; a larger one is recorded as too large.
FLAKEGUARD_ARTIFACT_MAX_BYTES = env_int("FLAKEGUARD_ARTIFACT_MAX_BYTES", 1024**3)
# Polling lists the runs created in the last days (re-runs of older runs arrive
# through webhooks; runs seen in progress are followed until they complete).
FLAKEGUARD_POLL_WINDOW_DAYS = env_int("FLAKEGUARD_POLL_WINDOW_DAYS", 3)
# Days of history a newly added repository brings with it (capped by how long
# the repository keeps its artifacts, 90 days on GitHub unless set otherwise).
FLAKEGUARD_BACKFILL_DAYS = env_int("FLAKEGUARD_BACKFILL_DAYS", 30)
# A backfill job imports for this long, saves its place and queues itself again,
# well inside the task time limit; a spent rate limit pauses it until the reset.
FLAKEGUARD_BACKFILL_SLICE_SECONDS = env_int("FLAKEGUARD_BACKFILL_SLICE_SECONDS", 600)
FLAKEGUARD_BACKFILL_MAX_ATTEMPTS = env_int("FLAKEGUARD_BACKFILL_MAX_ATTEMPTS", 20)

# --- Ingestion limits ---------------------------------------------------------
# Failure messages are kept for display and fingerprinting, not as full logs.
FLAKEGUARD_MAX_MESSAGE_CHARS = env_int("FLAKEGUARD_MAX_MESSAGE_CHARS", 4096)
FLAKEGUARD_ZIP_MAX_MEMBERS = env_int("FLAKEGUARD_ZIP_MAX_MEMBERS", 10_000)
FLAKEGUARD_ZIP_MAX_MEMBER_BYTES = env_int("FLAKEGUARD_ZIP_MAX_MEMBER_BYTES", 1 << 30)
FLAKEGUARD_ZIP_MAX_TOTAL_BYTES = env_int("FLAKEGUARD_ZIP_MAX_TOTAL_BYTES", 4 << 30)
FLAKEGUARD_ZIP_MAX_RATIO = env_int("FLAKEGUARD_ZIP_MAX_RATIO", 200)
# Rows buffered per COPY batch and per test-identity upsert.
FLAKEGUARD_INGEST_BATCH_SIZE = env_int("FLAKEGUARD_INGEST_BATCH_SIZE", 5000)
# Test identities a process remembers, over all repositories (about 300 bytes
# each): later runs of a suite up to this size skip the identity lookups.
FLAKEGUARD_IDENTITY_CACHE_SIZE = env_int("FLAKEGUARD_IDENTITY_CACHE_SIZE", 200_000)
# A process that does not remember a repository's tests reads all their
# identities in one query before storing a run, if there are at most this many
# (about 130 bytes each while the run is stored): one sequential read instead
# of an index probe per test, and the COPY is never paused for known tests.
FLAKEGUARD_IDENTITY_PRELOAD_SIZE = env_int("FLAKEGUARD_IDENTITY_PRELOAD_SIZE", 600_000)

# --- Retention ---------------------------------------------------------------
# Test results older than this many days are removed in the background (daily
# snapshots, scores and runs stay); 0 keeps every result forever.
FLAKEGUARD_RETENTION_DAYS = env_int("FLAKEGUARD_RETENTION_DAYS", 90)
# Results removed per transaction, so no statement holds locks or bloats WAL for long.
FLAKEGUARD_RETENTION_BATCH_SIZE = env_int("FLAKEGUARD_RETENTION_BATCH_SIZE", 50_000)

# --- Jobs --------------------------------------------------------------------
# Attempts and backoff: 30 s doubling to an hour, with jitter, so the 12
# attempts of a transient failure span at least 2.5 hours (a GitHub or
# network outage of two hours leaves nothing dead).
FLAKEGUARD_JOB_MAX_ATTEMPTS = env_int("FLAKEGUARD_JOB_MAX_ATTEMPTS", 12)
FLAKEGUARD_JOB_BACKOFF_BASE_SECONDS = env_int("FLAKEGUARD_JOB_BACKOFF_BASE_SECONDS", 30)
FLAKEGUARD_JOB_BACKOFF_MAX_SECONDS = env_int("FLAKEGUARD_JOB_BACKOFF_MAX_SECONDS", 3600)
# A pending job whose message has not been picked up after this long is sent again.
FLAKEGUARD_JOB_REDISPATCH_SECONDS = env_int("FLAKEGUARD_JOB_REDISPATCH_SECONDS", 600)

# --- Celery ------------------------------------------------------------------
REDIS_URL = env_str("REDIS_URL")
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 25 * 60)
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 30 * 60)
# Tests rescored per transaction by tests-recompute; each batch commits with the
# job's progress, so a restarted recompute repeats at most one batch.
FLAKEGUARD_RECOMPUTE_BATCH_SIZE = env_int("FLAKEGUARD_RECOMPUTE_BATCH_SIZE", 2000)
# Runs waiting for analysis from which a runs-analyze job rescores the whole
# repository instead of its one run (a backlog after an outage or a bulk import).
FLAKEGUARD_ANALYSIS_BACKLOG = env_int("FLAKEGUARD_ANALYSIS_BACKLOG", 50)
# Runs-analyze counts the passes of tests at rest in tallies (analysis.tallies)
# instead of rewriting their scores; a repository's tallies are folded into the
# scores after each recompute, and by a settle job once this many runs are pending.
FLAKEGUARD_TALLY_SETTLE_AFTER = env_int("FLAKEGUARD_TALLY_SETTLE_AFTER", 100)
# Tests of one run applied per transaction of its analysis: a run larger than
# this is analysed in batches, and the repository's analysis lock is released
# between them, so other analyses and recomputes are not held up for minutes.
FLAKEGUARD_ANALYZE_BATCH_TESTS = env_int("FLAKEGUARD_ANALYZE_BATCH_TESTS", 100_000)
# A claimed job's lease, renewed every third of it while the job runs
# (jobs.leases): a worker that dies gives its job up within this long, and the
# sweeper (every 15 s) or the redelivered message sends it again.
FLAKEGUARD_JOB_LEASE_SECONDS = env_int("FLAKEGUARD_JOB_LEASE_SECONDS", 30)

# Rate limits count in the cache: Redis when there is one, so that every web
# process shares the counts; process memory on the embedded default.
CACHES = {
    "default": (
        {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            # A Redis outage costs a request two seconds, not a hung worker.
            "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
            # Beside Celery's keys in the same database; never flushed as a whole.
            "KEY_PREFIX": "flakeguard-cache",
        }
        if REDIS_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}
CELERY_BROKER_URL = REDIS_URL or "memory://"
# No result backend: outcomes live in the Job table, not in Redis.
CELERY_RESULT_BACKEND = None
CELERY_RESULT_EXPIRES = None  # and so no result clean-up task for Beat to send
CELERY_TASK_IGNORE_RESULT = True
# Without a broker the embedded default runs every task in-process.
CELERY_TASK_ALWAYS_EAGER = not REDIS_URL
CELERY_TASK_EAGER_PROPAGATES = True
# Only ids cross the broker, and only as JSON.
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
# Ack after the task ran, and requeue when the worker process dies mid-task:
# the job table makes the second delivery harmless.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# One message at a time per worker process: ingest tasks are long and uneven.
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Queues are a closed set; a typo in a route must fail, not create a queue.
CELERY_TASK_CREATE_MISSING_QUEUES = False
CELERY_TASK_DEFAULT_QUEUE = "runs-ingest"
# Redis hands a message a worker took but never acknowledged to another worker
# after this long: a worker that died holding messages it had not started
# gives them up within a minute. A running job's message is delivered twice
# when the job outlasts this, which is harmless: the second delivery finds the
# job's lease alive (jobs.delivery) and stops.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env_int("FLAKEGUARD_BROKER_VISIBILITY_SECONDS", 45)
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Workers recycle their processes to cap memory growth from large imports.
CELERY_WORKER_MAX_TASKS_PER_CHILD = 200
CELERY_WORKER_SEND_TASK_EVENTS = True  # Flower
CELERY_TASK_SEND_SENT_EVENT = True
# Workers and Beat log through Django's LOGGING (one JSON format), not Celery's own set-up.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Beat's schedule lives in the database (django-celery-beat), editable in the
# admin; FlakeGuard's scheduler adds the heartbeat its liveness probe reads.
CELERY_BEAT_SCHEDULER = "flakeguard.beat:HeartbeatScheduler"

# One format for every process: JSON lines with the correlation id
# (``flakeguard.logs``); readable text on the embedded default, where a person
# reads them in a terminal.
LOG_FORMAT = env_str("LOG_FORMAT", "console" if EMBEDDED else "json")
if LOG_FORMAT not in ("json", "console"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be json or console, got {LOG_FORMAT!r}")
# On the embedded default a command's own progress is the output; job and
# worker chatter is left to deployments.
_LOG_LEVEL = env_str("LOG_LEVEL", "INFO")
_JOB_LOG_LEVEL = env_str("LOG_LEVEL", "WARNING" if EMBEDDED else "INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"default": logs.formatter(LOG_FORMAT)},
    "handlers": {
        # stderr: stdout is reserved for JSON output of commands.
        "stderr": {
            "class": "logging.StreamHandler",
            "formatter": "default",
            "stream": "ext://sys.stderr",
        },
    },
    "root": {"handlers": ["stderr"], "level": env_str("LOG_LEVEL", "WARNING")},
    "loggers": {
        **{
            name: {"level": _LOG_LEVEL, "propagate": True}
            for name in ("flakeguard", "ingest", "analysis", "polling", "notify")
        },
        "jobs": {"level": _JOB_LOG_LEVEL, "propagate": True},
        "celery": {"level": _JOB_LOG_LEVEL, "propagate": True},
    },
}
