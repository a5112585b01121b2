"""A committed seat change answers as usual when the broker refuses the after-commit hand-off (never a 500)."""

import pytest

from subscriptions.models import ProvisioningRun, RunOutcome, Subscription
from subscriptions.services.provisioning import entitlements_drift_check
from tests.portal.test_changes import _confirm, _post
from tests.subscriptions.test_dispatch import broker_down  # noqa: F401 - the fixture

pytestmark = pytest.mark.django_db


@pytest.mark.usefixtures("broker_down")
def test_seats_confirm_with_the_broker_down_commits_and_the_drift_check_provisions(
    account,
    client_for,
    django_capture_on_commit_callbacks,
):
    client = client_for(account.owner)
    preview = _post(client, account, "change_preview_seats", {"seats": "12"}).text
    with django_capture_on_commit_callbacks(execute=True):
        applied = _confirm(client, account, "seats", preview)
    assert applied.status_code == 302
    assert Subscription.objects.get(pk=account.subscription.pk).seats == 12
    assert ProvisioningRun.objects.filter(customer=account.customer, outcome=RunOutcome.QUEUED).exists()

    entitlements_drift_check()

    assert not ProvisioningRun.objects.filter(customer=account.customer, outcome=RunOutcome.QUEUED).exists()
