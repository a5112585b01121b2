"""Provisioning: desired entitlements, the diff, reconcile (builtin and a real local webhook receiver), drift check.

Celery runs eagerly here (portal/settings_test.py): `transaction.on_commit` callbacks are executed with pytest-django's
`django_capture_on_commit_callbacks(execute=True)`, so the enqueue hook really runs the task after "commit".
"""

import threading
from datetime import timedelta

import pytest
from django.core import mail
from django.db import connection
from django.test import override_settings
from django.utils import timezone
from hypothesis import given
from hypothesis import strategies as st

from subscriptions.exceptions import InvalidTransition
from subscriptions.models import (
    AuditEvent,
    Entitlement,
    EntitlementState,
    PackageComponent,
    ProvisioningRun,
    RunOutcome,
    SeatAssignment,
    SkuKind,
    SubscriptionAddon,
    SubscriptionStatus,
)
from subscriptions.provisioners import ProvisionerPermanentError, provisioner_get
from subscriptions.provisioners.webhook import webhook_signature, webhook_verify
from subscriptions.selectors import enablement_status, entitlements_for_customer, provisioning_runs_for_customer
from subscriptions.services.provisioning import (
    AppliedEntitlement,
    DesiredEntitlement,
    _transition,
    entitlements_desired,
    entitlements_diff,
    entitlements_drift_check,
    entitlements_reconcile,
    entitlements_reconcile_enqueue,
    entitlements_retry,
)
from subscriptions.tasks import entitlements_reconcile_task, retry_backoff
from tests.factories import (
    CustomerFactory,
    PackageFactory,
    PriceFactory,
    SkuFactory,
    SubscriptionFactory,
    UserFactory,
    priced_package,
)
from tests.subscriptions.provisioning_receiver import Receiver

pytestmark = pytest.mark.django_db

B, L, S, U = "boolean", "limit", "seats", "user_seat"


@pytest.fixture
def receiver():
    server = Receiver().start()
    yield server
    server.stop()


FEATURE_LABELS = {"sso": "Single sign-on", "api_calls_per_month": "API calls per month", "audit_log": "Audit log"}


def _sku(code, key, kind, value=None):
    return SkuFactory(
        code=code,
        kind=SkuKind.FEATURE,
        feature_key=key,
        feature_value_kind=kind,
        feature_value=value,
        feature_label=FEATURE_LABELS[key],
    )


@pytest.fixture
def team():
    """The "team" package: per-seat seats, SSO (boolean), 10k API calls a month (limit)."""
    package = priced_package(slug="team")
    PackageComponent.objects.create(package=package, sku=_sku("LIC-SSO", "sso", "boolean"))
    PackageComponent.objects.create(package=package, sku=_sku("LIC-API-10K", "api_calls_per_month", "limit", 10_000))
    return package


@pytest.fixture
def api_addon(team):
    """An add-on raising the API limit to 100k and granting the audit log."""
    addon = PackageFactory(slug="api-boost", name="API boost", is_addon=True, included_seats=0, min_seats=0)
    PackageComponent.objects.create(package=addon, sku=_sku("LIC-API-100K", "api_calls_per_month", "limit", 100_000))
    PackageComponent.objects.create(package=addon, sku=_sku("LIC-AUDIT", "audit_log", "boolean"))
    PriceFactory(package=addon, currency="USD", interval="month", flat_amount_minor=2_000, seat_amount_minor=0)
    return addon


def _add_addon(subscription, addon, **fields):
    return SubscriptionAddon.objects.create(
        subscription=subscription,
        package=addon,
        price=addon.prices.first(),
        flat_amount_minor=2_000,
        started_at=fields.pop("started_at", subscription.current_period_start),
        **fields,
    )


def _values(customer):
    return {
        (e.feature_key, e.user_id): (e.applied_value, e.state) for e in Entitlement.objects.filter(customer=customer)
    }


# --- the diff (pure) ---------------------------------------------------------------------------------------------


def test_entitlements_diff_grants_updates_and_revokes_only_the_difference():
    desired = {
        ("sso", None): DesiredEntitlement(B, 1),
        ("seats", None): DesiredEntitlement(S, 12),
        ("api_calls_per_month", None): DesiredEntitlement(L, 10_000),
        ("seat:team", 7): DesiredEntitlement(U, 1),
    }
    applied = {
        ("seats", None): AppliedEntitlement(S, 10),
        ("api_calls_per_month", None): AppliedEntitlement(L, 10_000),
        ("audit_log", None): AppliedEntitlement(B, 1),
    }

    changes = entitlements_diff(desired, applied)

    assert [(c.op, c.feature_key, c.user_id, c.value, c.previous) for c in changes] == [
        ("revoke", "audit_log", None, None, 1),
        ("grant", "seat:team", 7, 1, None),
        ("update", "seats", None, 12, 10),
        ("grant", "sso", None, 1, None),
    ]
    assert changes[3].as_json() == {
        "op": "grant",
        "feature": "sso",
        "user_id": None,
        "kind": "boolean",
        "value": True,
        "previous": None,
    }


