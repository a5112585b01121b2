"""Continuum settings, read from environment variables with zero-setup defaults.

Development defaults: SQLite under var/, an embedded Celery broker on a SQLite file, console e-mail.
`DJANGO_ENV=production` switches on every hardening setting and refuses to start without SECRET_KEY.
Choices are recorded in docs/decisions.md; every variable is listed in docs/operations.md.
"""

import json
import os
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import dj_database_url
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in env(name, default).split(",") if item.strip()]


DJANGO_ENV = env("DJANGO_ENV", "development")
PRODUCTION = DJANGO_ENV == "production"

VAR_DIR = Path(env("CONTINUUM_VAR_DIR", str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

SECRET_KEY = env("SECRET_KEY")
if not SECRET_KEY:
    if PRODUCTION:
        raise ImproperlyConfigured("SECRET_KEY must be set when DJANGO_ENV=production.")
    SECRET_KEY = "dev-insecure-continuum-key-do-not-use-in-production-0123456789"

# DEBUG is on only when asked for (make run sets DJANGO_DEBUG=1); never in production.
DEBUG = env_bool("DJANGO_DEBUG", False) and not PRODUCTION

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "" if PRODUCTION else "127.0.0.1,localhost,testserver,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")
SITE_URL = env("SITE_URL", "http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    "portal.admin_apps.ContinuumAdminConfig",  # django.contrib.admin + staff two-factor sign-in (portal/admin_site.py)
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "django_htmx",
    "axes",
    "subscriptions",
    "billing",
    "portal",
]

MIDDLEWARE = [
    # Request counts and latency by view for /metrics (portal/metrics.py); first and last, so all the rest is timed.
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "portal.middleware.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "portal.middleware.NoStoreMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "portal.middleware.ContentSecurityPolicyMiddleware",
    # Last, as django-axes asks: turns a lockout flagged during the request into the lockout page (portal/lockout.py).
    "axes.middleware.AxesMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "portal.urls"
WSGI_APPLICATION = "portal.wsgi.application"

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

DATABASES = {
    "default": dj_database_url.parse(
        env("DATABASE_URL", f"sqlite:///{VAR_DIR / 'continuum.sqlite3'}"),
        conn_max_age=env_int("DB_CONN_MAX_AGE", 0),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The zero-setup default: the web process, the worker and beat share one file (docs/operations.md, "SQLite").
    # SQLite serialises writers. WAL lets readers run while one process writes; the busy timeout makes a writer wait
    # for the lock instead of failing; IMMEDIATE takes the write lock when a transaction begins, so a transaction that
    # reads and then writes never fails on the lock upgrade (a deferred one gets SQLITE_BUSY at once, whatever the
    # timeout: waiting could deadlock). Applied on every new connection.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": env_int("SQLITE_BUSY_TIMEOUT_SECONDS", 30),
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL",
        }
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_USER_MODEL = "subscriptions.User"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# One sign-in lockout for the portal, the token endpoint and the admin (portal/lockout.py, django-axes): the first
# backend refuses every password check for a locked account or client; ModelBackend checks passwords.
AUTHENTICATION_BACKENDS = ["portal.lockout.LockoutBackend", "django.contrib.auth.backends.ModelBackend"]
LOGIN_THROTTLE_ACCOUNT_LIMIT = env_int("LOGIN_THROTTLE_ACCOUNT_LIMIT", 5)
LOGIN_THROTTLE_IP_LIMIT = env_int("LOGIN_THROTTLE_IP_LIMIT", 20)
LOGIN_THROTTLE_WINDOW_SECONDS = env_int("LOGIN_THROTTLE_WINDOW_SECONDS", 15 * 60)
# Password reset e-mails per submitted address and per client, per window (portal/views/auth.py).
PASSWORD_RESET_ACCOUNT_LIMIT = env_int("PASSWORD_RESET_ACCOUNT_LIMIT", 3)
PASSWORD_RESET_IP_LIMIT = env_int("PASSWORD_RESET_IP_LIMIT", 10)
PASSWORD_RESET_WINDOW_SECONDS = env_int("PASSWORD_RESET_WINDOW_SECONDS", 60 * 60)
AXES_HANDLER = "portal.lockout.AccountAndClientHandler"
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]  # in this order: AccountAndClientHandler relies on it
AXES_FAILURE_LIMIT = "portal.lockout.failure_limit"
AXES_COOLOFF_TIME = "portal.lockout.cool_off"
AXES_USERNAME_FORM_FIELD = "username"
AXES_USERNAME_CALLABLE = "portal.lockout.username"
AXES_CLIENT_IP_CALLABLE = "portal.lockout.client_ip"
AXES_LOCKOUT_CALLABLE = "portal.lockout.lockout_response"
AXES_RESET_ON_SUCCESS = True
AXES_HTTP_RESPONSE_CODE = 429
AXES_VERBOSE = False
LOGIN_URL = "portal:login"
LOGIN_REDIRECT_URL = "portal:dashboard"
LOGOUT_REDIRECT_URL = "portal:login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"
MEDIA_ROOT = VAR_DIR / "media"
MEDIA_URL = "media/"
# Tax certificates and invoice PDFs never live under MEDIA_ROOT: they are served only through permission-checked views.
PRIVATE_STORAGE_ROOT = Path(env("PRIVATE_STORAGE_ROOT", str(VAR_DIR / "private")))

# --- E-mail -------------------------------------------------------------------------------------------------------
EMAIL_BACKEND = env("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
# For the file backend (`make run` uses it): one .log file per sending process under var/mail/, attachments included.
EMAIL_FILE_PATH = env("EMAIL_FILE_PATH", str(VAR_DIR / "mail"))
EMAIL_HOST = env("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", "Continuum Billing <billing@continuum.test>")
SUPPORT_EMAIL = env("SUPPORT_EMAIL", "support@continuum.test")

# --- Celery
CELERY_BROKER_URL = env("CELERY_BROKER_URL", f"sqla+sqlite:///{VAR_DIR / 'celery-broker.sqlite'}")
CELERY_RESULT_BACKEND = env("CELERY_RESULT_BACKEND") or None
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Publishing a task rides out a broker blip (a restart, a locked broker file) for about 6 s before it gives up.
CELERY_TASK_PUBLISH_RETRY = True
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 5, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 2.0}
# The embedded broker polls its table; a short interval keeps task latency well under a second.
CELERY_BROKER_TRANSPORT_OPTIONS = {"polling_interval": 0.1} if CELERY_BROKER_URL.startswith("sqla+") else {}
# Extra kombu transport options as a JSON object, e.g. '{"visibility_timeout": 7200}' on Redis. The test harness
# uses it to give each test's worker a broker namespace of its own (tests/support/celery_worker.py).
CELERY_BROKER_TRANSPORT_OPTIONS.update(json.loads(env("CELERY_BROKER_TRANSPORT_OPTIONS") or "{}"))
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_BEAT_SCHEDULE: dict = {}

# --- Provisioning (docs/provisioning.md)
PROVISIONER_BACKEND = env("PROVISIONER_BACKEND", "builtin")
PROVISIONER_WEBHOOK_URL = env("PROVISIONER_WEBHOOK_URL")
PROVISIONER_WEBHOOK_SECRET = env("PROVISIONER_WEBHOOK_SECRET")
PROVISIONER_WEBHOOK_TIMEOUT = float(env("PROVISIONER_WEBHOOK_TIMEOUT", "5"))
PROVISIONING_MAX_RETRIES = env_int("PROVISIONING_MAX_RETRIES", 6)
PROVISIONING_RETRY_BASE_SECONDS = float(env("PROVISIONING_RETRY_BASE_SECONDS", "2"))
PROVISIONING_RETRY_MAX_SECONDS = float(env("PROVISIONING_RETRY_MAX_SECONDS", "300"))
CELERY_BEAT_SCHEDULE["entitlements-drift-check"] = {
    "task": "subscriptions.entitlements_drift_check",
    "schedule": float(env_int("PROVISIONING_DRIFT_CHECK_SECONDS", 600)),
}
# Issue 18: the customer data-version rows pruned to one per customer (each prune costs one page-cache miss per
# pruned customer; see portal/page_cache.py).
CELERY_BEAT_SCHEDULE["customer-data-changes-prune"] = {
    "task": "subscriptions.customer_data_changes_prune",
    "schedule": float(env_int("CUSTOMER_DATA_CHANGES_PRUNE_SECONDS", 6 * 3600)),
}
# Customer pages' computed data cached under the customer's data version (portal/page_cache.py), and how long an
# entry may stay in the cache (memory only: an entry is never stale, its key carries the data version).
PAGE_CACHE = env_bool("PAGE_CACHE", True)
PAGE_CACHE_SECONDS = env_int("PAGE_CACHE_SECONDS", 3600)

# --- REST API
REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.SessionAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    # API views (portal/api/) set their own auth, error handler and throttles; these are the rates they use.
    "DEFAULT_THROTTLE_RATES": {
        "api": env("API_THROTTLE_RATE", "600/minute"),
        "anon": env("API_ANON_THROTTLE_RATE", "120/minute"),
        "auth_token": env("API_TOKEN_THROTTLE_RATE", "10/minute"),
    },
    # How many reverse proxies append to X-Forwarded-For in front of the app. 0: the client address is REMOTE_ADDR
    # (X-Forwarded-For is ignored; without this DRF would key anonymous throttles on the client-written header).
    "NUM_PROXIES": env_int("API_NUM_PROXIES", 0),
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Continuum API",
    "DESCRIPTION": "Self-service subscriptions, enablement and billing.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Interactive docs are served from our own static files (drf-spectacular-sidecar): no CDN, CSP 'self'.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "IntervalEnum": "subscriptions.models.catalog.Interval",
        "SubscriptionStatusEnum": "subscriptions.models.SubscriptionStatus",
        "InvoiceStatusEnum": "billing.models.InvoiceStatus",
        # The API shows four exemption states (a replaced certificate reads `expired`; portal/api/views/billing.py).
        "ExemptionStatusEnum": "portal.api.views.billing.EXEMPTION_API_STATUSES",
    },
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "portal.api.schema.add_error_responses",
    ],
}

