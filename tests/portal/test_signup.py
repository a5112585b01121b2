"""Public pricing and self-serve sign-up."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from billing.models import BillingProfile, TaxExemption
from subscriptions.models import Customer, Membership, Role, SeatAssignment, Subscription, SubscriptionStatus, User
from tests.clock import in_years
from tests.factories import UserFactory, priced_package

EXPIRES = in_years(3)  # a certificate's last valid day, years from today (tests/clock.py)

pytestmark = pytest.mark.django_db


@pytest.fixture
def catalog(db):
    team = priced_package(slug="team", name="Team", trial_days=14, min_seats=3)
    business = priced_package(slug="business", name="Business", display_order=2)
    business.prices.filter(interval="month").update(flat_amount_minor=50_000)
    return team, business


def _signup_data(**overrides):
    data = {
        "package": "team",
        "interval": "month",
        "seats": "5",
        "start": "trial",
        "company_name": "Hooli",
        "country": "US",
        "region": "NY",
        "currency": "USD",
        "name": "Gavin Belson",
        "email": "gavin@hooli.test",
        "password": "a-very-long-passphrase",
        "legal_name": "Hooli Inc.",
        "address_line1": "1 Hooli Way",
        "city": "New York",
        "postal_code": "10001",
        "billing_emails": "",
        "tax_id": "",
        "standing_po_number": "",
    }
    data.update(overrides)
    return data


def test_pricing_shows_packages_side_by_side_with_the_annual_saving(client, catalog):
    page = client.get(reverse("portal:pricing"))
    assert page.status_code == 200
    assert "Team" in page.text and "Business" in page.text
    # monthly 100.00 × 12 = 1,200.00 vs annual 1,000.00: save 200.00 (17 %)
    assert "Save $200.00 a year (17%)" in page.text
    assert 'class="pricing interval-month"' in page.text
    assert 'class="pricing interval-year"' in client.get(reverse("portal:pricing"), {"interval": "year"}).text
    euros = client.get(reverse("portal:pricing"), {"currency": "EUR"})
    assert "100,00\u00a0€" in euros.text
    assert f'href="{reverse("portal:signup")}?package=team' in page.text


def test_signup_with_trial_lands_on_the_dashboard_with_everything_created(client, catalog):
    response = client.post(reverse("portal:signup"), _signup_data())
    customer = Customer.objects.get(name="Hooli")
    assert response.status_code == 302
    assert response["Location"] == reverse("portal:customer_dashboard", args=[customer.pk])
    user = User.objects.get(email="gavin@hooli.test")
    assert Membership.objects.get(customer=customer).role == Role.OWNER
    subscription = Subscription.objects.get(customer=customer)
    assert (subscription.status, subscription.seats, subscription.package.slug) == (
        SubscriptionStatus.TRIALING,
        5,
        "team",
    )
    assert SeatAssignment.objects.filter(subscription=subscription, user=user).exists()
    profile = BillingProfile.objects.get(customer=customer)
    assert profile.legal_name == "Hooli Inc." and profile.billing_emails == ["gavin@hooli.test"]
    dashboard = client.get(response["Location"])
    assert "Welcome to Continuum, Hooli" in dashboard.text
    assert "14 days left in your trial" in dashboard.text
    assert 'id="enablement"' in dashboard.text


def test_signup_with_a_tax_exemption_submits_the_certificate_for_review(client, catalog):
    data = _signup_data(
        tax_exempt="1",
        jurisdictions="US-NY",
        exemption_type="nonprofit",
        certificate_number="NY-501",
        expires_on=EXPIRES.isoformat(),
        start="subscribe",
    )
    data["certificate"] = SimpleUploadedFile("cert.pdf", b"%PDF-1.4 cert", content_type="application/pdf")
    response = client.post(reverse("portal:signup"), data)
    assert response.status_code == 302
    exemption = TaxExemption.objects.get(customer__name="Hooli")
    assert exemption.status == "submitted" and exemption.jurisdictions == ["US-NY"]
    assert Subscription.objects.get(customer__name="Hooli").status == SubscriptionStatus.ACTIVE


def test_signup_errors_are_next_to_the_field_keep_input_and_create_nothing(client, catalog):
    response = client.post(reverse("portal:signup"), _signup_data(seats="1"))
    assert response.status_code == 422
    assert 'id="f-seats-error"' in response.text and "starts at 3 seats" in response.text
    assert 'value="Hooli"' in response.text and 'value="gavin@hooli.test"' in response.text
    bad_vat = client.post(reverse("portal:signup"), _signup_data(country="DE", region="", tax_id="DE1", currency="EUR"))
    assert bad_vat.status_code == 422 and 'id="f-tax_id-error"' in bad_vat.text
    weak = client.post(reverse("portal:signup"), _signup_data(password="short"))
    assert weak.status_code == 422 and 'id="f-password-error"' in weak.text
    assert not Customer.objects.filter(name="Hooli").exists()
    assert not User.objects.filter(email="gavin@hooli.test").exists()


def test_signup_with_an_existing_email_asks_to_sign_in(client, catalog):
    UserFactory(email="gavin@hooli.test")
    response = client.post(reverse("portal:signup"), _signup_data())
    assert response.status_code == 422 and "Please sign in" in response.text


def test_signup_exemption_without_a_certificate_is_explained(client, catalog):
    data = _signup_data(
        tax_exempt="1",
        jurisdictions="US-NY",
        exemption_type="resale",
        certificate_number="1",
        expires_on=EXPIRES.isoformat(),
    )
    response = client.post(reverse("portal:signup"), data)
    assert response.status_code == 422 and 'id="f-certificate-error"' in response.text
    assert not Customer.objects.filter(name="Hooli").exists()


def test_signup_asks_the_effort_survey_on_the_dashboard_once(client, catalog):
    from portal.models import EffortSurveyResponse

    # given: a fresh sign-up lands on the dashboard, which asks how easy that was
    response = client.post(reverse("portal:signup"), _signup_data())
    customer = Customer.objects.get(name="Hooli")
    dashboard = client.get(response["Location"])
    assert "How easy was that?" in dashboard.text and "Signing up for Continuum" in dashboard.text
    assert 'name="kind" value="signup"' in dashboard.text
    # when: the person answers
    survey_url = reverse("portal:survey", args=[customer.pk])
    answered = client.post(survey_url, {"kind": "signup", "score": "6", "comment": "Quick"})
    # then: one answer about the sign-up, and the question is not asked again
    assert answered.status_code == 302
    answer = EffortSurveyResponse.objects.get()
    assert (answer.customer, answer.user.email, answer.change_kind, answer.score, answer.comment) == (
        customer,
        "gavin@hooli.test",
        "signup",
        6,
        "Quick",
    )
    assert client.post(survey_url, {"kind": "signup", "score": "1"}).status_code == 302  # a double submit
    assert EffortSurveyResponse.objects.count() == 1
    assert "How easy was that?" not in client.get(response["Location"]).text


def test_signup_survey_can_be_put_off_and_is_only_for_who_signed_up(client, catalog):
    from portal.models import EffortSurveyResponse
    from tests.factories import MembershipFactory

    response = client.post(reverse("portal:signup"), _signup_data())
    customer = Customer.objects.get(name="Hooli")
    survey_url = reverse("portal:survey", args=[customer.pk])
    assert client.post(survey_url, {"kind": "signup", "skip": "1"}).status_code == 302
    assert "How easy was that?" not in client.get(response["Location"]).text
    assert client.post(survey_url, {"kind": "signup", "score": "7"}).status_code == 302
    # A colleague who did not sign up is never asked, and cannot answer for the sign-up.
    colleague = UserFactory(email="richard@hooli.test")
    MembershipFactory(customer=customer, user=colleague, role=Role.OWNER)
    client.force_login(colleague)
    assert "How easy was that?" not in client.get(response["Location"]).text
    client.post(survey_url, {"kind": "signup", "score": "7"})
    assert EffortSurveyResponse.objects.count() == 0


# Issue 15, hole 4: the sign-up view held the default-seats rule; it is the sign-up service's, for every caller.
def test_signup_create_without_seats_starts_with_the_packages_default(catalog):
    from portal.services.signup import signup_create, signup_default_seats

    team, _ = catalog
    data = _signup_data()
    billing = {name: data[name] for name in ("legal_name", "address_line1", "city", "postal_code")}
    result = signup_create(
        package_slug="team",
        interval="month",
        seats=None,
        trial=True,
        company_name="Hooli",
        country="US",
        region="NY",
        currency="USD",
        name="Gavin Belson",
        email="gavin@hooli.test",
        password="a-very-long-passphrase",
        billing=billing,
    )
    assert result.subscription.seats == signup_default_seats(package=team) == max(3, team.included_seats)


def test_signup_page_prefills_the_services_default_seats(client, catalog):
    from portal.services.signup import signup_default_seats

    page = client.get(reverse("portal:signup") + "?package=team")
    assert page.context["form"]["seats"] == str(signup_default_seats(package=catalog[0]))
