"""Omoi settings: one module, everything that differs between machines from the environment.

With nothing set, Omoi runs on an embedded default that needs only Python: SQLite for the
database and kombu's filesystem transport for the Celery broker, both under OMOI_DATA_DIR.
Set DATABASE_URL (PostgreSQL) and CELERY_BROKER_URL (Redis) for production and CI.
"""

import os
from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DATA_DIR = Path(env("OMOI_DATA_DIR", default=str(BASE_DIR / "var")))
DATA_DIR.mkdir(parents=True, exist_ok=True)

DEFAULT_SECRET_KEY = "omoi-insecure-development-key-change-me"
SECRET_KEY = env("DJANGO_SECRET_KEY", default=DEFAULT_SECRET_KEY)
# On for the embedded default (nothing configured: a developer's machine), off as soon as a real
# database is configured, unless DJANGO_DEBUG says otherwise. Off means production: see the checks
# at the end of this module.
EMBEDDED = "DATABASE_URL" not in os.environ
DEBUG = env.bool("DJANGO_DEBUG", default=EMBEDDED)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "knox",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "omoi",
    "sandboxes",
    "tickets",
    "specs",
    "web",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Static files (the admin's CSS, Swagger UI, the web application's) in every mode, without a
    # separate web server in front.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "omoi.middleware.refuse_unstorable_urls",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "omoi.middleware.throttle_admin_login",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "omoi.middleware.ApiJsonErrorsMiddleware",
]

ROOT_URLCONF = "omoi.urls"
WSGI_APPLICATION = "omoi.wsgi.application"
# Omoi is served by an ASGI server (uvicorn): event streams are long-lived responses.
ASGI_APPLICATION = "omoi.asgi.application"
APPEND_SLASH = False

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
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

# --- Database -------------------------------------------------------------------------------
SQLITE_PATH = DATA_DIR / "omoi.sqlite3"
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{SQLITE_PATH}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web process read while a worker writes; IMMEDIATE transactions and a busy
    # timeout make concurrent writers wait for each other instead of failing with "locked".
    DATABASES["default"]["OPTIONS"] = {
        "timeout": env.int("OMOI_SQLITE_BUSY_TIMEOUT", default=30),
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # Tests use a file, not memory, so that a real worker process sees the same database.
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / env("OMOI_SQLITE_TEST_NAME", default="test-omoi.sqlite3"))}
# Persistent connections (checked before reuse): a worker hop or a request does not pay for a new
# connection each time.
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DATABASE_CONN_MAX_AGE", default=300))
DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# Dates and times with seconds, everywhere (admin included): omoi/formats/en/formats.py.
FORMAT_MODULE_PATH = ["omoi.formats"]

STATIC_URL = "static/"
STATIC_ROOT = Path(env("OMOI_STATIC_ROOT", default=str(BASE_DIR / "staticfiles")))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
# WhiteNoise serves what `collectstatic` gathered and, without it (`make web`), finds the files in
# the apps directly, so the admin and Swagger UI are styled with default settings.
WHITENOISE_USE_FINDERS = True

LOGIN_URL = "web:login"
LOGIN_REDIRECT_URL = "web:projects"
LOGOUT_REDIRECT_URL = "web:login"

# --- REST API -------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "omoi.auth.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PARSER_CLASSES": ["omoi.parsers.StorableJSONParser"],
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
    "DEFAULT_THROTTLE_RATES": {"auth": env("OMOI_AUTH_THROTTLE_RATE", default="10/minute")},
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": env.int("OMOI_API_PAGE_SIZE", default=50),
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "omoi.schema.OmoiAutoSchema",
    "EXCEPTION_HANDLER": "omoi.api.exception_handler",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Omoi API",
    "DESCRIPTION": "Spec-driven autonomous software development: specs, tickets, agent runs.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI's assets come from drf-spectacular-sidecar, served here: no CDN, works offline.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # One schema name per vocabulary, however many fields use it.
    "ENUM_NAME_OVERRIDES": {
        "PhaseEnum": "tickets.models.Phase",
        "BlockedReasonEnum": "tickets.models.BlockedReason",
        "PriorityEnum": "tickets.models.Priority",
        "TaskStatusEnum": "tickets.models.TaskStatus",
        "GateStatusEnum": "tickets.models.GateStatus",
        "ExecutorEnum": "tickets.models.Executor",
        "SpecStatusEnum": "specs.models.SpecStatus",
        "SpecPhaseEnum": "specs.models.SpecPhase",
        "SpecTaskStatusEnum": "specs.models.SpecTaskStatus",
        "EarsTypeEnum": "specs.models.EarsType",
    },
}

