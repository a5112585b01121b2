"""Private file storage for tax certificates, invoice and credit-note PDFs.

Files live under settings.PRIVATE_STORAGE_ROOT, never under MEDIA_ROOT, and have no URL: they are served only by
permission-checked views (portal/admin) that read them through the selectors in billing/selectors.py.
"""

from django.conf import settings
from django.core.files.storage import FileSystemStorage


class PrivateStorage(FileSystemStorage):
    def __init__(self, **kwargs):
        kwargs.setdefault("location", str(settings.PRIVATE_STORAGE_ROOT))
        kwargs["base_url"] = None
        super().__init__(**kwargs)

    def url(self, name):
        raise NotImplementedError("Private files have no public URL; serve them through a permission-checked view.")


def private_storage() -> PrivateStorage:
    """Callable storage, so migrations never bake in a path and test settings can point elsewhere."""
    return PrivateStorage()