def test_entitlements_diff_is_empty_when_applied_equals_desired():
    desired = {("seats", None): DesiredEntitlement(S, 3, ("subscription:1",))}
    assert entitlements_diff(desired, {("seats", None): AppliedEntitlement(S, 3)}) == []
    assert entitlements_diff({}, {}) == []


def test_entitlements_diff_treats_a_kind_change_as_an_update():
    changes = entitlements_diff(
        {("storage", None): DesiredEntitlement(L, 1)}, {("storage", None): AppliedEntitlement(B, 1)}
    )
    assert [(c.op, c.kind) for c in changes] == [("update", L)]


keys = st.tuples(st.sampled_from(["seats", "sso", "api", "storage"]), st.one_of(st.none(), st.integers(1, 3)))
values = st.integers(min_value=1, max_value=1_000)


@given(
    desired=st.dictionaries(keys, values.map(lambda v: DesiredEntitlement(L, v))),
    applied=st.dictionaries(keys, values.map(lambda v: AppliedEntitlement(L, v))),
)
def test_entitlements_diff_applied_to_applied_gives_desired(desired, applied):
    result = dict(applied)
    for change in entitlements_diff(desired, applied):
        if change.op == "revoke":
            del result[change.key]
        else:
            result[change.key] = AppliedEntitlement(change.kind, change.value)
    assert result == {key: AppliedEntitlement(d.kind, d.value) for key, d in desired.items()}
    assert entitlements_diff(desired, result) == []


# --- desired -----------------------------------------------------------------------------------------------------


def test_entitlements_desired_combines_package_and_addons(team, api_addon):
    subscription = SubscriptionFactory(package=team, seats=12)
    _add_addon(subscription, api_addon)
    user = UserFactory()
    SeatAssignment.objects.create(subscription=subscription, user=user)

    desired = entitlements_desired(subscription.customer)

    assert {key: (d.kind, d.value) for key, d in desired.items()} == {
        ("seats", None): (S, 12),
        ("sso", None): (B, 1),
        ("api_calls_per_month", None): (L, 100_000),  # the largest limit wins
        ("audit_log", None): (B, 1),
        ("seat:team", user.pk): (U, 1),
    }
    assert desired[("api_calls_per_month", None)].granted_by == (
        f"subscription:{subscription.pk}",
        f"addon:{subscription.addons.get().pk}",
    )


def test_entitlements_desired_adds_seats_across_subscriptions_and_ors_booleans(team):
    customer = CustomerFactory()
    SubscriptionFactory(customer=customer, package=team, seats=4)
    SubscriptionFactory(customer=customer, package=team, seats=6)

    desired = entitlements_desired(customer)

    assert desired[("seats", None)].value == 10
    assert desired[("sso", None)].value == 1
    assert desired[("api_calls_per_month", None)].value == 10_000


def test_entitlements_desired_ignores_ended_subscriptions_and_addons(team, api_addon):
    now = timezone.now()
    ended = SubscriptionFactory(package=team, status=SubscriptionStatus.ENDED, ended_at=now - timedelta(days=1))
    live = SubscriptionFactory(package=team, seats=3)
    _add_addon(live, api_addon, ended_at=now - timedelta(minutes=1))

    assert entitlements_desired(ended.customer) == {}
    assert entitlements_desired(live.customer, now=now)[("api_calls_per_month", None)].value == 10_000
    assert ("audit_log", None) not in entitlements_desired(live.customer, now=now)


def test_entitlements_desired_keeps_a_canceled_subscription_until_its_period_ends(team):
    subscription = SubscriptionFactory(package=team, status=SubscriptionStatus.CANCELED, seats=5)
    end = subscription.current_period_end

    assert entitlements_desired(subscription.customer, now=end - timedelta(seconds=1))[("seats", None)].value == 5
    assert entitlements_desired(subscription.customer, now=end) == {}


# --- reconcile (builtin) -----------------------------------------------------------------------------------------