# --- Billing
SELLER = {
    "name": env("SELLER_NAME", "Continuum Software Inc."),
    "address": env("SELLER_ADDRESS", "100 Market Street, San Francisco, CA 94105, United States"),
    "country": env("SELLER_COUNTRY", "US"),
    "tax_ids": env_list("SELLER_TAX_IDS", "US EIN 12-3456789"),
    "email": env("SELLER_EMAIL", "billing@continuum.test"),
    "bank_details": env("SELLER_BANK_DETAILS", "Bank of Demo · IBAN DE89 3704 0044 0532 0130 00 · BIC COBADEFFXXX"),
    # Structured seller data for EN 16931 e-invoices (billing/einvoice.py; `manage.py check` warns when incomplete).
    # The demo seller is complete: a German VAT registration and the bank account printed above.
    "legal_name": env("SELLER_LEGAL_NAME", "Continuum Software Inc."),
    "street": env("SELLER_STREET", "100 Market Street"),
    "city": env("SELLER_CITY", "San Francisco"),
    "postal_code": env("SELLER_POSTAL_CODE", "94105"),
    "vat_id": env("SELLER_VAT_ID", "DE811907980"),
    "iban": env("SELLER_IBAN", "DE89370400440532013000"),
    "bic": env("SELLER_BIC", "COBADEFFXXX"),
    # XRechnung's seller contact needs a telephone number (BR-DE-6).
    "phone": env("SELLER_PHONE", "+1 415 555 0100"),
}
# Factur-X e-invoices for EU business customers (docs/billing-rules.md, "E-invoices"); off = plain PDFs for all.
E_INVOICING_ENABLED = env_bool("E_INVOICING_ENABLED", True)
ENABLED_CURRENCIES = env_list("ENABLED_CURRENCIES", "USD,EUR")
# The EU member state where the seller is established for VAT ("" = not established in the EU, as the default US
# seller). EU business customers with a valid VAT ID of another member state are invoiced under reverse charge.
SELLER_EU_VAT_COUNTRY = env("SELLER_EU_VAT_COUNTRY", "").upper()
INVOICE_NUMBER_PREFIX = env("INVOICE_NUMBER_PREFIX", "INV")
# One chunk is one transaction. On SQLite that transaction holds the only write lock, so chunks are small there: the
# hourly run must not make the portal's writes wait (issue 17, "short transactions in tasks").
BILLING_RUN_CHUNK_SIZE = env_int(
    "BILLING_RUN_CHUNK_SIZE", 50 if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3" else 500
)
# Hand the hourly run's finalize chunks (pre-issue checks + issue) to the Celery workers instead of doing them in the
# beat task's process. `manage.py billing_run` always finalizes in-process, in id order.
BILLING_RUN_FINALIZE_FAN_OUT = env_bool("BILLING_RUN_FINALIZE_FAN_OUT", False)
# The billing run starts at a fixed minute of every hour (UTC), not "an hour after beat started": period ends fall on
# the hour, so they are renewed within BILLING_RUN_MINUTE minutes. A change that arrives earlier renews its own
# subscription on demand (billing/services/changes.py), so nobody waits for the run.
BILLING_RUN_MINUTE = env_int("BILLING_RUN_MINUTE", 2)
CELERY_BEAT_SCHEDULE["billing-run-hourly"] = {
    "task": "billing.billing_run",
    "schedule": crontab(minute=BILLING_RUN_MINUTE),
}
CELERY_BEAT_SCHEDULE["customer-health-nightly"] = {
    "task": "portal.customer_health_recompute",
    "schedule": crontab(hour=2, minute=30),  # after the midnight runs, before European mornings (docs/metrics.md)
}
# Event-driven recompute (docs/metrics.md, "Recompute on events"): an event marks the customer; one recompute runs
# this many seconds after the first event (later ones in the meantime add nothing); a mark older than the re-arm
# time queues again; the sweep recomputes marks whose message a broker outage lost.
HEALTH_RECOMPUTE_DELAY_SECONDS = env_int("HEALTH_RECOMPUTE_DELAY_SECONDS", 60)
HEALTH_RECOMPUTE_REARM_SECONDS = env_int("HEALTH_RECOMPUTE_REARM_SECONDS", 600)
CELERY_BEAT_SCHEDULE["customer-health-marks-sweep"] = {
    "task": "portal.customer_health_recompute_marked",
    "schedule": 600.0,
}
# Revenue metrics (docs/metrics.md, "Revenue metrics"): the gross margin the lifetime value assumes (a fraction).
REVENUE_GROSS_MARGIN = Decimal(env("REVENUE_GROSS_MARGIN", "0.80"))
CELERY_BEAT_SCHEDULE["billing-revenue-metrics-nightly"] = {
    "task": "billing.revenue_metrics_update",
    "schedule": crontab(hour=2, minute=10),  # the current and the previous month, after midnight's renewals
}
CELERY_BEAT_SCHEDULE["billing-tax-exemptions-daily"] = {
    "task": "billing.tax_exemptions_daily",
    "schedule": crontab(hour=0, minute=15),  # after midnight UTC: yesterday was the last valid day of some
}
STRIPE_SECRET_KEY = env("STRIPE_SECRET_KEY")
STRIPE_PUBLISHABLE_KEY = env("STRIPE_PUBLISHABLE_KEY")
STRIPE_WEBHOOK_SECRET = env("STRIPE_WEBHOOK_SECRET")
STRIPE_API_BASE = env("STRIPE_API_BASE")
STRIPE_JS_URL = env("STRIPE_JS_URL", "https://js.stripe.com/v3/")
# Dunning (billing/services/dunning.py): retries N days after the first failed automatic payment; past_due after the
# grace period; after the final retry the invoice is marked uncollectible, and with "cancel" the subscription ends.
DUNNING_RETRY_DAYS = [int(day) for day in env_list("DUNNING_RETRY_DAYS", "1,3,5,7")]
DUNNING_GRACE_DAYS = env_int("DUNNING_GRACE_DAYS", 3)
DUNNING_FINAL_ACTION = env("DUNNING_FINAL_ACTION", "uncollectible")  # uncollectible | cancel
CELERY_BEAT_SCHEDULE["billing.dunning_run"] = {"task": "billing.dunning_run", "schedule": 3600.0}
# Webhook events whose processing task was never published (a broker outage) or was lost are queued again.
CELERY_BEAT_SCHEDULE["billing.stripe_events_sweep"] = {"task": "billing.stripe_events_sweep", "schedule": 300.0}
# Invoices and credit notes whose after-issue hand-off (PDF, e-mail, collection) a broker outage lost are queued again.
CELERY_BEAT_SCHEDULE["billing.issued_documents_sweep"] = {"task": "billing.issued_documents_sweep", "schedule": 300.0}
# Card refunds, Stripe customer syncs and accounting exports whose hand-off a broker outage lost are queued again.
CELERY_BEAT_SCHEDULE["billing.lost_handoffs_sweep"] = {"task": "billing.lost_handoffs_sweep", "schedule": 300.0}

