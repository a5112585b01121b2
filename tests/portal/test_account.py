"""API keys page and the post-change effort survey."""

import re

import pytest
from django.urls import reverse

from portal.models import ApiKey, EffortSurveyResponse
from portal.services.api_keys import api_key_authenticate
from subscriptions.services.changes import subscription_change_seats_apply

pytestmark = pytest.mark.django_db


def test_api_key_is_shown_once_then_only_its_prefix(account, client_for):
    client = client_for(account.owner)
    url = reverse("portal:api_keys", args=[account.customer.pk])
    created = client.post(url, {"name": "Accounting sync", "role": "read_only"})
    assert created.status_code == 201
    assert "no-store" in created["Cache-Control"]
    secret = re.search(r'id="new-key" value="([^"]+)"', created.text).group(1)
    assert api_key_authenticate(secret=secret).name == "Accounting sync"
    listing = client.get(url)
    assert "Accounting sync" in listing.text and secret not in listing.text
    assert ApiKey.objects.get().prefix in listing.text


def test_api_key_without_a_name_is_refused_next_to_the_field(account, client_for):
    response = client_for(account.owner).post(
        reverse("portal:api_keys", args=[account.customer.pk]), {"name": " ", "role": "admin"}
    )
    assert response.status_code == 422
    assert 'id="key-name-error"' in response.text
    assert ApiKey.objects.count() == 0


def test_api_key_revoke_and_another_customers_key_is_404(account, other_account, client_for):
    client = client_for(account.owner)
    client.post(reverse("portal:api_keys", args=[account.customer.pk]), {"name": "CI", "role": "admin"})
    key = ApiKey.objects.get()
    response = client.post(reverse("portal:api_key_revoke", args=[account.customer.pk, key.pk]), follow=True)
    assert "is revoked" in response.text
    key.refresh_from_db()
    assert key.revoked_at is not None
    client_for(other_account.owner).post(
        reverse("portal:api_keys", args=[other_account.customer.pk]), {"name": "Theirs", "role": "admin"}
    )
    theirs = ApiKey.objects.get(name="Theirs")
    assert client.post(reverse("portal:api_key_revoke", args=[account.customer.pk, theirs.pk])).status_code == 404


def test_survey_after_a_change_stores_one_answer(account, client_for):
    change = subscription_change_seats_apply(
        subscription_id=account.subscription.pk, seats=11, expected_version=account.subscription.version, actor=None
    )
    client = client_for(account.billing_admin)
    url = reverse("portal:survey", args=[account.customer.pk])
    page = client.get(url, {"change": change.pk})
    assert "How easy was that?" in page.text and 'type="radio" name="score" value="7"' in page.text
    assert client.post(url, {"change": change.pk, "score": "6", "comment": "Smooth"}).status_code == 302
    assert client.post(url, {"change": change.pk, "score": "2"}).status_code == 302  # double submit
    answer = EffortSurveyResponse.objects.get()
    assert (answer.score, answer.change_kind, answer.comment) == (6, "seats", "Smooth")


def test_survey_refuses_out_of_range_scores_and_other_customers_changes(account, other_account, client_for):
    client = client_for(account.owner)
    url = reverse("portal:survey", args=[account.customer.pk])
    bad = client.post(url, {"score": "9"})
    assert bad.status_code == 422 and "from 1 (very hard) to 7 (very easy)" in bad.text
    theirs = subscription_change_seats_apply(
        subscription_id=other_account.subscription.pk,
        seats=6,
        expected_version=other_account.subscription.version,
        actor=None,
    )
    assert client.get(url, {"change": theirs.pk}).status_code == 404
    assert EffortSurveyResponse.objects.count() == 0


def test_a_confirmed_change_leads_to_the_survey(account, client_for):
    client = client_for(account.owner)
    preview = client.post(
        reverse("portal:change_preview_seats", args=[account.customer.pk]),
        {"subscription_id": account.subscription.pk, "seats": "11"},
    ).text
    fields = {
        k: re.search(rf'name="{k}" value="([^"]*)"', preview).group(1)
        for k in ("version", "amount_due_now_minor", "idempotency_key", "seats", "subscription_id")
    }
    response = client.post(reverse("portal:change_apply_seats", args=[account.customer.pk]), fields)
    assert response["Location"].startswith(reverse("portal:survey", args=[account.customer.pk]))
