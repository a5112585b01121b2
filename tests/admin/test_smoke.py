"""Every admin page renders for every role with the demo data: 200 where the role may look, 403 where it may not."""

import pytest
from django.contrib import admin
from django.core.management import call_command
from django.urls import reverse

pytestmark = pytest.mark.django_db


@pytest.fixture
def demo(db):
    call_command("seed_demo", stdout=open("/dev/null", "w"))  # noqa: SIM115


@pytest.mark.parametrize(
    ("client_fixture", "user_fixture"),
    [("support_client", "support_user"), ("billing_client", "billing_user"), ("super_client", "superuser")],
)
def test_every_changelist_and_change_page_renders_or_is_forbidden(request, demo, client_fixture, user_fixture):
    client = request.getfixturevalue(client_fixture)
    user = request.getfixturevalue(user_fixture)
    assert client.get(reverse("admin:index")).status_code == 200
    for model in admin.site._registry:
        opts = model._meta
        allowed = user.has_perm(f"{opts.app_label}.view_{opts.model_name}") or user.has_perm(
            f"{opts.app_label}.change_{opts.model_name}"
        )
        changelist = client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"))
        assert changelist.status_code == (200 if allowed else 403), (user.email, opts.label)
        obj = model._default_manager.first()
        if obj is not None:
            change = client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk]))
            assert change.status_code == (200 if allowed else 403), (user.email, opts.label)


def test_admin_index_shows_each_role_its_work_queues(billing_client, support_client, demo):
    billing = billing_client.get(reverse("admin:index"))
    support = support_client.get(reverse("admin:index"))

    assert "Invoices held for review" in billing.text
    assert "Tax exemptions awaiting review" in billing.text
    assert "Invoices held for review" not in support.text
    assert "Tax exemptions awaiting review" not in support.text
    assert "Customers with failed provisioning" in support.text
