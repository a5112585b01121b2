"""gunicorn settings for the production profile, all from the environment (docs/deploy.md).

    gunicorn -c python:portal.gunicorn_conf portal.wsgi:application

Sync workers: every request is a short database transaction, so WEB_CONCURRENCY processes (a common rule: 2-4 per
core) with GUNICORN_THREADS threads each (default 1) set how many requests run at once per host. Each worker holds
up to one database connection per thread (DB_CONN_MAX_AGE keeps it between requests).
"""

import os

# HOST=0.0.0.0 in a container (the platform's proxy connects from outside); loopback by default.

bind = os.environ.get("GUNICORN_BIND") or f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "1"))
# A request that takes longer is killed and logged: no page or API call of ours should need more than this.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "30"))
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "5"))
# Recycle workers now and then so a slow leak (e.g. a PDF library's caches) never grows without bound.
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "2000"))
max_requests_jitter = int(os.environ.get("GUNICORN_MAX_REQUESTS_JITTER", "200"))
# Behind a TLS proxy: which addresses may set X-Forwarded-* (comma-separated; "*" only on a private network).
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
accesslog = os.environ.get("GUNICORN_ACCESS_LOG", "-") or None  # "" turns it off
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
# Load the app before forking: one import, copy-on-write memory, and a broken deploy fails before taking traffic.
preload_app = os.environ.get("GUNICORN_PRELOAD", "1") == "1"
# gunicorn's control socket (`gunicornc`) defaults to one fixed path per user, which two instances on one host (or a
# bench next to `make run-prod`) would fight over: per instance when asked for, off otherwise.
if os.environ.get("GUNICORN_CONTROL_SOCKET"):
    control_socket = os.environ["GUNICORN_CONTROL_SOCKET"]
else:
    control_socket_disable = True
