"""usage_records_submit: the product reports who used what (daily active use, feature use), per UTC day."""

from dataclasses import dataclass
from datetime import date, timedelta

from django.db import transaction

from subscriptions import clock
from subscriptions.exceptions import UsageInvalid
from subscriptions.models import Customer, Entitlement, Membership, UsageKind, UsageRecord

MAX_RECORDS_PER_REQUEST = 500
MAX_COUNT = 1_000_000
MAX_AGE_DAYS = 35  # a late batch from last month is fine; older facts would rewrite history already scored


@dataclass(frozen=True)
class UsageInput:
    customer_id: int
    day: date
    kind: str
    user_id: int | None = None
    feature: str = ""
    count: int = 1


def usage_records_submit(*, records: list[UsageInput]) -> dict:
    """Validate every record, then upsert all of them in one transaction (all or nothing).

    Idempotent by the natural key (customer, user, day, kind, feature): a resubmission replaces the count, so a
    product may replay a report. Raises UsageInvalid (nothing stored) for an unknown customer, a user who is not a
    member of that customer, a feature the customer holds no entitlement to, a count out of bounds, or a day in the
    future or older than MAX_AGE_DAYS. Returns {"created": n, "updated": m}."""
    if not records:
        raise UsageInvalid("Send at least one usage record.", field="records")
    if len(records) > MAX_RECORDS_PER_REQUEST:
        raise UsageInvalid(f"Send at most {MAX_RECORDS_PER_REQUEST} records per request.", field="records")
    today = clock.today()
    oldest = today - timedelta(days=MAX_AGE_DAYS)
    customer_ids = {r.customer_id for r in records}
    known_customers = set(Customer.objects.filter(pk__in=customer_ids).values_list("pk", flat=True))
    members = set(Membership.objects.filter(customer_id__in=customer_ids).values_list("customer_id", "user_id"))
    features = set(Entitlement.objects.filter(customer_id__in=customer_ids).values_list("customer_id", "feature_key"))
    seen = set()
    for index, r in enumerate(records):
        field = f"records[{index}]"
        if r.customer_id not in known_customers:
            raise UsageInvalid(f"No customer {r.customer_id}.", field=f"{field}.customer")
        if r.user_id is not None and (r.customer_id, r.user_id) not in members:
            raise UsageInvalid(f"User {r.user_id} is not a member of customer {r.customer_id}.", field=f"{field}.user")
        if r.kind not in UsageKind.values:
            raise UsageInvalid(f"kind must be one of: {', '.join(UsageKind.values)}.", field=f"{field}.kind")
        if r.kind == UsageKind.ACTIVE and r.feature:
            raise UsageInvalid("Daily active use names no feature.", field=f"{field}.feature")
        if r.kind == UsageKind.FEATURE and (r.customer_id, r.feature) not in features:
            raise UsageInvalid(
                f"Customer {r.customer_id} holds no entitlement to feature “{r.feature}”.", field=f"{field}.feature"
            )
        if not 0 <= r.count <= MAX_COUNT:
            raise UsageInvalid(f"count must be between 0 and {MAX_COUNT}.", field=f"{field}.count")
        if r.day > today:
            raise UsageInvalid("The day is in the future (days are UTC).", field=f"{field}.day")
        if r.day < oldest:
            raise UsageInvalid(f"The day is more than {MAX_AGE_DAYS} days old.", field=f"{field}.day")
        key = (r.customer_id, r.user_id, r.day, r.kind, r.feature)
        if key in seen:
            raise UsageInvalid("The same record appears twice in this request.", field=field)
        seen.add(key)
    created = updated = 0
    with transaction.atomic():
        for r in records:
            _, was_created = UsageRecord.objects.update_or_create(
                customer_id=r.customer_id,
                user_id=r.user_id,
                day=r.day,
                kind=r.kind,
                feature=r.feature,
                defaults={"count": r.count},
            )
            created += was_created
            updated += not was_created
    return {"created": created, "updated": updated}
