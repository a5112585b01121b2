"""Fixtures of the billing tests."""

# localstripe on 127.0.0.1 for the Stripe payment tests (tests/billing/stripe_support.py).
from tests.billing.stripe_support import stripe_server, stripe_server_session  # noqa: F401