# --- Celery (the full configuration is in celeryconfig.py) ----------------------------------
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default="filesystem://")
# The embedded broker's folder: workers that share it share the queues (two workers with data
# directories of their own on one machine point it at the same place).
CELERY_BROKER_DIR = Path(env("OMOI_BROKER_DIR", default=str(DATA_DIR / "broker")))
CELERY_VISIBILITY_TIMEOUT = env.int("OMOI_BROKER_VISIBILITY_TIMEOUT", default=3600)

# --- Event streams (GET /api/v1/specs/{id}/stream) ------------------------------------------
# One poller per server process reads new events for every spec that has a listener, in one
# query per interval; a comment goes out on idle streams every keep-alive interval.
OMOI_STREAM_POLL_S = env.float("OMOI_STREAM_POLL_S", default=0.5)
OMOI_STREAM_KEEPALIVE_S = env.float("OMOI_STREAM_KEEPALIVE_S", default=15.0)

# --- The language model ---------------------------------------------------------------------
ANTHROPIC_API_KEY = env("ANTHROPIC_API_KEY", default="")
ANTHROPIC_BASE_URL = env("ANTHROPIC_BASE_URL", default="")
OMOI_LLM_PROVIDER = env("OMOI_LLM_PROVIDER", default="anthropic" if ANTHROPIC_API_KEY else "replay")
OMOI_MODEL = env("OMOI_MODEL", default="claude-sonnet-5")
OMOI_LLM_TIMEOUT_S = env.float("OMOI_LLM_TIMEOUT_S", default=120.0)
OMOI_LLM_MAX_RETRIES = env.int("OMOI_LLM_MAX_RETRIES", default=4)
OMOI_LLM_MAX_TOKENS = env.int("OMOI_LLM_MAX_TOKENS", default=8192)
OMOI_REPLAY_SCRIPT = env("OMOI_REPLAY_SCRIPT", default="")

# --- Planning and execution -----------------------------------------------------------------
OMOI_CONTEXT_SUMMARY_MODEL = env.bool("OMOI_CONTEXT_SUMMARY_MODEL", default=False)
OMOI_PHASE_MAX_ATTEMPTS = env.int("OMOI_PHASE_MAX_ATTEMPTS", default=3)
OMOI_PLANNING_MAX_TURNS = env.int("OMOI_PLANNING_MAX_TURNS", default=30)
OMOI_TASK_BUDGET_USD = env.float("OMOI_TASK_BUDGET_USD", default=5.0)
OMOI_TASK_MAX_TURNS = env.int("OMOI_TASK_MAX_TURNS", default=40)
OMOI_TASK_MAX_SECONDS = env.int("OMOI_TASK_MAX_SECONDS", default=3600)
OMOI_TASK_MAX_VERIFICATIONS = env.int("OMOI_TASK_MAX_VERIFICATIONS", default=3)
# Budgets (omoi/budgets.py): every model call reserves its worst-case cost on the task's account
# (OMOI_TASK_BUDGET_USD, across its runs and retries), the spec's (Spec.budget_usd, else this) and
# the project's day's, and is not made when one would go past its limit.
OMOI_SPEC_BUDGET_USD = env.float("OMOI_SPEC_BUDGET_USD", default=25.0)
OMOI_PROJECT_DAILY_BUDGET_USD = env.float("OMOI_PROJECT_DAILY_BUDGET_USD", default=100.0)

