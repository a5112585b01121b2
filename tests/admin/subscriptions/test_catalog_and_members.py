"""Catalog edits are superuser-only and validated on save; support resends invitations (audited)."""

import pytest
from django.core import mail
from django.urls import reverse

from subscriptions.models import AuditEvent, Invitation, Package, Sku
from subscriptions.services.members import invitation_create
from tests.factories import CustomerFactory, priced_package

pytestmark = pytest.mark.django_db


def _form_data(response) -> dict:
    """The admin form exactly as rendered (fields and every inline's management form), ready to POST back."""
    data = {}
    form = response.context["adminform"].form
    for name in form.fields:
        value = form[name].value()
        if value is None or value is False:
            continue
        if isinstance(value, list | tuple):
            data[name] = [str(v) for v in value]
        else:
            data[name] = value
    for inline in response.context["inline_admin_formsets"]:
        formset = inline.formset
        for key, value in formset.management_form.initial.items():
            data[f"{formset.prefix}-{key}"] = value
        for index, inline_form in enumerate(formset.initial_forms):
            prefix = f"{formset.prefix}-{index}"
            data[f"{prefix}-id"] = inline_form.instance.pk
            for name in inline_form.fields:
                value = inline_form[name].value()
                if name in ("id", "DELETE") or value is None or value is False:
                    continue
                data[f"{prefix}-{name}"] = value
    return data


def test_superuser_edit_that_breaks_the_catalog_is_refused_with_specific_messages(super_client):
    package = priced_package(slug="team", name="Team")
    url = reverse("admin:subscriptions_package_change", args=[package.pk])
    data = _form_data(super_client.get(url))
    # Deactivate every USD price: a public package must have a price in each enabled currency.
    for key in [k for k in data if k.startswith("prices-") and k.endswith("-is_active")]:
        data.pop(key)
    data["tagline"] = "Changed tagline"

    response = super_client.post(url, data)

    assert response.status_code == 200
    errors = " ".join(response.context["adminform"].form.non_field_errors())
    assert "nothing was saved" in errors
    assert "Team" in errors
    assert "price" in errors.lower()
    package.refresh_from_db()
    assert package.tagline != "Changed tagline"
    assert package.prices.filter(is_active=True).count() == 4


def test_superuser_valid_catalog_edit_is_saved(super_client):
    package = priced_package(slug="team", name="Team")
    url = reverse("admin:subscriptions_package_change", args=[package.pk])
    data = _form_data(super_client.get(url))
    data["tagline"] = "For busy teams"

    response = super_client.post(url, data)

    assert response.status_code == 302, response.context["adminform"].form.errors
    package.refresh_from_db()
    assert package.tagline == "For busy teams"


def test_deactivating_a_sku_used_by_an_active_package_is_refused(super_client):
    priced_package(slug="team", name="Team")
    sku = Sku.objects.get(code="PLAT-BASE-M")
    url = reverse("admin:subscriptions_sku_change", args=[sku.pk])
    data = _form_data(super_client.get(url))
    data.pop("is_active", None)

    response = super_client.post(url, data)

    assert response.status_code == 200
    assert "nothing was saved" in " ".join(response.context["adminform"].form.non_field_errors())
    sku.refresh_from_db()
    assert sku.is_active


def test_new_invalid_package_is_not_created(super_client):
    url = reverse("admin:subscriptions_package_add")
    data = _form_data(super_client.get(url))
    data.update({"slug": "empty", "name": "Empty", "intervals": '["month"]', "features": "[]", "min_seats": 1})

    response = super_client.post(url, data)

    assert response.status_code == 200
    assert not Package.objects.filter(slug="empty").exists()


def test_support_resends_an_invitation_and_it_is_audited(
    support_client, support_user, django_capture_on_commit_callbacks
):
    customer = CustomerFactory()
    invitation = invitation_create(customer=customer, email="new.hire@example.test", invited_by=None)
    mail.outbox.clear()

    with django_capture_on_commit_callbacks(execute=True):
        response = support_client.post(reverse("admin:subscriptions_invitation_resend", args=[invitation.pk]))

    assert response.status_code == 302
    assert [m.to for m in mail.outbox] == [["new.hire@example.test"]]
    event = AuditEvent.objects.get(action="invitation.resent")
    assert event.actor == support_user


def test_billing_staff_cannot_resend_invitations(billing_client):
    invitation = invitation_create(customer=CustomerFactory(), email="new.hire@example.test", invited_by=None)

    response = billing_client.post(reverse("admin:subscriptions_invitation_resend", args=[invitation.pk]))

    assert response.status_code == 403
    assert not AuditEvent.objects.filter(action="invitation.resent").exists()
    assert Invitation.objects.get(pk=invitation.pk).expires_at == invitation.expires_at
