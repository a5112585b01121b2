"""Tell support, once, about entitlements a run gave up on (sent after commit)."""

from collections.abc import Iterable

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction

from subscriptions.models import Customer
from subscriptions.services.provisioning.engine import Outcome


def notify_support(outcomes: Iterable[Outcome]) -> None:
    failed = [o for o in outcomes if o.newly_failed]
    if not failed:
        return
    names = dict(Customer.objects.filter(id__in=[o.run.customer_id for o in failed]).values_list("id", "name"))
    for outcome in failed:
        run = outcome.run
        features = ", ".join(sorted({row.feature_key for row in outcome.newly_failed}))
        subject = f"Provisioning failed for {names.get(run.customer_id, run.customer_id)}"
        body = (
            f"Entitlements could not be applied for customer {names.get(run.customer_id)} (id {run.customer_id}).\n"
            f"Features: {features}\nBackend: {run.backend}\nAttempt: {run.attempt}\nError: {run.error}\n"
            f"Provisioning run: {run.pk}\n\nRetry from the admin once the cause is fixed.\n"
        )

        def _send(subject=subject, body=body) -> None:
            send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, [settings.SUPPORT_EMAIL], fail_silently=True)

        transaction.on_commit(_send)