# The guardian (sandboxes/guardian.py): when it steps in, and how patiently.
OMOI_GUARDIAN_ENABLED = env.bool("OMOI_GUARDIAN_ENABLED", default=True)
OMOI_GUARDIAN_REPEATS = env.int("OMOI_GUARDIAN_REPEATS", default=3)
OMOI_GUARDIAN_ERROR_REPEATS = env.int("OMOI_GUARDIAN_ERROR_REPEATS", default=3)
OMOI_GUARDIAN_ALTERNATIONS = env.int("OMOI_GUARDIAN_ALTERNATIONS", default=2)
OMOI_GUARDIAN_IDLE_TURNS = env.int("OMOI_GUARDIAN_IDLE_TURNS", default=3)
OMOI_GUARDIAN_NO_CHANGE_TURNS = env.int("OMOI_GUARDIAN_NO_CHANGE_TURNS", default=12)
OMOI_GUARDIAN_SAME_FAILURES = env.int("OMOI_GUARDIAN_SAME_FAILURES", default=2)
OMOI_GUARDIAN_COST_FACTOR = env.float("OMOI_GUARDIAN_COST_FACTOR", default=5.0)
OMOI_GUARDIAN_PATIENCE = env.int("OMOI_GUARDIAN_PATIENCE", default=2)

# Evidence (tickets/evidence.py): each test file a task adds or changes runs on its own before and
# after the change (red to green, at most this many files per verification); the suite runs under
# coverage.py where the test command allows it. With OMOI_COVERAGE_REQUIRED a changed line that
# never ran sends the task back to the model (counted like failing checks); otherwise it only shows
# in the evidence.
OMOI_RED_GREEN = env.bool("OMOI_RED_GREEN", default=True)
OMOI_RED_GREEN_MAX_FILES = env.int("OMOI_RED_GREEN_MAX_FILES", default=20)
OMOI_COVERAGE = env.bool("OMOI_COVERAGE", default=True)
OMOI_COVERAGE_REQUIRED = env.bool("OMOI_COVERAGE_REQUIRED", default=False)

# --- Durable work (omoi/leases.py, omoi/reconcile.py, omoi/nodes.py) ------------------------
# A step's lease: renewed every third of it while the step runs; a killed worker's step runs again
# once it has expired (and the reconciler has noticed).
OMOI_LEASE_S = env.float("OMOI_LEASE_S", default=30.0)
OMOI_RECONCILE_INTERVAL_S = env.float("OMOI_RECONCILE_INTERVAL_S", default=10.0)
# A worker node beats six times a lease period and is dead after a lease period without a beat.
OMOI_NODE_BEAT_S = env.float("OMOI_NODE_BEAT_S", default=OMOI_LEASE_S / 6)
OMOI_NODE_DEAD_S = env.float("OMOI_NODE_DEAD_S", default=OMOI_LEASE_S)
# Transient failures of one step (a connection, a timeout, a rate limit) retry with back-off
# (OMOI_WORK_BACKOFF_S doubling, at most OMOI_WORK_BACKOFF_MAX_S) this many times in a row.
OMOI_WORK_MAX_FAILURES = env.int("OMOI_WORK_MAX_FAILURES", default=8)
OMOI_WORK_BACKOFF_S = env.float("OMOI_WORK_BACKOFF_S", default=2.0)
OMOI_WORK_BACKOFF_MAX_S = env.float("OMOI_WORK_BACKOFF_MAX_S", default=120.0)
# A step whose worker died this many times is given up (a poison step).
OMOI_WORK_MAX_CLAIMS = env.int("OMOI_WORK_MAX_CLAIMS", default=20)

