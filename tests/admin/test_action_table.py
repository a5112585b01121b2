"""The table of admin actions (`ADMIN_ACTIONS` of billing, subscriptions and portal) is the whole truth: every bulk
action, custom admin URL, button and overridden save/add of our admins has one row naming its form, its service and
what authorises it; each row's service is importable and the action's code reaches it; each policy action is in the
one policy table. Adding an action without its row (or leaving a row behind) fails here."""

import importlib
import inspect
import types

import pytest
from django.contrib import admin
from django.contrib.auth.models import Permission
from django.urls import reverse

from billing.admin import ADMIN_ACTIONS as BILLING_ACTIONS
from billing.models import StripeEvent, StripeEventStatus
from portal.admin import ADMIN_ACTIONS as PORTAL_ACTIONS
from portal.services.api_keys import api_key_create
from subscriptions import policy
from subscriptions.admin import ADMIN_ACTIONS as SUBSCRIPTIONS_ACTIONS
from subscriptions.admin.actions import actions_markdown
from subscriptions.models import AuditEvent
from tests.admin.helpers import customer_with_subscription

ADMIN_ACTIONS = (*SUBSCRIPTIONS_ACTIONS, *BILLING_ACTIONS, *PORTAL_ACTIONS)
OURS = ("subscriptions.", "billing.", "portal.")
STANDARD_URLS = ("changelist", "add", "history", "delete", "change")
# URLs our admins inherit from Django's own classes (not actions of ours).
DJANGO_URLS = {"auth_user_password_change"}
OVERRIDES = ("save_model", "add_view")
ADMIN_MODULES = ("billing.admin", "subscriptions.admin", "portal.admin")


def _our_admins():
    for model, model_admin in admin.site._registry.items():
        if type(model_admin).__module__.startswith(OURS):
            yield model._meta.label_lower, model_admin


def _registered() -> set[tuple[str, str]]:
    """(model, name) of every bulk action, custom URL and overridden save/add the registered admins have."""
    found = set()
    for label, model_admin in _our_admins():
        found |= {(label, name) for name in model_admin.actions or () if name != "delete_selected"}
        app, model = label.split(".")
        standard = {f"{app}_{model}_{suffix}" for suffix in STANDARD_URLS} | DJANGO_URLS
        found |= {(label, url.name) for url in model_admin.get_urls() if url.name and url.name not in standard}
        for name in OVERRIDES:
            for cls in type(model_admin).__mro__:
                if name in vars(cls) and cls.__module__.startswith(OURS):
                    found.add((label, name))
    return found


def _in_table() -> set[tuple[str, str]]:
    return {(row.model, row.name.split(":")[0]) for row in ADMIN_ACTIONS}


def test_every_registered_action_has_a_row_and_every_row_an_action():
    registered, table = _registered(), _in_table()
    assert registered - table == set(), "admin actions without a row in ADMIN_ACTIONS"
    assert table - registered == set(), "rows of ADMIN_ACTIONS no registered admin offers"
    assert len({(row.model, row.name) for row in ADMIN_ACTIONS}) == len(ADMIN_ACTIONS), "a row twice"


def _service(path: str):
    module, name = path.rsplit(".", 1)
    return getattr(importlib.import_module(module), name)


def _implementation(row):
    model_admin = next(m for label, m in _our_admins() if label == row.model)
    if row.run is not None:  # a button: the view dispatches to it by name
        return row.run, model_admin
    name = row.name.split(":")[0]
    urls = {url.name: url.callback for url in model_admin.get_urls() if url.name}
    if name in urls:
        return inspect.unwrap(urls[name]), model_admin
    return getattr(type(model_admin), name), model_admin


