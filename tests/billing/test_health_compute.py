"""customer_health_compute on a hand-built customer; expected figures computed by hand in the comments."""

from datetime import timedelta

import pytest
import time_machine

from billing.models import CustomerHealthSnapshot, HealthWeights, Invoice, InvoiceStatus
from billing.services.health import CHUNK_SIZE, customer_health_compute
from subscriptions import clock
from subscriptions.models import ProvisioningRun, RunOutcome, StaffNote
from tests.factories import (
    BillingProfileFactory,
    CustomerFactory,
    MembershipFactory,
    SeatAssignmentFactory,
    SubscriptionFactory,
)
from tests.subscriptions.conftest import catalog  # noqa: F401 (fixture)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def pinned():
    with time_machine.travel(clock.now(), tick=False):
        yield


def build_customer():
    sub = SubscriptionFactory(seats=10)
    customer = sub.customer
    now = clock.now()
    # 4 members: 2 signed in within 30 days, 2 not; 8 seats assigned (to the members and 4 others)
    for index in range(4):
        m = MembershipFactory(customer=customer)
        m.user.last_login = now - timedelta(days=3 if index < 2 else 45)
        m.user.save(update_fields=["last_login"])
        SeatAssignmentFactory(subscription=sub, user=m.user)
    for _ in range(4):
        SeatAssignmentFactory(subscription=sub)
    # 1 open invoice due 12 days ago; 1 held invoice
    Invoice.objects.create(
        customer=customer,
        currency="USD",
        status=InvoiceStatus.OPEN,
        number=f"T-{customer.pk}",
        issued_at=now - timedelta(days=42),
        due_on=clock.today() - timedelta(days=12),
    )
    Invoice.objects.create(customer=customer, currency="USD", status=InvoiceStatus.HELD)
    # 1 failed enablement run 5 days ago
    ProvisioningRun.objects.create(customer=customer, started_at=now - timedelta(days=5), outcome=RunOutcome.FAILED)
    StaffNote.objects.create(customer=customer, body="Called about a wrong invoice total")
    StaffNote.objects.create(customer=customer, body="Asked about SSO")
    return customer


def test_customer_health_compute_scores_each_component_from_facts(django_assert_max_num_queries):
    customer = build_customer()
    with django_assert_max_num_queries(26):
        [snapshot] = customer_health_compute(customer_ids=[customer.pk], effort_scores={customer.pk: [7, 6, 5]})
    assert snapshot.components == {
        "seat_adoption": 80,  # 8 / 10
        "activity": 50,  # 2 of 4 members active
        "payment": 63,  # 100 − 25 (1 overdue) − 12 days past due
        "enablement": 80,  # 100 − 20 (1 failed run)
        "friction": 70,  # 100 − 20 (1 held) − 10 (1 billing note; the SSO note does not count)
        "effort": 83,  # mean 6 → 5/6 × 100
    }
    # (80×25 + 50×20 + 63×25 + 80×10 + 70×10 + 83×10) / 100 = (2000+1000+1575+800+700+830)/100 = 69.05 → 69
    assert snapshot.score == 69
    assert snapshot.explanation == (
        "2 of 10 seats unassigned; 2 of 4 people not active in 30 days; 1 invoice(s) overdue, 12 days past due; "
        "1 failed and 0 slow enablement run(s) in 30 days; 1 invoice(s) held; 1 billing note(s) by staff in 90 days"
    )


def test_overdue_counts_open_invoices_past_due_and_days_run_from_the_oldest():
    customer = SubscriptionFactory(seats=1).customer
    today = clock.today()
    for index, (status, due_in) in enumerate(
        [
            (InvoiceStatus.OPEN, -3),  # overdue
            (InvoiceStatus.OPEN, -20),  # overdue, the oldest
            (InvoiceStatus.OPEN, 0),  # due today: not overdue yet
            (InvoiceStatus.OPEN, 5),  # not due
            (InvoiceStatus.PAID, -40),  # paid: never overdue, however old
            (InvoiceStatus.HELD, None),
            (InvoiceStatus.HELD, -30),  # held with a due date: held, not overdue
        ]
    ):
        Invoice.objects.create(
            customer=customer,
            currency="USD",
            status=status,
            number=None if status == InvoiceStatus.HELD else f"T-{customer.pk}-{index}",
            issued_at=None if status == InvoiceStatus.HELD else clock.now() - timedelta(days=45),
            due_on=None if due_in is None else today + timedelta(days=due_in),
        )
    [snapshot] = customer_health_compute(customer_ids=[customer.pk])
    assert (snapshot.facts["overdue_invoices"], snapshot.facts["days_past_due"]) == (2, 20)
    assert snapshot.facts["held_invoices"] == 2
    assert snapshot.explanation.endswith("2 invoice(s) overdue, 20 days past due; 2 invoice(s) held")


