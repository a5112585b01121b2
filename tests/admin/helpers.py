"""Small builders for back-office tests."""

from subscriptions.models import Customer, Package, Subscription
from subscriptions.services.subscriptions import subscription_create
from tests.factories import CustomerFactory, MembershipFactory, UserFactory, priced_package, utc


def customer_with_subscription(*, name: str | None = None, seats: int = 5, members: int = 1) -> Customer:
    kwargs = {"name": name} if name else {}
    customer = CustomerFactory(**kwargs)
    owner = None
    for _ in range(members):
        membership = MembershipFactory(customer=customer, user=UserFactory())
        owner = owner or membership.user
    package = Package.objects.filter(slug="team").first() or priced_package(slug="team")
    subscription_create(
        customer=customer, package=package, interval="month", seats=seats, start=utc(2026, 11, 1), actor=owner
    )
    return customer


def live_subscription(customer: Customer) -> Subscription:
    return Subscription.objects.get(customer=customer)