# --- Security
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
if PRODUCTION:
    # SECURE_COOKIES=0 only for `make run-prod` on plain-http loopback (scripts/run-prod); never behind real TLS.
    SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env_bool("SECURE_COOKIES", True)
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    # Load-balancer probes speak plain HTTP behind the TLS proxy; a redirect would read as "down".
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True

# --- Metrics (/metrics, portal/metrics.py): a bearer token, or else only these addresses (none in production)
METRICS_TOKEN = env("METRICS_TOKEN")
METRICS_ALLOWED_IPS = env_list("METRICS_ALLOWED_IPS", "" if PRODUCTION else "127.0.0.1/32,::1/128")

# --- Logging: one JSON object per line, each carrying the request id
LOG_LEVEL = env("LOG_LEVEL", "INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "request_id": {"()": "portal.logging.RequestIdFilter"},
        "redact": {"()": "portal.logging.RedactSecretsFilter"},
    },
    "formatters": {"json": {"()": "portal.logging.JsonFormatter"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "json", "filters": ["request_id", "redact"]},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        "celery": {"level": LOG_LEVEL},
        # WeasyPrint logs every layout step of every PDF at INFO; its warnings (e.g. a missing image) still show.
        "weasyprint": {"level": "WARNING"},
        "fontTools": {"level": "WARNING"},
        # django-axes logs every sign-in at INFO; failures and lockouts are WARNING and still show.
        "axes": {"level": "WARNING"},
    },
}

