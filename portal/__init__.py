"""The Django project (settings, urls, Celery app, middleware) and the customer-facing site: `views/` (pages),
`api/` (REST), `services/` (sign-up, API keys, staff sign-in), `admin/` and `backoffice*.py` (the back office).
Imports `billing` and `subscriptions`, never the reverse.
"""

import atexit
import os
import shutil
from pathlib import Path

# Metrics (portal/metrics.py) are collected in every process — web, the worker's pool, beat — and served by any web
# process from files in one directory (prometheus_client's multiprocess mode). prometheus_client reads the variable
# when it is first imported, so it is settled here, in the package every Continuum process imports first.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    _var_dir = Path(os.environ.get("CONTINUUM_VAR_DIR") or Path(__file__).resolve().parent.parent / "var")
    if os.environ.get("DJANGO_SETTINGS_MODULE", "").endswith("settings_test"):
        _metrics_dir = _var_dir / "test-prometheus" / str(os.getpid())  # one test process's own counters
        shutil.rmtree(_metrics_dir, ignore_errors=True)  # a reused pid starts from zero
        atexit.register(shutil.rmtree, _metrics_dir, True)
    else:
        _metrics_dir = _var_dir / "prometheus"
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(_metrics_dir)
Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).mkdir(parents=True, exist_ok=True)

from portal.celery import app as celery_app  # noqa: E402

__all__ = ("celery_app",)