def test_customer_health_compute_uses_the_newest_weights_and_keeps_history():
    customer = build_customer()
    customer_health_compute(customer_ids=[customer.pk])
    HealthWeights.objects.create(seat_adoption=1, activity=0, payment=0, enablement=0, friction=0, effort=0)
    [snapshot] = customer_health_compute(customer_ids=[customer.pk])
    # only seat adoption weighs now: 80
    assert snapshot.score == 80
    assert CustomerHealthSnapshot.objects.filter(customer=customer).count() == 2


def test_customer_health_compute_query_count_does_not_grow_with_the_chunk():
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    few = [build_customer().pk]
    many = few + [CustomerFactory().pk for _ in range(30)]
    customer_health_compute(customer_ids=many)  # first scoring: every customer's stage changes (events recorded)
    with CaptureQueriesContext(connection) as one:
        customer_health_compute(customer_ids=few)
    with CaptureQueriesContext(connection) as thirty_one:
        customer_health_compute(customer_ids=many)
    # the same statements for 1 customer as for 31 (trend history, package moves and stage events included)
    assert len(thirty_one) == len(one) <= 26
    with pytest.raises(ValueError):
        customer_health_compute(customer_ids=list(range(1, CHUNK_SIZE + 2)))


def test_customer_health_compute_derives_the_stage_and_records_changes_once():
    from billing.models import JourneyStageChange

    customer = build_customer()
    # given an overdue invoice, the customer is at risk whatever the score
    [snapshot] = customer_health_compute(customer_ids=[customer.pk])
    assert snapshot.stage == "at_risk"
    customer_health_compute(customer_ids=[customer.pk])
    # when the invoice is paid, the customer (created today) is back in onboarding: one more change, dated now
    Invoice.objects.filter(customer=customer, status=InvoiceStatus.OPEN).update(
        status=InvoiceStatus.PAID, paid_at=clock.now()
    )
    [snapshot] = customer_health_compute(customer_ids=[customer.pk])
    assert snapshot.stage == "onboarding"
    assert list(
        JourneyStageChange.objects.filter(customer=customer).order_by("id").values_list("from_stage", "to_stage")
    ) == [("", "at_risk"), ("at_risk", "onboarding")]
    assert JourneyStageChange.objects.filter(customer=customer).latest("id").changed_at == clock.now()


def test_health_weights_preview_shows_who_joins_the_at_risk_list_without_saving():
    from billing.exceptions import HealthWeightsInvalid
    from billing.services.health import health_weights_preview, health_weights_save

    customer = build_customer()
    [snapshot] = customer_health_compute(customer_ids=[customer.pk])
    # no effort answers: (2000 + 1000 + 1575 + 800 + 700) / 90 = 67.5 → 68, not at risk under the default 50
    assert snapshot.score == 68
    # weighing only payment (63) with a threshold of 70 puts the customer on the list
    only_payment = {"seat_adoption": 0, "activity": 0, "payment": 1, "enablement": 0, "friction": 0, "effort": 0}
    preview = health_weights_preview(weights=only_payment, at_risk_below=70)
    assert preview == {"joining": [customer.pk], "leaving": [], "at_risk": [customer.pk]}
    assert not HealthWeights.objects.exists()
    with pytest.raises(HealthWeightsInvalid):
        health_weights_preview(weights={**only_payment, "payment": 0}, at_risk_below=70)
    with pytest.raises(HealthWeightsInvalid):
        health_weights_save(weights=only_payment, at_risk_below=101, actor=None)
    health_weights_save(weights=only_payment, at_risk_below=70, actor=None)
    assert HealthWeights.objects.get().payment == 1


def test_the_adoption_trend_comes_from_the_snapshot_of_90_days_ago_and_shows_in_the_explanation():
    customer = build_customer()  # 8 of 10 seats assigned today: 80
    CustomerHealthSnapshot.objects.create(
        customer=customer, computed_at=clock.now() - timedelta(days=91), components={"seat_adoption": 100}
    )
    CustomerHealthSnapshot.objects.create(  # too old for either window
        customer=customer, computed_at=clock.now() - timedelta(days=200), components={"seat_adoption": 10}
    )
    [snapshot] = customer_health_compute(customer_ids=[customer.pk])
    assert snapshot.facts["seat_adoption_90_days_ago"] == 100
    assert snapshot.facts["seat_adoption_trend_90_days"] == -20
    assert snapshot.facts["seat_adoption_30_days_ago"] is None
    assert snapshot.explanation.startswith("seat adoption fell from 100 % to 80 % in 90 days; 2 of 10 seats unassigned")


