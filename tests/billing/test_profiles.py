import pytest

from billing.exceptions import BillingProfileInvalid, TaxIdInvalid
from billing.models import BillingProfile
from billing.services.profiles import billing_profile_get_or_create, billing_profile_update
from subscriptions.models import AuditEvent
from tests.factories import CustomerFactory

pytestmark = pytest.mark.django_db


def test_billing_profile_get_or_create_starts_from_customer():
    customer = CustomerFactory(legal_name="Umbrella Holdings LLC", country="US", region="TX")
    profile = billing_profile_get_or_create(customer=customer)
    assert (profile.legal_name, profile.country, profile.region, profile.payment_terms_days) == (
        "Umbrella Holdings LLC",
        "US",
        "TX",
        30,
    )
    assert profile.change_billing_mode == "invoice_now"


def test_billing_profile_update_validates_and_audits(customer, owner):
    profile = billing_profile_update(
        customer=customer, actor=owner, billing_emails="AP@acme.test, finance@acme.test", country="us"
    )
    assert profile.billing_emails == ["ap@acme.test", "finance@acme.test"]
    assert profile.country == "US"
    event = AuditEvent.objects.get(action="billing.profile_updated")
    assert event.actor == owner and "billing_emails" in event.after


@pytest.mark.parametrize(
    "fields, field, message",
    [
        ({"billing_emails": ["not-an-email"]}, "billing_emails", "not-an-email is not a valid e-mail address."),
        ({"country": "USA"}, "country", "two-letter"),
        ({"payment_terms_days": 400}, "payment_terms_days", "between 0 and 365"),
        ({"payment_terms_days": "soon"}, "payment_terms_days", "whole number"),
        ({"currency": "JPY"}, "currency", "USD, EUR"),
        ({"change_billing_mode": "whenever"}, "change_billing_mode", "invoiced now"),
    ],
)
def test_billing_profile_update_rejects_bad_input_and_writes_nothing(customer, fields, field, message):
    before = BillingProfile.objects.get(customer=customer).updated_at
    with pytest.raises(BillingProfileInvalid, match=message) as excinfo:
        billing_profile_update(customer=customer, **fields)
    assert excinfo.value.field == field
    assert BillingProfile.objects.get(customer=customer).updated_at == before


def test_billing_profile_eu_vat_id_is_checked_with_checksum():
    customer = CustomerFactory(country="DE", region="", currency="EUR")
    profile = billing_profile_update(customer=customer, tax_id="136 695 976")  # prefix added for a German customer
    assert (profile.tax_id, profile.tax_id_valid) == ("DE136695976", True)
    with pytest.raises(TaxIdInvalid, match="check digit is wrong"):
        billing_profile_update(customer=customer, tax_id="DE136695977")
    with pytest.raises(TaxIdInvalid, match="VAT number of FR, but the billing country is DE"):
        billing_profile_update(customer=customer, tax_id="FR40303265045")
    assert BillingProfile.objects.get(customer=customer).tax_id == "DE136695976"


def test_billing_profile_us_ein_is_validated(customer):
    assert billing_profile_update(customer=customer, tax_id="04-2103594").tax_id == "042103594"
    with pytest.raises(TaxIdInvalid):
        billing_profile_update(customer=customer, tax_id="12")


# The service refuses staff-only fields from customers whatever the caller (issue 15): the portal form never sends
# them, the API did, and both call this.
@pytest.mark.parametrize("field,value", [("payment_terms_days", 60), ("currency", "EUR")])
def test_billing_profile_update_staff_only_fields(db, field, value):
    from django.contrib.auth.models import Group

    from billing.exceptions import BillingFieldNotEditable
    from tests.factories import CustomerFactory, UserFactory

    customer = CustomerFactory(country="US", currency="USD")
    customer_user = UserFactory()
    with pytest.raises(BillingFieldNotEditable):
        billing_profile_update(customer=customer, actor=customer_user, **{field: value})
    with pytest.raises(BillingFieldNotEditable):
        billing_profile_update(customer=customer, actor=None, actor_kind="api", **{field: value})
    support = UserFactory(is_staff=True)
    support.groups.add(Group.objects.get(name="Support agents"))
    with pytest.raises(BillingFieldNotEditable):
        billing_profile_update(customer=customer, actor=support, **{field: value})
    billing_staff = UserFactory(is_staff=True)
    billing_staff.groups.add(Group.objects.get(name="Billing staff"))
    assert getattr(billing_profile_update(customer=customer, actor=billing_staff, **{field: value}), field) == value