# --- Sandboxes ------------------------------------------------------------------------------
OMOI_SANDBOX_PROVIDER = env("OMOI_SANDBOX_PROVIDER", default="local")
# The local provider's boundary: "auto" (bubblewrap when it works on this machine, else commands
# run unconfined and say so), "bubblewrap" (required: commands are refused without it), "none".
OMOI_SANDBOX_CONFINEMENT = env("OMOI_SANDBOX_CONFINEMENT", default="auto")
# A confined command that may use the network gets it through slirp4netns where it is installed
# ("auto": the internet, not the worker's loopback), or shares the worker's network ("host").
OMOI_SANDBOX_NETWORK = env("OMOI_SANDBOX_NETWORK", default="auto")
# Without a confining boundary commands are refused unless this is set (by default: DEBUG).
OMOI_ALLOW_UNCONFINED = env.bool("OMOI_ALLOW_UNCONFINED", default=DEBUG)
# Unconfined only: "auto" runs commands in their own PID namespace where unshare works.
OMOI_SANDBOX_PID_NAMESPACE = env("OMOI_SANDBOX_PID_NAMESPACE", default="auto")
OMOI_SANDBOX_ROOT = Path(env("OMOI_SANDBOX_ROOT", default=str(DATA_DIR / "sandboxes")))
OMOI_COMMAND_TIMEOUT_S = env.int("OMOI_COMMAND_TIMEOUT_S", default=300)
# Limits of every sandbox command (docs/sandboxes.md).
OMOI_SANDBOX_MAX_PROCESSES = env.int("OMOI_SANDBOX_MAX_PROCESSES", default=256)
OMOI_SANDBOX_MEMORY_BYTES = env.int("OMOI_SANDBOX_MEMORY_BYTES", default=4 * 1024**3)
OMOI_SANDBOX_FILE_SIZE_BYTES = env.int("OMOI_SANDBOX_FILE_SIZE_BYTES", default=1024**3)
OMOI_SANDBOX_OPEN_FILES = env.int("OMOI_SANDBOX_OPEN_FILES", default=1024)
OMOI_SANDBOX_DISK_BYTES = env.int("OMOI_SANDBOX_DISK_BYTES", default=5 * 1024**3)
OMOI_SANDBOX_MIN_FREE_BYTES = env.int("OMOI_SANDBOX_MIN_FREE_BYTES", default=1024**3)
OMOI_SANDBOX_TMP_BYTES = env.int("OMOI_SANDBOX_TMP_BYTES", default=512 * 1024**2)
# Per-command cgroups (pids, memory) where this process may create them.
OMOI_SANDBOX_CGROUPS = env.bool("OMOI_SANDBOX_CGROUPS", default=True)
# The project's setup_command: its timeout, and how long an unused cached result is kept.
OMOI_SETUP_TIMEOUT_S = env.int("OMOI_SETUP_TIMEOUT_S", default=600)
OMOI_SETUP_CACHE_MAX_AGE_S = env.int("OMOI_SETUP_CACHE_MAX_AGE_S", default=7 * 24 * 3600)
# The host's own clones of project repositories (spec branches are built and merged there).
OMOI_REPOS_DIR = Path(env("OMOI_REPOS_DIR", default=str(DATA_DIR / "repos")))
# The Daytona provider (OMOI_SANDBOX_PROVIDER=daytona): a remote sandbox per run, through the SDK.
DAYTONA_API_KEY = env("DAYTONA_API_KEY", default="")
DAYTONA_API_URL = env("DAYTONA_API_URL", default="")  # empty: the SDK's default, Daytona's cloud
DAYTONA_TARGET = env("DAYTONA_TARGET", default="")  # the region; empty: the organisation's default
DAYTONA_SNAPSHOT = env("DAYTONA_SNAPSHOT", default="")  # empty: Daytona's default snapshot
DAYTONA_IMAGE = env("DAYTONA_IMAGE", default="")  # an image instead of a snapshot (built on first use)
# Names and labels Omoi's sandboxes with it; installations sharing one Daytona organisation need
# different prefixes (the reaper removes this prefix's sandboxes that no run holds).
DAYTONA_SANDBOX_PREFIX = env("DAYTONA_SANDBOX_PREFIX", default="omoi")
DAYTONA_AUTO_STOP_MINUTES = env.int("DAYTONA_AUTO_STOP_MINUTES", default=15)
DAYTONA_NETWORK_BLOCK_ALL = env.bool("DAYTONA_NETWORK_BLOCK_ALL", default=True)
# The reaper leaves sandboxes younger than this alone (their run may not have recorded them yet).
DAYTONA_REAP_GRACE_S = env.int("DAYTONA_REAP_GRACE_S", default=900)

# --- GitHub ---------------------------------------------------------------------------------
GITHUB_TOKEN = env("GITHUB_TOKEN", default="")
GITHUB_API_URL = env("GITHUB_API_URL", default="https://api.github.com")
# The GitHub repositories ("owner/name" patterns, * allowed) the global GITHUB_TOKEN may push to
# and open pull requests on; a project with its own token is not limited by this.
OMOI_GITHUB_TOKEN_REPOSITORIES = env.list("OMOI_GITHUB_TOKEN_REPOSITORIES", default=["*"])

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("OMOI_LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # The filesystem transport has no host; kombu warns about that on every connection.
        "kombu.connection": {"level": "ERROR"},
        # httpx logs every request at INFO; the Daytona SDK moves files with it, several per turn.
        "httpx": {"level": "WARNING"},
    },
}