def test_each_trend_reads_the_newest_snapshot_of_its_window_and_nothing_outside_it():
    customer = build_customer()  # 8 of 10 seats assigned today: 80
    for days, adoption in ((30, 50), (33, 40), (36, 30), (37, 99), (29, 98), (92, 60), (96, 70), (97, 97)):
        CustomerHealthSnapshot.objects.create(
            customer=customer,
            computed_at=clock.now() - timedelta(days=days, hours=1),
            components={"seat_adoption": adoption, "activity": adoption},
        )
    [snapshot] = customer_health_compute(customer_ids=[customer.pk])
    # 30 days ago: the newest of those computed 30-37 days ago (the one of 29 days is too new, of 38 too old)
    assert snapshot.facts["seat_adoption_30_days_ago"] == 50
    assert snapshot.facts["seat_adoption_trend_30_days"] == 30
    # 90 days ago: the newest of those computed 90-97 days ago
    assert snapshot.facts["seat_adoption_90_days_ago"] == 60
    assert snapshot.facts["activity_90_days_ago"] == 60


def test_a_trend_window_holds_a_snapshot_of_exactly_n_days_ago_but_not_one_of_n_plus_7():
    customer = build_customer()
    for days, adoption in ((30, 55), (97, 77)):
        CustomerHealthSnapshot.objects.create(
            customer=customer, computed_at=clock.now() - timedelta(days=days), components={"seat_adoption": adoption}
        )
    [snapshot] = customer_health_compute(customer_ids=[customer.pk])
    assert snapshot.facts["seat_adoption_30_days_ago"] == 55
    assert snapshot.facts["seat_adoption_90_days_ago"] is None


def test_a_real_upgrade_moves_an_adopting_customer_to_expanding_and_records_the_stage_change(catalog):  # noqa: F811
    from billing.models import JourneyStageChange
    from billing.services.changes import change_apply, change_preview
    from subscriptions.models import Event

    # given a customer of 50 days on Team (10 seats, 8 assigned, members signing in), with nothing overdue
    joined = clock.now() - timedelta(days=50)
    with time_machine.travel(joined, tick=False):
        customer = CustomerFactory(country="US", region="CA")
        BillingProfileFactory(customer=customer)
        sub = SubscriptionFactory(customer=customer, package=catalog.team, seats=10)
    owner = MembershipFactory(customer=customer, role="owner").user
    for _ in range(8):
        member = MembershipFactory(customer=customer)
        member.user.last_login = clock.now() - timedelta(days=2)
        member.user.save(update_fields=["last_login"])
        SeatAssignmentFactory(subscription=sub, user=member.user)
    [before] = customer_health_compute(customer_ids=[customer.pk])
    assert before.stage not in ("expanding", "at_risk", "onboarding")
    # when the owner upgrades to Business through the billed change service (preview, then apply)
    params = {"package_slug": "business", "interval": "month", "seats": 12}
    preview = change_preview(subscription_id=sub.pk, kind="package", **params)
    change_apply(subscription_id=sub.pk, kind="package", expected_version=preview.version, actor=owner, **params)
    # then the next computation finds the customer expanding, records the change once and queues its event
    [after] = customer_health_compute(customer_ids=[customer.pk])
    assert after.stage == "expanding" and after.facts["package_grew_90_days"] is True
    assert list(
        JourneyStageChange.objects.filter(customer=customer).order_by("id").values_list("from_stage", "to_stage")
    ) == [("", before.stage), (before.stage, "expanding")]
    stage_events = Event.objects.filter(customer=customer, type="customer.stage_changed").order_by("id")
    assert [(e.data["previous_stage"], e.data["stage"]) for e in stage_events] == [
        (None, before.stage),
        (before.stage, "expanding"),
    ]


def test_the_stage_change_is_against_the_newest_snapshot_however_long_the_history():
    from billing.models import JourneyStageChange

    customer = build_customer()  # overdue: at risk
    now = clock.now()
    for days in range(40, 1, -1):  # a history of nightly snapshots, all "expanding" but the newest
        CustomerHealthSnapshot.objects.create(
            customer=customer, computed_at=now - timedelta(days=days), score=90, stage="expanding"
        )
    CustomerHealthSnapshot.objects.create(customer=customer, computed_at=now - timedelta(hours=20), stage="at_risk")
    [snapshot] = customer_health_compute(customer_ids=[customer.pk])
    assert snapshot.stage == "at_risk"
    assert not JourneyStageChange.objects.filter(customer=customer).exists()  # at risk already: no change
    never_scored = CustomerFactory()
    customer_health_compute(customer_ids=[never_scored.pk])
    assert list(JourneyStageChange.objects.filter(customer=never_scored).values_list("from_stage", flat=True)) == [""]