def test_entitlements_reconcile_applies_everything_and_a_second_run_changes_nothing(team):
    subscription = SubscriptionFactory(package=team, seats=8)
    customer = subscription.customer

    first = entitlements_reconcile(customer_id=customer.pk, trigger="test")
    second = entitlements_reconcile(customer_id=customer.pk, trigger="test again")

    assert first.outcome == RunOutcome.APPLIED
    assert {c["feature"] for c in first.diff} == {"seats", "sso", "api_calls_per_month"}
    assert second.outcome == RunOutcome.NOOP and second.diff == []
    assert _values(customer) == {
        ("seats", None): (8, EntitlementState.ACTIVE),
        ("sso", None): (1, EntitlementState.ACTIVE),
        ("api_calls_per_month", None): (10_000, EntitlementState.ACTIVE),
    }
    assert enablement_status(customer).state == "active"


def test_entitlements_reconcile_revokes_what_is_no_longer_sold(team, api_addon):
    subscription = SubscriptionFactory(package=team, seats=8)
    addon = _add_addon(subscription, api_addon)
    entitlements_reconcile(customer_id=subscription.customer_id)
    addon.ended_at = timezone.now()
    addon.save()

    run = entitlements_reconcile(customer_id=subscription.customer_id)

    assert [(c["op"], c["feature"], c["value"]) for c in run.diff] == [
        ("update", "api_calls_per_month", 10_000),
        ("revoke", "audit_log", None),
    ]
    audit = Entitlement.objects.get(customer=subscription.customer, feature_key="audit_log")
    assert (audit.state, audit.applied_value, audit.desired_value) == (EntitlementState.REVOKED, None, None)
    assert "audit_log" not in {e.feature_key for e in entitlements_for_customer(subscription.customer)}


def test_entitlements_reconcile_enqueue_runs_after_commit_and_a_duplicate_delivery_does_nothing(
    team, django_capture_on_commit_callbacks
):
    customer = CustomerFactory()
    subscription = SubscriptionFactory(customer=customer, package=team, seats=3)
    user = UserFactory()

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        SeatAssignment.objects.create(subscription=subscription, user=user)
        entitlements_reconcile_enqueue(customer_id=customer.pk, trigger="seat assigned")
        # not before commit: the queued run exists, nothing is applied yet
        assert not Entitlement.objects.filter(customer=customer).exists()
        assert enablement_status(customer).state == "pending"

    # the reconcile; then, registered by the run's entitlement.updated events, the customer's health recompute
    assert len(callbacks) == 2
    run = ProvisioningRun.objects.get(customer=customer)
    assert run.outcome == RunOutcome.APPLIED and run.trigger == "seat assigned"
    assert _values(customer)[("seat:team", user.pk)] == (1, EntitlementState.ACTIVE)

    # the broker delivers the same message again: same run id, already finished -> no second effect
    again = entitlements_reconcile_task.delay(customer.pk, "seat assigned", run.pk).get()
    assert again == run.pk
    assert ProvisioningRun.objects.filter(customer=customer).count() == 1
    status = enablement_status(customer)
    assert status.state == "active" and status.last_time_taken_ms is not None
    assert [item.name for item in status.items] == [
        "API calls per month: 10,000",
        "Seats: 3",
        "Single sign-on",
        "Seats assigned to 1 person",
    ]


def test_entitlements_reconcile_supersedes_older_queued_runs(team, django_capture_on_commit_callbacks):
    subscription = SubscriptionFactory(package=team, seats=3)
    customer = subscription.customer
    entitlements_reconcile_enqueue(customer_id=customer.pk, trigger="lost message")  # never sent (no commit)

    entitlements_reconcile(customer_id=customer.pk, trigger="drift")

    outcomes = sorted(ProvisioningRun.objects.filter(customer=customer).values_list("outcome", flat=True))
    assert outcomes == [RunOutcome.APPLIED, RunOutcome.SUPERSEDED]


def test_entitlement_transition_table_refuses_forbidden_moves():
    entitlement = Entitlement(state=EntitlementState.REVOKED)
    with pytest.raises(InvalidTransition):
        _transition(entitlement, EntitlementState.ACTIVE)
    assert _transition(entitlement, EntitlementState.PENDING) is True


def test_provisioner_get_refuses_an_unknown_backend():
    with pytest.raises(ProvisionerPermanentError, match="Unknown PROVISIONER_BACKEND"):
        provisioner_get("carrier-pigeon")


def test_retry_backoff_grows_exponentially_with_jitter_and_a_cap():
    with override_settings(PROVISIONING_RETRY_BASE_SECONDS=2, PROVISIONING_RETRY_MAX_SECONDS=60):
        for retries, ceiling in ((0, 2), (1, 4), (3, 16), (10, 60)):
            samples = {retry_backoff(retries) for _ in range(20)}
            assert all(ceiling / 2 <= s <= ceiling for s in samples)
            assert len(samples) > 1


