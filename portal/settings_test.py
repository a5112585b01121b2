"""Test settings: the production settings with only what tests need overridden."""

import os

os.environ.setdefault("CELERY_TASK_ALWAYS_EAGER", "1")

from portal.settings import *  # noqa: E402,F403
from portal.settings import VAR_DIR  # noqa: E402

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
PRIVATE_STORAGE_ROOT = VAR_DIR / "test-private"
MEDIA_ROOT = VAR_DIR / "test-media"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
if DATABASES["default"]["ENGINE"].endswith("sqlite3") and os.environ.get("CONTINUUM_INTEGRATION") == "1":  # noqa: F405
    # Integration tests start a real Celery worker process, which cannot see an in-memory database: use a file.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-continuum.sqlite3")}  # noqa: F405
# The page cache (portal/page_cache.py) is on, as in production: every page test sees what a customer sees. Tests
# that count what a page costs to compute turn it off (the `page_cache_off` fixture, tests/conftest.py).
# Tests kill Celery pool processes on purpose; report the lost task after 1 s instead of Celery's default 10 s.
CELERY_WORKER_LOST_WAIT = 1.0
# The webhook tests' receiver listens on http://127.0.0.1 (tests/support/http_receiver.py); production refuses this.
WEBHOOKS_ALLOW_LOOPBACK_HTTP = True