def _reaches(function, target, model_admin, seen=None) -> bool:
    """Does `function`'s code reach `target` — directly, through a module attribute, a closure, a method of its
    admin, or a helper of an admin module (followed)?"""
    seen = seen if seen is not None else set()
    function = getattr(function, "__func__", function)
    if function is target:
        return True
    if not isinstance(function, types.FunctionType) or function in seen:
        return False
    seen.add(function)
    names, codes = set(), [function.__code__]
    while codes:
        code = codes.pop()
        names |= set(code.co_names)
        codes += [const for const in code.co_consts if isinstance(const, types.CodeType)]
    candidates = [cell.cell_contents for cell in function.__closure__ or () if cell.cell_contents is not None]
    for name in names:
        for namespace in (function.__globals__, vars(type(model_admin))):
            value = namespace.get(name)
            if isinstance(value, types.ModuleType):
                candidates += [getattr(value, attr, None) for attr in names]
            elif value is not None:
                candidates.append(value)
        candidates.append(getattr(type(model_admin), name, None))
    for candidate in candidates:
        if candidate is target:
            return True
        inner = getattr(candidate, "__func__", candidate)
        ours = isinstance(inner, types.FunctionType) and inner.__module__.startswith(ADMIN_MODULES)
        if ours and _reaches(inner, target, model_admin, seen):
            return True
    return False


@pytest.mark.parametrize("row", ADMIN_ACTIONS, ids=lambda row: f"{row.model}:{row.name}")
def test_each_action_calls_its_service(row):
    function, model_admin = _implementation(row)
    if row.service is None:  # a page that only reads: it calls no service of ours
        return
    service = _service(row.service)
    assert callable(service)
    assert service.__module__.split(".")[1] == "services", f"{row.service} is not a service function"
    assert _reaches(function, service, model_admin), f"{row.model}:{row.name} does not call {row.service}"


@pytest.mark.django_db
@pytest.mark.parametrize("row", ADMIN_ACTIONS, ids=lambda row: f"{row.model}:{row.name}")
def test_each_action_is_authorised_by_the_policy_or_a_model_permission(row):
    assert (row.policy is None) != (row.permission is None), "name the policy action or the permission, not both"
    if row.policy is not None:
        assert row.policy in policy.POLICY
        assert policy.rule_for(row.policy).staff_permission, f"{row.policy} is not a staff action"
    elif row.permission != "superuser":
        app, codename = row.permission.split(".")
        assert Permission.objects.filter(content_type__app_label=app, codename=codename).exists(), row.permission


def test_each_form_is_a_form():
    from django import forms

    for row in ADMIN_ACTIONS:
        assert row.form is None or issubclass(row.form, forms.BaseForm), row


# --- real behaviour: every bulk action through the changelist POST, as a role that may run it ------------------
# Each builder makes a real row and returns (its pk, the audit action its service writes, or a check of its effect);
# the test posts the changelist action as that role and finds what the service wrote, naming the staff member.


def _invitation(world):
    from subscriptions.services.members import invitation_create

    invitation = invitation_create(customer=world["customer"], email="later@acme.test", invited_by=None)
    return invitation.pk, "invitation.resent"


def _entitlement(world):
    from subscriptions.models import Entitlement

    entitlement = Entitlement.objects.create(
        customer=world["customer"], feature_key="table.probe", value_kind="bool", desired_value=True, state="failed"
    )
    return entitlement.pk, "entitlements.retry_requested"


def _invoice(world):
    from billing.models import Invoice
    from billing.services.invoices import DraftLine, invoice_draft_create, invoice_finalize
    from tests.factories import BillingProfileFactory, TaxRateFactory

    customer = world["customer"]
    TaxRateFactory()
    BillingProfileFactory(customer=customer, billing_emails=["ap@acme.test"])
    draft = invoice_draft_create(
        customer=customer, currency=customer.currency, lines=[DraftLine(description="Consulting", unit_amount_minor=9)]
    )
    invoice = invoice_finalize(invoice_id=draft.pk)  # held: a one-off invoice is reviewed before it is issued

    def issued_by(user) -> bool:  # the service moves it to open and logs the transition with the staff member
        return (
            Invoice.objects.get(pk=invoice.pk).status == "open" and invoice.status_changes.filter(actor=user).exists()
        )

    return invoice.pk, issued_by


def _stripe_event(world):
    event = StripeEvent.objects.create(
        stripe_event_id="evt_table_1",
        type="unknown.event",
        stripe_created=1_700_000_000,
        payload={"id": "evt_table_1", "type": "unknown.event", "data": {"object": {}}},
        status=StripeEventStatus.FAILED,
    )
    return event.pk, "stripe_event.retried"


