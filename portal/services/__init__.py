"""Use cases that belong to the portal itself: self-service sign-up, API keys and service tokens, staff sign-in,
surveys. Customer and billing rules are not here: they live in `subscriptions.services` and `billing.services`.
"""