# In production the worker logs through LOGGING above (JSON with request, customer and task ids), not Celery's own
# text format; under `make run` Celery's readable format stays.
CELERY_WORKER_HIJACK_ROOT_LOGGER = not PRODUCTION

SESSION_COOKIE_AGE = int(timedelta(days=14).total_seconds())

# --- Cache (sign-in throttle counters, DRF throttling). Local memory is per process: fine for development and tests;
# set CACHE_URL=redis://host:6379/1 in production so every web process shares the counters.
CACHE_URL = env("CACHE_URL")
CACHES = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_URL}
        if CACHE_URL.startswith(("redis://", "rediss://"))
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "continuum"}
    )
}

# --- Production profile (docs/deploy.md) -----------------------------------------------------------------
# Production never falls back to a development default: SQLite would split the data per host and local-memory
# caches would give every web process its own throttle and sign-in counters.
if PRODUCTION:
    _missing = [name for name in ("DATABASE_URL", "CACHE_URL") if not env(name)]
    if _missing:
        raise ImproperlyConfigured(f"{' and '.join(_missing)} must be set when DJANGO_ENV=production (docs/deploy.md).")
    if not CACHE_URL.startswith(("redis://", "rediss://")):
        raise ImproperlyConfigured("CACHE_URL must be a redis:// or rediss:// URL when DJANGO_ENV=production.")

