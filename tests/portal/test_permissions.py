"""The role-permission mechanism, page by page and role by role."""

import re

import pytest
from django.urls import reverse

from portal.permissions import TEMPLATE_NAMES, customer_view, role_can
from subscriptions import policy
from subscriptions.models import Role
from tests.factories import MembershipFactory

pytestmark = pytest.mark.django_db

OK, FORBIDDEN = 200, 403

# url name -> expected status for owner, billing admin, member. Every customer page of the portal is listed here.
PAGES = {
    "customer_dashboard": (OK, OK, OK),
    "enablement": (OK, OK, OK),
    "invoices": (OK, OK, FORBIDDEN),
    "activity": (OK, FORBIDDEN, FORBIDDEN),
    "package": (OK, FORBIDDEN, FORBIDDEN),
    "seats": (OK, OK, OK),
    "api_keys": (OK, FORBIDDEN, FORBIDDEN),
    "survey": (OK, OK, OK),
    "billing_details": (OK, OK, FORBIDDEN),
    "tax": (OK, OK, FORBIDDEN),
}


def _url(name, customer_id):
    return reverse(f"portal:{name}", args=[customer_id])


@pytest.mark.parametrize("name", sorted(PAGES))
@pytest.mark.parametrize("role_index,role", list(enumerate(["owner", "billing_admin", "member"])))
def test_customer_view_answers_each_role_as_the_table_says(account, client_for, name, role_index, role):
    response = client_for(account.user(role)).get(_url(name, account.customer.pk))
    assert response.status_code == PAGES[name][role_index]
    if response.status_code == FORBIDDEN:
        assert "This page is for other roles" in response.text
        assert "ask an owner" in response.text.lower()


@pytest.mark.parametrize("name", sorted(PAGES))
def test_customer_view_answers_404_for_a_customer_the_user_is_not_in(account, other_account, client_for, name):
    response = client_for(account.owner).get(_url(name, other_account.customer.pk))
    assert response.status_code == 404


@pytest.mark.parametrize("name", sorted(PAGES))
def test_customer_view_sends_anonymous_visitors_to_sign_in(account, client, name):
    response = client.get(_url(name, account.customer.pk))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("portal:login"))


def test_role_table_owners_everything_billing_admins_billing_members_own_seat_only():
    owner, billing_admin, member = (policy.actions_for_role(role) for role in Role.values)
    assert owner >= billing_admin >= member
    for name in ("billing", "invoices", "tax", "payment_methods", "seats"):
        assert role_can(Role.BILLING_ADMIN, TEMPLATE_NAMES[name])
        assert not role_can(Role.MEMBER, TEMPLATE_NAMES[name])
    for name in ("package", "members", "api_keys", "activity", "invite", "invite_owner"):
        assert role_can(Role.OWNER, TEMPLATE_NAMES[name])
        assert not role_can(Role.BILLING_ADMIN, TEMPLATE_NAMES[name])
    assert member == {policy.Action.ACCOUNT_VIEW}


def test_customer_view_refuses_an_unknown_capability():
    with pytest.raises(ValueError):
        customer_view("everything")


def test_dashboard_redirect_remembers_the_last_customer_and_switcher_lists_both(account, other_account, client_for):
    MembershipFactory(customer=other_account.customer, user=account.owner, role=Role.MEMBER)
    client = client_for(account.owner)
    first = client.get(reverse("portal:dashboard"))
    assert first["Location"] == _url("customer_dashboard", account.customer.pk)  # alphabetical: Acme first

    page = client.get(_url("customer_dashboard", other_account.customer.pk))
    assert page.status_code == 200
    assert "Globex Corp" in page.text and "switch account" in page.text
    assert f'href="{_url("customer_dashboard", account.customer.pk)}"' in page.text

    again = client.get(reverse("portal:dashboard"))
    assert again["Location"] == _url("customer_dashboard", other_account.customer.pk)


def test_role_in_one_customer_does_not_carry_to_another(account, other_account, client_for):
    # Owner of Acme, only a member of Globex: Globex's billing pages stay closed.
    MembershipFactory(customer=other_account.customer, user=account.owner, role=Role.MEMBER)
    page = client_for(account.owner).get(_url("customer_dashboard", other_account.customer.pk))
    assert "Member" in page.text
    assert "Estimated amount" not in page.text


def test_a_foreign_customer_page_is_the_same_404_as_a_missing_one(account, other_account, client_for):
    client = client_for(account.owner)
    foreign = client.get(_url("invoices", other_account.customer.pk))
    missing = client.get(_url("invoices", 987654321))
    assert foreign.status_code == missing.status_code == 404

    def page(response):  # the CSRF token is masked afresh on every response; nothing else may differ
        return re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "", response.content.decode())

    assert page(foreign) == page(missing)