# --- drift check ---------------------------------------------------------------------------------------------------


def test_entitlements_drift_check_repairs_drifted_customers_with_constant_queries(team, django_assert_max_num_queries):
    subscriptions = [SubscriptionFactory(package=team, seats=n + 1) for n in range(6)]
    for subscription in subscriptions[:4]:
        entitlements_reconcile(customer_id=subscription.customer_id)
    # drift: someone changed the applied state behind our back; two customers were never reconciled
    Entitlement.objects.filter(customer=subscriptions[0].customer, feature_key="seats").update(applied_value=99)

    with django_assert_max_num_queries(40):
        result = entitlements_drift_check(chunk_size=100)

    assert (result.customers_checked, result.customers_drifted, result.customers_reconciled) == (6, 3, 3)
    for n, subscription in enumerate(subscriptions):
        assert _values(subscription.customer)[("seats", None)] == (n + 1, EntitlementState.ACTIVE)
    assert entitlements_drift_check().customers_drifted == 0


# --- webhook backend against a real receiver on 127.0.0.1 ----------------------------------------------------------


def test_webhook_signature_verifies_and_rejects_replays_and_tampering():
    body = b'{"changes":[]}'
    now = 1_800_000_000
    signature = webhook_signature(secret="s3cret", timestamp=str(now), body=body)
    assert signature.startswith("v1=")
    assert webhook_verify(secret="s3cret", timestamp=str(now), signature=signature, body=body, now=now + 299)
    assert not webhook_verify(secret="s3cret", timestamp=str(now), signature=signature, body=body, now=now + 301)
    assert not webhook_verify(secret="s3cret", timestamp=str(now), signature=signature, body=body + b" ", now=now)
    assert not webhook_verify(secret="other", timestamp=str(now), signature=signature, body=body, now=now)


def test_webhook_provisioner_pushes_a_signed_diff_the_receiver_verifies(team, receiver):
    subscription = SubscriptionFactory(package=team, seats=4)
    with override_settings(**receiver.settings()):
        run = entitlements_reconcile(customer_id=subscription.customer_id, trigger="webhook")
        entitlements_reconcile(customer_id=subscription.customer_id, trigger="again")

    assert run.outcome == RunOutcome.APPLIED and run.backend == "webhook"
    assert len(receiver.accepted) == 1  # the second run had nothing to push
    payload = receiver.accepted[0]
    assert payload["customer_id"] == subscription.customer_id and payload["run_id"] == run.pk
    assert {(c["op"], c["feature"], c["value"]) for c in payload["changes"]} == {
        ("grant", "seats", 4),
        ("grant", "sso", True),
        ("grant", "api_calls_per_month", 10_000),
    }
    assert receiver.rejected == 0


@pytest.mark.usefixtures("celery_retries_like_a_worker")
def test_webhook_provisioner_retries_a_failing_receiver_until_it_succeeds(
    team, receiver, django_capture_on_commit_callbacks
):
    subscription = SubscriptionFactory(package=team, seats=4)
    customer = subscription.customer
    receiver.fail_next = 3
    fast = override_settings(**receiver.settings(), PROVISIONING_RETRY_BASE_SECONDS=0, PROVISIONING_MAX_RETRIES=5)
    with fast, django_capture_on_commit_callbacks(execute=True):
        entitlements_reconcile_enqueue(customer_id=customer.pk, trigger="seats")

    assert receiver.failed == 3 and len(receiver.accepted) == 1
    runs = list(ProvisioningRun.objects.filter(customer=customer).order_by("id"))
    assert [(r.attempt, r.outcome) for r in runs] == [
        (1, RunOutcome.RETRYING),
        (2, RunOutcome.RETRYING),
        (3, RunOutcome.RETRYING),
        (4, RunOutcome.APPLIED),
    ]
    assert "HTTP 503" in runs[0].error
    assert all(state == EntitlementState.ACTIVE for _, state in _values(customer).values())
    assert mail.outbox == []