def _discount(world):
    from billing.services.discounts import discount_redeem
    from tests.admin.helpers import live_subscription
    from tests.billing.discount_support import make_coupon

    customer = world["customer"]
    discount = discount_redeem(
        customer=customer, subscription=live_subscription(customer), coupon_id=make_coupon().pk, actor=None
    )
    return discount.pk, "discount.ended"


def _endpoint(world):
    from django.test import override_settings

    from subscriptions.services.webhooks import webhook_endpoint_create

    with override_settings(WEBHOOKS_ALLOW_LOOPBACK_HTTP=True):
        endpoint = webhook_endpoint_create(
            customer=world["customer"], url="http://127.0.0.1:9/table", event_types=["invoice.issued"], actor=None
        )
    return endpoint.pk


def _delivery(world):
    from subscriptions.models import WebhookDelivery
    from subscriptions.services.webhooks import webhook_endpoint_send_test

    webhook_endpoint_send_test(endpoint_id=_endpoint(world), actor=None)
    return WebhookDelivery.objects.get().pk, "webhook_delivery.resent"


def _api_key(world):
    customer = world["customer"]
    key, _secret = api_key_create(customer=customer, name="CI", role="read_only", actor=None)
    return key.pk, "api_key.revoked"


def _service_token(world):
    from portal.services.api_keys import service_token_create

    token, _secret = service_token_create(name="Sync", scopes=["entitlements:read"], actor=None)
    return token.pk, "service_token.revoked"


BULK = {
    ("subscriptions.invitation", "resend_selected"): ("support", _invitation),
    ("subscriptions.entitlement", "retry_selected"): ("support", _entitlement),
    ("subscriptions.webhookendpoint", "send_test"): ("support", lambda w: (_endpoint(w), "webhook_endpoint.test_sent")),
    ("subscriptions.webhookendpoint", "rotate_secret"): (
        "support",
        lambda w: (_endpoint(w), "webhook_endpoint.secret_rotated"),
    ),
    ("subscriptions.webhookdelivery", "resend"): ("support", _delivery),
    ("billing.invoice", "approve_and_issue_selected"): ("billing", _invoice),
    ("billing.stripeevent", "retry_selected"): ("billing", _stripe_event),
    ("billing.discount", "end_at_period_end"): ("billing", _discount),
    ("portal.apikey", "revoke_selected"): ("support", _api_key),
    ("portal.servicetoken", "revoke_selected"): ("super", _service_token),
}


def test_every_bulk_action_has_a_real_run_below():
    bulk = {
        (label, name)
        for label, model_admin in _our_admins()
        for name in model_admin.actions or ()
        if name != "delete_selected"
    }
    assert bulk == set(BULK)


@pytest.mark.django_db
@pytest.mark.parametrize("key", list(BULK), ids=lambda key: f"{key[0]}:{key[1]}")
def test_each_bulk_action_runs_its_service_for_the_role_that_may(request, key, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    role, build = BULK[key]
    client = request.getfixturevalue(f"{role}_client")
    user = request.getfixturevalue("superuser" if role == "super" else f"{role}_user")
    pk, effect = build({"customer": customer_with_subscription()})
    _post_action(client, *key, [pk])
    if callable(effect):
        assert effect(user), key
    else:
        assert AuditEvent.objects.filter(action=effect, actor=user).exists(), (
            f"{key}: no {effect} audit row by {user.email}",
            list(AuditEvent.objects.values_list("action", "actor__email")),
        )


def _post_action(client, model: str, action: str, pks) -> None:
    app, name = model.split(".")
    response = client.post(
        reverse(f"admin:{app}_{name}_changelist"), {"action": action, "_selected_action": [str(pk) for pk in pks]}
    )
    assert response.status_code == 302, response.content[:500]


def test_docs_backoffice_lists_the_table_as_it_is():
    from pathlib import Path

    from django.conf import settings

    text = (Path(settings.BASE_DIR) / "docs" / "backoffice.md").read_text()
    start, end = "<!-- admin-actions:start -->\n", "\n<!-- admin-actions:end -->"
    shown = text[text.index(start) + len(start) : text.index(end)]
    assert shown == actions_markdown(ADMIN_ACTIONS), "docs/backoffice.md: paste actions_markdown(ADMIN_ACTIONS)"
