"""Numbers typed by a hostile user: Unicode digits, huge strings, signs. A form error or 400, never a 500."""

import pytest
from django.urls import reverse
from hypothesis import given
from hypothesis import strategies as st

from subscriptions.inputs import parse_int
from subscriptions.models import SeatAssignment, Subscription

pytestmark = pytest.mark.django_db

HOSTILE = ["²", "١٢", "１２", "1" * 5000, "12abc", "0x10", "1e3", " ", "9" * 20]


def _url(name, account, **query):
    url = reverse(f"portal:{name}", args=[account.customer.pk])
    return url + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")


@pytest.mark.parametrize("year", ["²", "١٩٩٩", "1" * 5000, "-2026"])
def test_invoice_list_year_in_other_digits_is_a_form_error(account, client_for, year):
    response = client_for(account.owner).get(_url("invoices", account), {"year": year})

    assert response.status_code == 200
    assert "Choose one of the listed years." in response.text


@pytest.mark.parametrize("seats", ["²", "1" * 5000, "١٢", "-" + "1" * 30])
def test_seat_preview_with_other_digits_is_a_form_error(account, client_for, seats):
    response = client_for(account.owner).post(
        _url("change_preview_seats", account),
        {"subscription_id": account.subscription.pk, "seats": seats},
        headers={"HX-Request": "true"},
    )

    assert response.status_code == 422
    assert "whole number" in response.text
    assert Subscription.objects.get(pk=account.subscription.pk).seats == 10


@pytest.mark.parametrize("subscription_id", ["²", "١", "1" * 5000])
def test_seat_assign_with_a_malformed_subscription_id_is_a_400(account, client_for, subscription_id):
    before = SeatAssignment.objects.count()

    response = client_for(account.owner).post(
        _url("seat_assign", account), {"subscription_id": subscription_id, "user_id": account.billing_admin.pk}
    )

    assert response.status_code == 400
    assert SeatAssignment.objects.count() == before


def test_seat_preview_with_a_malformed_subscription_id_is_a_400(account, client_for):
    response = client_for(account.owner).get(_url("change_preview_seats", account), {"subscription_id": "²"})
    assert response.status_code == 400


@pytest.mark.parametrize("change", ["²", "1" * 5000])
def test_survey_with_a_malformed_change_is_a_400(account, client_for, change):
    from portal.models import EffortSurveyResponse

    response = client_for(account.owner).post(_url("survey", account), {"change": change, "score": "5"})

    assert response.status_code == 400
    assert not EffortSurveyResponse.objects.exists()


def test_survey_score_in_other_digits_is_a_form_error(account, client_for):
    from portal.models import EffortSurveyResponse

    response = client_for(account.owner).post(_url("survey", account), {"kind": "other", "score": "٥"})

    assert response.status_code == 422
    assert not EffortSurveyResponse.objects.exists()


@pytest.mark.parametrize("value", HOSTILE)
def test_parse_int_refuses_anything_but_ascii_digits(value):
    assert parse_int(value, minimum=-(10**30), maximum=10**30) is None


@given(st.integers(min_value=-(10**18), max_value=10**18))
def test_parse_int_reads_every_ascii_integer_in_bounds(number):
    assert parse_int(str(number), minimum=-(10**18), maximum=10**18) == number
    assert parse_int(str(number), minimum=number + 1, maximum=10**18 + 1) is None