@pytest.mark.usefixtures("celery_retries_like_a_worker")
def test_webhook_provisioner_permanent_failure_marks_failed_and_emails_support_once(
    team, receiver, django_capture_on_commit_callbacks
):
    subscription = SubscriptionFactory(package=team, seats=4)
    customer = subscription.customer
    receiver.fail_next = 1_000
    with override_settings(**receiver.settings(), PROVISIONING_RETRY_BASE_SECONDS=0, PROVISIONING_MAX_RETRIES=2):
        with django_capture_on_commit_callbacks(execute=True):
            entitlements_reconcile_enqueue(customer_id=customer.pk, trigger="seats")
        with django_capture_on_commit_callbacks(execute=True):
            entitlements_retry(customer_id=customer.pk, actor=UserFactory(is_staff=True), reason="receiver fixed?")

    assert receiver.failed == 6  # 3 attempts, twice
    assert {state for _, state in _values(customer).values()} == {EntitlementState.FAILED}
    failed = Entitlement.objects.filter(customer=customer).first()
    assert "Gave up after 3 attempts" in failed.error and "HTTP 503" in failed.error
    assert len(mail.outbox) == 1  # the second failure of the same entitlements is not news
    assert mail.outbox[0].to == ["support@continuum.test"]
    assert customer.name in mail.outbox[0].subject
    status = enablement_status(customer)
    assert status.state == "failed" and "HTTP 503" in status.last_error
    assert provisioning_runs_for_customer(customer)[0].outcome == RunOutcome.FAILED
    assert AuditEvent.objects.filter(customer=customer, action="entitlements.retry_requested").count() == 1

    # the receiver recovers: support retries and everything becomes active
    receiver.fail_next = 0
    with override_settings(**receiver.settings()), django_capture_on_commit_callbacks(execute=True):
        entitlements_retry(customer_id=customer.pk, actor=None)
    assert {state for _, state in _values(customer).values()} == {EntitlementState.ACTIVE}
    assert enablement_status(customer).state == "active"


def test_webhook_provisioner_without_a_secret_fails_permanently(team):
    subscription = SubscriptionFactory(package=team, seats=4)
    unsigned = override_settings(PROVISIONER_BACKEND="webhook", PROVISIONER_WEBHOOK_URL="http://127.0.0.1:9/x")
    with unsigned, pytest.raises(ProvisionerPermanentError, match="PROVISIONER_WEBHOOK_SECRET"):
        entitlements_reconcile(customer_id=subscription.customer_id)
    assert {state for _, state in _values(subscription.customer).values()} == {EntitlementState.FAILED}


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_entitlements_reconcile_concurrent_runs_do_not_interleave(team, receiver):
    # given: a receiver slow enough that the first run is still pushing when the second one starts
    subscription = SubscriptionFactory(package=team, seats=4)
    receiver.delay_seconds = 1.0
    results, errors = [], []

    def reconcile(trigger):
        try:
            results.append(entitlements_reconcile(customer_id=subscription.customer_id, trigger=trigger))
        except Exception as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    # when: two workers reconcile the same customer at the same time
    with override_settings(**receiver.settings()):
        threads = [threading.Thread(target=reconcile, args=(f"worker {n}",)) for n in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)

    # then: the second waited for the first's lock and found nothing left to do
    assert errors == []
    assert sorted(run.outcome for run in results) == [RunOutcome.APPLIED, RunOutcome.NOOP]
    assert len(receiver.accepted) == 1
    assert _values(subscription.customer)[("seats", None)] == (4, EntitlementState.ACTIVE)


def test_enablement_status_reads_entitlements_and_recent_runs_in_one_query(team, django_assert_num_queries):
    """The dashboard's panel: one query for both entitlements and runs, and only the RECENT_RUNS newest runs count —
    a run still queued behind 20 newer applied ones is not an open run."""
    subscription = SubscriptionFactory(package=team, seats=8)
    customer = subscription.customer
    entitlements_reconcile(customer_id=customer.pk)
    now = timezone.now()
    ProvisioningRun.objects.create(customer=customer, outcome=RunOutcome.QUEUED, queued_at=now - timedelta(hours=2))
    for minutes in range(20, 0, -1):
        ProvisioningRun.objects.create(
            customer=customer,
            outcome=RunOutcome.APPLIED,
            queued_at=now - timedelta(minutes=minutes, seconds=5),
            finished_at=now - timedelta(minutes=minutes),
        )
    with django_assert_num_queries(1):
        status = enablement_status(customer)
    assert status.state == "active" and status.pending_since is None
    assert status.last_run_at == now - timedelta(minutes=1) and status.last_time_taken_ms == 5000
    assert [item.name for item in status.items] == ["API calls per month: 10,000", "Seats: 8", "Single sign-on"]

    ProvisioningRun.objects.filter(customer=customer).order_by("-id").first().delete()  # the queued one is 20th now
    status = enablement_status(customer)
    assert status.state == "pending" and status.pending_since == now - timedelta(hours=2)
