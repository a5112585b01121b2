"""Settings for bench/pages.py: Continuum's own settings, plus one URL for the bare page it is measured against."""

from portal.settings import *  # noqa: F403

ROOT_URLCONF = "bench.pages_urls"
