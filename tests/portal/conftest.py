"""Portal fixtures: one customer with a live subscription and one person per role, plus a stranger customer."""

import hashlib
from dataclasses import dataclass

import pytest
from django.core.cache import cache
from django.test import Client

from subscriptions.models import Customer, Role, SeatAssignment, Subscription, User
from subscriptions.services.subscriptions import subscription_create
from tests.factories import CustomerFactory, MembershipFactory, UserFactory, priced_package


@dataclass
class Account:
    customer: Customer
    subscription: Subscription
    owner: User
    billing_admin: User
    member: User

    def user(self, role: str) -> User:
        return {"owner": self.owner, "billing_admin": self.billing_admin, "member": self.member}[role]


@pytest.fixture(autouse=True)
def _clear_cache():
    # Login throttle counters live in the cache; each test starts clean.
    cache.clear()
    yield
    cache.clear()


def make_account(name: str = "Acme Inc", *, seats: int = 10, package=None, country="US", currency="USD") -> Account:
    package = package or priced_package(slug="team", name="Team")
    customer = CustomerFactory(name=name, country=country, currency=currency)
    owner = UserFactory(name=f"{name} Owner")
    billing_admin = UserFactory(name=f"{name} Billing")
    member = UserFactory(name=f"{name} Member")
    MembershipFactory(customer=customer, user=owner, role=Role.OWNER)
    MembershipFactory(customer=customer, user=billing_admin, role=Role.BILLING_ADMIN)
    MembershipFactory(customer=customer, user=member, role=Role.MEMBER)
    subscription = subscription_create(customer=customer, package=package, interval="month", seats=seats, actor=owner)
    SeatAssignment.objects.create(subscription=subscription, user=owner)
    SeatAssignment.objects.create(subscription=subscription, user=member)
    return Account(customer, subscription, owner, billing_admin, member)


@pytest.fixture
def account(db) -> Account:
    return make_account()


@pytest.fixture
def other_account(db, account) -> Account:
    return make_account("Globex Corp", seats=5, package=account.subscription.package)


@pytest.fixture
def client_for():
    """`client_for(user)` → a test client signed in as that user."""

    def _client(user: User) -> Client:
        c = Client()
        c.force_login(user)
        return c

    return _client


_invoice_seq = iter(range(1, 100_000))


def make_invoice(customer, *, status="open", total=11_900, issued_at=None, pdf: bytes | None = b"%PDF-1.4 demo"):
    """An issued invoice as billing leaves it (number, amounts, copied billing details), optionally with its PDF."""
    from django.core.files.base import ContentFile
    from django.utils import timezone

    from billing.models import Invoice, InvoiceLine

    issued_at = issued_at or timezone.now()
    n = next(_invoice_seq)
    invoice = Invoice.objects.create(
        customer=customer,
        status="draft",
        currency=customer.currency,
        subtotal_minor=total - 900,
        tax_minor=900,
        total_minor=total,
        billing_legal_name=customer.legal_name,
        billing_address=["1 Main Street", "Springfield CA 90000", "US"],
    )
    InvoiceLine.objects.create(
        invoice=invoice,
        description="Team, monthly",
        quantity=1,
        unit_amount_minor=total - 900,
        amount_minor=total - 900,
    )
    # Issue it the way billing's service ends: one update of number, status and dates.
    Invoice.objects.filter(pk=invoice.pk).update(
        number=f"INV-{issued_at.year}-{n:06d}",
        series=f"INV-{issued_at.year}",
        status=status,
        amount_paid_minor=total if status == "paid" else 0,
        amount_due_minor=0 if status in ("paid", "void") else total,
        issued_at=issued_at,
        due_on=(issued_at + timezone.timedelta(days=30)).date(),
    )
    invoice = Invoice.objects.get(pk=invoice.pk)
    if pdf is not None:
        invoice.pdf_file.save(f"{invoice.number}.pdf", ContentFile(pdf), save=False)
        Invoice.objects.filter(pk=invoice.pk).update(
            pdf_file=invoice.pdf_file.name, pdf_sha256=hashlib.sha256(pdf).hexdigest()
        )
    return invoice