# With persistent connections (DB_CONN_MAX_AGE), a connection the server dropped (failover, pg_terminate_backend) is
# noticed and replaced at the start of the next request instead of failing it.
DATABASES["default"]["CONN_HEALTH_CHECKS"] = env_bool("DB_CONN_HEALTH_CHECKS", True)

# Static files are served by the app itself (WhiteNoise), hashed and compressed after `collectstatic` in production.
_after_security = MIDDLEWARE.index("django.middleware.security.SecurityMiddleware") + 1
MIDDLEWARE.insert(_after_security, "whitenoise.middleware.WhiteNoiseMiddleware")
STATIC_MANIFEST = env_bool("STATIC_MANIFEST", PRODUCTION)
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # `collectstatic` fills it; WhiteNoise warns when it is missing
# Private files (tax certificates, invoice PDFs): a local directory by default (PRIVATE_STORAGE_ROOT); any Django
# storage backend through PRIVATE_STORAGE_BACKEND + PRIVATE_STORAGE_OPTIONS (JSON), e.g. django-storages' S3.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if STATIC_MANIFEST
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
    "private": {
        "BACKEND": env("PRIVATE_STORAGE_BACKEND", "billing.storage.PrivateStorage"),
        "OPTIONS": json.loads(env("PRIVATE_STORAGE_OPTIONS") or "{}"),
    },
}

