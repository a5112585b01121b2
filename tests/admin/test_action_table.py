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
from portal.models import ApiKey
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


# --- real behaviour: bulk actions through the changelist POST, as the role that may run them -------------------


def _post_action(client, model: str, action: str, pks) -> None:
    app, name = model.split(".")
    response = client.post(
        reverse(f"admin:{app}_{name}_changelist"), {"action": action, "_selected_action": [str(pk) for pk in pks]}
    )
    assert response.status_code == 302, response.content[:500]


@pytest.mark.django_db
def test_revoke_selected_api_keys_revokes_through_the_service(support_client, support_user):
    customer = customer_with_subscription()
    owner = customer.memberships.first().user
    key, _secret = api_key_create(customer=customer, name="CI", role="read_only", actor=owner)
    _post_action(support_client, "portal.apikey", "revoke_selected", [key.pk])
    key = ApiKey.objects.get(pk=key.pk)
    assert key.revoked_at is not None
    assert key.revoked_by == support_user


@pytest.mark.django_db
def test_retry_selected_stripe_events_runs_the_retry_service(billing_client, billing_user):
    event = StripeEvent.objects.create(
        stripe_event_id="evt_table_1",
        type="unknown.event",
        object_id="",
        stripe_created=1_700_000_000,
        payload={"id": "evt_table_1", "type": "unknown.event", "data": {"object": {}}},
        status=StripeEventStatus.FAILED,
        attempts=1,
        error="boom",
    )
    _post_action(billing_client, "billing.stripeevent", "retry_selected", [event.pk])
    # The service audits the retry (who, which event) and processes the event again.
    retried = AuditEvent.objects.get(action="stripe_event.retried", object_id=str(event.pk))
    assert retried.actor == billing_user


def test_docs_backoffice_lists_the_table_as_it_is():
    from pathlib import Path

    from django.conf import settings

    text = (Path(settings.BASE_DIR) / "docs" / "backoffice.md").read_text()
    start, end = "<!-- admin-actions:start -->\n", "\n<!-- admin-actions:end -->"
    shown = text[text.index(start) + len(start) : text.index(end)]
    assert shown == actions_markdown(ADMIN_ACTIONS), "docs/backoffice.md: paste actions_markdown(ADMIN_ACTIONS)"
