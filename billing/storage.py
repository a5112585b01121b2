"""Private file storage for tax certificates, invoice and credit-note PDFs.

Files live under settings.PRIVATE_STORAGE_ROOT, never under MEDIA_ROOT, and have no URL: they are served only by
permission-checked views (portal/admin) that read them through the selectors in billing/selectors.py.

The storage is configurable (settings.STORAGES["private"], docs/deploy.md): an S3-compatible bucket through
django-storages in a multi-host deployment, where every web process and worker must see the same files.
"""

import os

from django.conf import settings
from django.core.files.storage import FileSystemStorage, Storage, storages


class PrivateStorage(FileSystemStorage):
    # Read the root on every access (not once at import), so settings overrides (tests) are honoured.
    @property
    def base_location(self):
        return str(settings.PRIVATE_STORAGE_ROOT)

    @property
    def location(self):
        return os.path.abspath(self.base_location)

    @property
    def base_url(self):
        return None

    def url(self, name):
        raise NotImplementedError("Private files have no public URL; serve them through a permission-checked view.")


def private_storage() -> Storage:
    """Callable storage, so migrations never bake in a path or a backend."""
    if "private" in settings.STORAGES:
        return storages["private"]
    return PrivateStorage()
