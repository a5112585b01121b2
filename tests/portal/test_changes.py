"""Preview → confirm for seats, package, add-ons, cancel and undo, as the portal drives them."""

import re

import pytest
from django.urls import reverse

from subscriptions.models import Subscription, SubscriptionAddon
from subscriptions.services.changes import subscription_change_seats_apply
from tests.factories import priced_package

pytestmark = pytest.mark.django_db


def _post(client, account, name, data, htmx=True):
    headers = {"HX-Request": "true"} if htmx else {}
    payload = {"subscription_id": account.subscription.pk, **data}
    return client.post(reverse(f"portal:{name}", args=[account.customer.pk]), payload, headers=headers)


def _hidden(html, name):
    return re.search(rf'name="{name}" value="([^"]*)"', html).group(1)


def _confirm(client, account, kind, preview_html, htmx=False):
    fields = {
        k: _hidden(preview_html, k)
        for k in ("version", "amount_due_now_minor", "idempotency_key")
        + {"seats": ("seats",), "package": ("package_slug", "interval"), "cancel": ("reason",)}.get(kind, ())
        + (("addon_slug",) if kind.startswith("addon") else ())
    }
    return _post(client, account, f"change_apply_{kind}", fields, htmx=htmx)


def test_seats_preview_shows_lines_amount_due_now_and_new_recurring_amount(account, client_for):
    client = client_for(account.billing_admin)
    response = _post(client, account, "change_preview_seats", {"seats": "12"})
    assert response.status_code == 200
    html = response.text
    assert 'id="change-preview"' in html and "<html" not in html  # an htmx fragment
    assert "Due now" in html and "New recurring amount" in html
    # 10 → 12 seats, 5 included: recurring 100.00 + 7 × 10.00
    assert "$170.00" in html
    assert "Immediately" in html
    assert Subscription.objects.get(pk=account.subscription.pk).seats == 10  # a preview writes nothing


def test_seats_confirm_applies_exactly_the_preview_and_goes_on(account, client_for):
    client = client_for(account.owner)
    preview = _post(client, account, "change_preview_seats", {"seats": "12"}).text
    applied = _confirm(client, account, "seats", preview)
    assert applied.status_code == 302
    assert Subscription.objects.get(pk=account.subscription.pk).seats == 12
    # A double-click re-sends the same idempotency key: nothing is applied twice.
    again = _confirm(client, account, "seats", preview)
    assert again.status_code == 302
    subscription = Subscription.objects.get(pk=account.subscription.pk)
    assert subscription.seats == 12 and subscription.changes.count() == 1


def test_seats_confirm_with_a_stale_preview_explains_and_shows_the_new_numbers(account, client_for):
    client = client_for(account.owner)
    preview = _post(client, account, "change_preview_seats", {"seats": "12"}).text
    # Someone else changes the seats in between.
    subscription_change_seats_apply(
        subscription_id=account.subscription.pk, seats=15, expected_version=account.subscription.version, actor=None
    )
    stale = _confirm(client, account, "seats", preview)
    assert stale.status_code == 409
    assert "Something changed since you saw the preview, so nothing was applied." in stale.text
    assert "Here are the current numbers" in stale.text
    assert Subscription.objects.get(pk=account.subscription.pk).seats == 15
    assert _hidden(stale.text, "version") != _hidden(preview, "version")


def test_seats_preview_errors_are_specific_and_keep_nothing_half_done(account, client_for):
    client = client_for(account.owner)
    not_a_number = _post(client, account, "change_preview_seats", {"seats": "lots"})
    assert not_a_number.status_code == 422
    assert "whole number" in not_a_number.text
    below_assigned = _post(client, account, "change_preview_seats", {"seats": "1"})
    assert below_assigned.status_code == 422
    assert 'role="alert"' in below_assigned.text


def test_seats_page_offers_live_preview_to_billing_roles_and_own_seat_to_members(account, client_for):
    url = reverse("portal:seats", args=[account.customer.pk])
    admin_page = client_for(account.billing_admin).get(url)
    assert 'hx-post="' in admin_page.text and "Change the number of seats" in admin_page.text
    assert "2 of 10 seats in use" in admin_page.text
    member_page = client_for(account.member).get(url)
    assert member_page.status_code == 200
    assert "You hold a seat." in member_page.text
    assert "Change the number of seats" not in member_page.text
    assert account.owner.email not in member_page.text


def test_a_member_cannot_preview_or_apply_a_seat_change(account, client_for):
    client = client_for(account.member)
    assert _post(client, account, "change_preview_seats", {"seats": "12"}).status_code == 403
    assert _post(client, account, "change_apply_seats", {"seats": "12", "version": "1"}).status_code == 403


