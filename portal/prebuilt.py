"""The query shapes built once per process live in `subscriptions.prebuilt` (every layer uses them: billing's and
subscriptions' change previews too); the portal's views import them from here as before."""

from subscriptions.prebuilt import MAX_VARIANTS, prebuilt

__all__ = ["MAX_VARIANTS", "prebuilt"]