# --- Trust boundary: accounts, tokens, repositories, credentials, quotas ---------------------
# API tokens (django-rest-knox): stored as SHA-512 digests, each with an expiry; revoked by
# POST /api/v1/auth/logout (this token) or /auth/logout-all (every token of the user).
REST_KNOX = {
    "TOKEN_TTL": timedelta(hours=env.float("OMOI_API_TOKEN_TTL_HOURS", default=24 * 7)),
    "AUTH_HEADER_PREFIX": "Token",
    "TOKEN_LIMIT_PER_USER": env.int("OMOI_API_TOKENS_PER_USER", default=20),
}
# Failed admin logins per client address and window before the login answers 429.
OMOI_LOGIN_ATTEMPTS = env.int("OMOI_LOGIN_ATTEMPTS", default=10)
OMOI_LOGIN_WINDOW_S = env.int("OMOI_LOGIN_WINDOW_S", default=300)
# Throttles and login counters live in the cache: share one (CACHE_URL=redis://...) between
# several web processes, or each process counts on its own.
CACHES = {"default": env.cache_url("CACHE_URL", default="locmemcache://omoi")}

# Repositories a project may name (tickets/repository_policy.py). https:// on these hosts
# ("host" or "host:port"); other URL schemes only when listed; local paths only under these roots.
OMOI_REPOSITORY_HOSTS = [h.lower() for h in env.list("OMOI_REPOSITORY_HOSTS", default=["github.com"])]
OMOI_REPOSITORY_SCHEMES = [s.lower() for s in env.list("OMOI_REPOSITORY_SCHEMES", default=["https"])]
OMOI_LOCAL_REPOSITORY_ROOTS = [
    Path(root) for root in env.list("OMOI_LOCAL_REPOSITORY_ROOTS", default=[str(DATA_DIR / "demo")] if DEBUG else [])
]
# The ssh command host git uses when ssh is allowed (HOME is empty: name the deploy key here).
OMOI_GIT_SSH_COMMAND = env("OMOI_GIT_SSH_COMMAND", default="")
# A new project's repository is reached once (git ls-remote) within this many seconds.
OMOI_REPOSITORY_CHECK_TIMEOUT_S = env.float("OMOI_REPOSITORY_CHECK_TIMEOUT_S", default=20.0)
# The key(s) per-project GitHub tokens are encrypted with (Fernet keys, comma separated: the first
# encrypts, every one decrypts, so a key can be rotated). Default: derived from SECRET_KEY.
OMOI_ENCRYPTION_KEYS = env.list("OMOI_ENCRYPTION_KEYS", default=[])

# PostgreSQL's JIT compiles a query whose estimated cost is high, which for the API's short
# queries (a board column, a page) costs tens of milliseconds more than running them; off by default.
if DATABASES["default"]["ENGINE"] != "django.db.backends.sqlite3" and not env.bool("OMOI_DATABASE_JIT", default=False):
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("options", "-c jit=off")

# Per-user quotas (0 switches one off): launches within a window, and specs not yet finished
# (draft, planning, planned, executing). Past either, launch and retry answer 429 with the limit.
OMOI_QUOTA_LAUNCHES = env.int("OMOI_QUOTA_LAUNCHES", default=20)
OMOI_QUOTA_LAUNCH_WINDOW_S = env.int("OMOI_QUOTA_LAUNCH_WINDOW_S", default=3600)
OMOI_QUOTA_OPEN_SPECS = env.int("OMOI_QUOTA_OPEN_SPECS", default=10)
# Request bodies larger than this answer 413.
OMOI_API_MAX_BODY_BYTES = env.int("OMOI_API_MAX_BODY_BYTES", default=1_000_000)
# The board shows at most this many tickets per column (each column keeps its total).
OMOI_BOARD_COLUMN_LIMIT = env.int("OMOI_BOARD_COLUMN_LIMIT", default=50)

if not DEBUG:
    # Production refuses to start with what would make it trivially unsafe.
    if SECRET_KEY == DEFAULT_SECRET_KEY or len(SECRET_KEY) < 32:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY must be set to a long random value (at least 32 characters) when DEBUG is off"
        )
    if not ALLOWED_HOSTS or "*" in ALLOWED_HOSTS:
        raise ImproperlyConfigured(
            "DJANGO_ALLOWED_HOSTS must name the site's hosts (not empty, not '*') when DEBUG is off"
        )