# Staff two-factor sign-in (django-otp TOTP): required in production, optional under `make run` so demo logins work.
INSTALLED_APPS += ["django_otp", "django_otp.plugins.otp_totp"]
MIDDLEWARE[MIDDLEWARE.index("django.contrib.auth.middleware.AuthenticationMiddleware") + 1 : 0] = [
    "django_otp.middleware.OTPMiddleware",
    "portal.middleware.StaffSessionMiddleware",
]
STAFF_OTP_REQUIRED = env_bool("STAFF_OTP_REQUIRED", PRODUCTION)
OTP_TOTP_ISSUER = env("OTP_TOTP_ISSUER", "Continuum")
# Staff sessions end after STAFF_SESSION_IDLE_SECONDS without a request, and STAFF_SESSION_MAX_SECONDS after sign-in.
STAFF_SESSION_IDLE_SECONDS = env_int("STAFF_SESSION_IDLE_SECONDS", 30 * 60)
STAFF_SESSION_MAX_SECONDS = env_int("STAFF_SESSION_MAX_SECONDS", 10 * 60 * 60)

# Celery queues split by the kind of work, so a 100,000-invoice billing run or a burst of PDF renders never delays
# enablement: each queue gets workers of its own in production (Procfile.prod). A worker started without -Q (make run,
# the integration tests) consumes all of them; `make run` gives webhooks a worker of their own (Procfile).
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_QUEUES = {
    name: {"routing_key": name} for name in ("provisioning", "billing", "documents", "webhooks", "default")
}
CELERY_TASK_ROUTES = {
    "subscriptions.entitlements_*": {"queue": "provisioning"},
    "billing.invoice_after_issue": {"queue": "documents"},
    "billing.invoices_after_issue_fan_out": {"queue": "documents"},
    "billing.invoice_render_pdf": {"queue": "documents"},
    "billing.credit_note_render_pdf": {"queue": "documents"},
    "billing.billing_run": {"queue": "billing"},
    "billing.finalize_drafts_chunk": {"queue": "billing"},
    "billing.dunning_run": {"queue": "billing"},
    "billing.invoice_collect": {"queue": "billing"},
    "billing.credit_note_refund": {"queue": "billing"},
    "billing.stripe_customer_sync": {"queue": "billing"},
    "billing.tax_exemptions_daily": {"queue": "billing"},
    "billing.revenue_metrics_update": {"queue": "billing"},
    # Outbound webhooks (docs/webhooks.md): their own queue, so a slow receiver never delays enablement or billing.
    "subscriptions.webhook_*": {"queue": "webhooks"},
    # billing.stripe_event_process (Stripe's webhooks in) and anything unnamed here: "default".
}

# --- Outbound webhooks (docs/webhooks.md); their queue is routed above.
WEBHOOK_TIMEOUT_SECONDS = float(env("WEBHOOK_TIMEOUT_SECONDS", "5"))
WEBHOOK_RETRY_BASE_SECONDS = float(env("WEBHOOK_RETRY_BASE_SECONDS", "30"))
WEBHOOK_RETRY_MAX_SECONDS = float(env("WEBHOOK_RETRY_MAX_SECONDS", str(6 * 3600)))
WEBHOOK_RETRY_WINDOW_SECONDS = float(env("WEBHOOK_RETRY_WINDOW_SECONDS", str(3 * 24 * 3600)))
WEBHOOK_CLAIM_SECONDS = float(env("WEBHOOK_CLAIM_SECONDS", "60"))
WEBHOOK_RESCAN_GRACE_SECONDS = float(env("WEBHOOK_RESCAN_GRACE_SECONDS", "30"))
# Keys that encrypt endpoints' signing secrets at rest (subscriptions/secretbox.py), newest first; any listed key
# decrypts, the first encrypts. Empty: one derived from SECRET_KEY. Rotation: docs/webhooks.md "Secrets at rest".
WEBHOOK_SECRET_KEYS = env_list("WEBHOOK_SECRET_KEYS")
# Test-only: lets endpoints be http:// on loopback (the tests' receiver on 127.0.0.1). Refused in production.
WEBHOOKS_ALLOW_LOOPBACK_HTTP = env_bool("WEBHOOKS_ALLOW_LOOPBACK_HTTP", False)
if WEBHOOKS_ALLOW_LOOPBACK_HTTP and PRODUCTION:
    raise ImproperlyConfigured("WEBHOOKS_ALLOW_LOOPBACK_HTTP is for tests only and refused with DJANGO_ENV=production.")
CELERY_BEAT_SCHEDULE["billing-invoices-overdue-daily"] = {
    "task": "billing.invoices_overdue_record",
    "schedule": timedelta(days=1),
}
CELERY_BEAT_SCHEDULE["webhooks-outbox-rescan"] = {
    "task": "subscriptions.webhook_outbox_rescan",
    "schedule": float(env_int("WEBHOOK_RESCAN_SECONDS", 60)),
}
