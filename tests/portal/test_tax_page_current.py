"""The tax page reads its history once and takes the current exemption from it (issue 18): the exemption shown as
current is the one `tax_exemption_current_for_customer` picks — awaiting review, else approved, else the latest —
with a short history and with one longer than the page shows."""

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from billing.models import ExemptionStatus, TaxExemption
from billing.selectors import tax_exemption_current_for_customer
from portal.views.billing_pages import HISTORY_ROWS

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)  # pinned: every date below is relative to it


@pytest.fixture(autouse=True)
def _pinned(time_machine):
    time_machine.move_to(NOW, tick=False)


def _exemption(customer, number, status, days_ago):
    return TaxExemption.objects.create(
        customer=customer,
        jurisdictions=["US-CA"],
        exemption_type="resale",
        certificate_number=number,
        expires_on=(NOW + timedelta(days=300)).date(),
        certificate="exemptions/test.pdf",
        certificate_content_type="application/pdf",
        certificate_size=100,
        certificate_sha256="0" * 64,
        status=status,
        decided_at=None if status == ExemptionStatus.SUBMITTED else NOW - timedelta(days=days_ago - 1),
    )


def _current_number(response) -> str:
    return re.search(r"certificate (\S+) for", response.text).group(1)


@pytest.mark.parametrize(
    "statuses, expected",
    [
        # in the order they were submitted: (status, days ago it was decided)
        ([("submitted", 20), ("approved", 10), ("rejected", 1)], "C-0"),  # awaiting review wins, though older
        ([("approved", 10), ("rejected", 1)], "C-0"),  # else the approved one
        ([("rejected", 10), ("rejected", 1)], "C-1"),  # else the latest decision
    ],
)
def test_tax_page_shows_the_current_exemption(account, client_for, statuses, expected):
    for i, (status, days_ago) in enumerate(statuses):
        _exemption(account.customer, f"C-{i}", status, days_ago)
    response = client_for(account.owner).get(reverse("portal:tax", args=[account.customer.pk]))
    assert response.status_code == 200
    assert _current_number(response) == expected
    assert tax_exemption_current_for_customer(customer=account.customer).certificate_number == expected


def test_tax_page_beyond_its_history_still_finds_the_approved_exemption(account, client_for):
    _exemption(account.customer, "OLD-APPROVED", ExemptionStatus.APPROVED, 400)
    for i in range(HISTORY_ROWS):
        _exemption(account.customer, f"R-{i}", ExemptionStatus.REJECTED, 300 - i)
    client = client_for(account.owner)
    url = reverse("portal:tax", args=[account.customer.pk])
    response = client.get(url)
    assert _current_number(response) == "OLD-APPROVED"  # not in the 20 rows shown, still the current one
    assert response.text.count("R-") >= HISTORY_ROWS


@pytest.mark.usefixtures("page_cache_off")  # counts the page as computed
def test_tax_page_reads_the_exemptions_once(account, client_for):
    _exemption(account.customer, "A-1", ExemptionStatus.APPROVED, 30)
    _exemption(account.customer, "S-1", ExemptionStatus.SUBMITTED, 2)
    client = client_for(account.owner)
    url = reverse("portal:tax", args=[account.customer.pk])
    client.get(url)
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).status_code == 200
    assert sum('FROM "billing_taxexemption"' in q["sql"] for q in queries.captured_queries) == 1