def test_a_billing_admin_cannot_change_the_package(account, client_for):
    client = client_for(account.billing_admin)
    response = _post(client, account, "change_preview_package", {"package_slug": "team", "interval": "year"})
    assert response.status_code == 403


def test_another_customers_subscription_is_404(account, other_account, client_for):
    client = client_for(account.owner)
    response = client.post(
        reverse("portal:change_preview_seats", args=[account.customer.pk]),
        {"subscription_id": other_account.subscription.pk, "seats": "7"},
    )
    assert response.status_code == 404


def test_package_page_compares_and_upgrade_previews_every_line_then_applies(account, client_for):
    business = priced_package(slug="business", name="Business")
    business.prices.filter(interval="month").update(flat_amount_minor=30_000)
    account.subscription.package.change_targets.add(business)
    client = client_for(account.owner)
    page = client.get(reverse("portal:package", args=[account.customer.pk]))
    assert page.status_code == 200
    assert "Business" in page.text and "Preview Business" in page.text
    assert "save" in page.text  # annual saving shown
    preview = _post(client, account, "change_preview_package", {"package_slug": "business", "interval": "month"})
    assert preview.status_code == 200, preview.text
    assert "Business" in preview.text and "Due now" in preview.text
    applied = _confirm(client, account, "package", preview.text)
    assert applied.status_code == 302
    assert Subscription.objects.get(pk=account.subscription.pk).package == business


def test_cancel_asks_for_a_reason_then_cancels_at_period_end_and_can_be_undone(account, client_for):
    client = client_for(account.owner)
    no_reason = _post(client, account, "change_preview_cancel", {"reason": "  "})
    assert no_reason.status_code == 422 and "tell us why" in no_reason.text
    preview = _post(client, account, "change_preview_cancel", {"reason": "Too expensive for us"})
    assert preview.status_code == 200
    assert _confirm(client, account, "cancel", preview.text).status_code == 302
    subscription = Subscription.objects.get(pk=account.subscription.pk)
    assert subscription.cancel_at_period_end
    page = client.get(reverse("portal:package", args=[account.customer.pk]))
    assert "Undo the cancellation" in page.text and "Too expensive for us" in page.text
    undo = _post(client, account, "change_preview_reactivate", {})
    assert _confirm(client, account, "reactivate", undo.text).status_code == 302
    assert not Subscription.objects.get(pk=account.subscription.pk).cancel_at_period_end


def test_addon_add_preview_and_confirm(account, client_for):
    addon = priced_package(slug="premium-support", name="Premium support", is_addon=True)
    addon.addon_for.add(account.subscription.package)
    client = client_for(account.owner)
    page = client.get(reverse("portal:package", args=[account.customer.pk]))
    assert "Premium support" in page.text
    preview = _post(client, account, "change_preview_addon_add", {"addon_slug": "premium-support"})
    assert preview.status_code == 200, preview.text
    assert _confirm(client, account, "addon_add", preview.text).status_code == 302
    assert SubscriptionAddon.objects.filter(subscription=account.subscription, ended_at__isnull=True).count() == 1


def test_preview_without_javascript_renders_a_whole_page(account, client_for):
    response = _post(client_for(account.owner), account, "change_preview_seats", {"seats": "11"}, htmx=False)
    assert response.status_code == 200
    assert "<html" in response.text and "Confirm seats" in response.text


def test_every_self_service_change_ends_on_the_effort_survey(account, client_for):
    from portal.models import EffortSurveyResponse

    business = priced_package(slug="business", name="Business")
    account.subscription.package.change_targets.add(business)
    addon = priced_package(slug="premium-support", name="Premium support", is_addon=True)
    addon.addon_for.add(account.subscription.package, business)
    client = client_for(account.owner)
    steps = [
        ("seats", {"seats": "12"}),
        ("package", {"package_slug": "business", "interval": "month"}),
        ("addon_add", {"addon_slug": "premium-support"}),
        ("cancel", {"reason": "Moving to another tool"}),
    ]
    for kind, data in steps:
        preview = _post(client, account, f"change_preview_{kind}", data)
        assert preview.status_code == 200, (kind, preview.text)
        applied = _confirm(client, account, kind, preview.text)
        survey_url = applied["Location"]
        assert survey_url.startswith(reverse("portal:survey", args=[account.customer.pk]) + "?change="), kind
        survey = client.get(survey_url)
        assert "How easy was that?" in survey.text, kind
        change_id = survey_url.rsplit("=", 1)[1]
        assert client.post(survey_url, {"change": change_id, "score": "5"}).status_code == 302
    assert sorted(EffortSurveyResponse.objects.values_list("change_kind", flat=True)) == sorted(
        ["seats", "package", "add_addon", "cancel"]
    )
