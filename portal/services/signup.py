"""Self-serve sign-up: a new company, its first owner and its first subscription, at once.

Everything happens in one transaction, through the owning services (billing profile, subscription, tax exemption,
seat assignment), so a bad billing detail or certificate leaves nothing half-created: the person can fix the field
and submit again.
"""

from dataclasses import dataclass
from datetime import date

from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction

from billing.services.discounts import discount_redeem, normalize_code
from billing.services.exemptions import tax_exemption_submit
from billing.services.profiles import billing_profile_update
from subscriptions.exceptions import SubscriptionError
from subscriptions.inputs import MAX_SEATS, parse_int
from subscriptions.models import Customer, Interval, Membership, Package, Role, Subscription, User
from subscriptions.places import country_exists
from subscriptions.services.audit import audit_record
from subscriptions.services.seats import seat_assign
from subscriptions.services.subscriptions import subscription_create


class SignupInvalid(SubscriptionError):
    code = "signup_invalid"


@dataclass(frozen=True)
class ExemptionDeclaration:
    jurisdictions: str
    exemption_type: str
    certificate_number: str
    expires_on: date
    certificate: object  # an uploaded file
    reason: str = ""


@dataclass(frozen=True)
class SignupResult:
    user: User
    customer: Customer
    subscription: Subscription


def signup_default_seats(*, package: Package) -> int:
    """The seats a sign-up starts with when the customer has not chosen: the package's included seats, within its
    minimum and maximum."""
    return max(package.min_seats, min(package.included_seats, package.max_seats or 10**6))


def signup_create(
    *,
    package_slug: str,
    interval: str,
    seats,
    trial: bool,
    company_name: str,
    country: str,
    region: str = "",
    currency: str,
    name: str,
    email: str,
    password: str,
    billing: dict,
    exemption: ExemptionDeclaration | None = None,
    promotion_code: str | None = None,
    client_ip: str = "",
) -> SignupResult:
    """Create the user (owner), the customer, its billing profile, the subscription (trial or paid), optionally a tax
    exemption submitted for review, and give the owner a seat. No `seats` (None or empty): `signup_default_seats`.
    Raises a `SubscriptionError`/`BillingError` with the field at fault; writes nothing then.

    `promotion_code`: redeemed on the new subscription in the same transaction (billing.services.discounts); a
    refused code (`promotion_code_*`, field "promotion_code") creates nothing. Invalid attempts are throttled per
    e-mail address and per `client_ip`."""
    package = Package.objects.filter(slug=package_slug, is_active=True, is_public=True, is_addon=False).first()
    if package is None:
        raise SignupInvalid("Choose one of the packages on offer.", field="package")
    if interval not in Interval.values:
        raise SignupInvalid("Choose monthly or annual billing.", field="interval")
    if seats is None or seats == "":
        seats = signup_default_seats(package=package)
    seats = parse_int(seats, minimum=0, maximum=MAX_SEATS)
    if seats is None:
        raise SignupInvalid("Enter the number of seats as a whole number.", field="seats")
    if seats < package.min_seats:
        raise SignupInvalid(f"{package.name} starts at {package.min_seats} seats.", field="seats")
    if package.max_seats and seats > package.max_seats:
        raise SignupInvalid(f"{package.name} allows up to {package.max_seats} seats.", field="seats")
    company_name = (company_name or "").strip()
    if not company_name:
        raise SignupInvalid("Enter your company's name.", field="company_name")
    country = (country or "").strip().upper()
    if not country_exists(country):
        raise SignupInvalid("Choose your country.", field="country")
    currency = (currency or "").upper()
    if currency not in settings.ENABLED_CURRENCIES:
        raise SignupInvalid(f"Choose one of {', '.join(settings.ENABLED_CURRENCIES)}.", field="currency")
    email = (email or "").strip().lower()
    try:
        validate_email(email)
    except ValidationError:
        raise SignupInvalid("Enter a valid e-mail address, e.g. name@company.com.", field="email")
    if User.objects.filter(email__iexact=email).exists():
        # Saying so is fine here: it is the person's own address, and the fix (sign in) is what they need to know.
        raise SignupInvalid("There is already an account with this e-mail address. Please sign in.", field="email")
    try:
        validate_password(password, user=User(email=email, name=name))
    except ValidationError as error:
        raise SignupInvalid(" ".join(error.messages), field="password")
    with transaction.atomic():
        user = User.objects.create_user(email, password, name=(name or "").strip()[:150])
        customer = Customer.objects.create(
            name=company_name,
            legal_name=(billing.get("legal_name") or company_name).strip(),
            country=country,
            region=(region or "").strip().upper(),
            currency=currency,
        )
        Membership.objects.create(user=user, customer=customer, role=Role.OWNER)
        billing_profile_update(
            customer=customer,
            actor=user,
            country=country,
            region=(region or "").strip().upper(),
            currency=currency,
            **{k: v for k, v in billing.items() if k not in ("country", "billing_emails")},
            billing_emails=billing.get("billing_emails") or [email],
        )
        if exemption is not None:
            tax_exemption_submit(
                customer=customer,
                jurisdictions=exemption.jurisdictions,
                exemption_type=exemption.exemption_type,
                certificate_number=exemption.certificate_number,
                expires_on=exemption.expires_on,
                certificate=exemption.certificate,
                reason=exemption.reason,
                actor=user,
            )
        subscription = subscription_create(
            customer=customer,
            package=package,
            interval=interval,
            seats=seats,
            trial=bool(trial and package.trial_days),
            actor=user,
        )
        seat_assign(subscription_id=subscription.pk, user_id=user.pk, actor=user)
        if normalize_code(promotion_code):
            discount_redeem(
                customer=customer,
                subscription=subscription,
                promotion_code=promotion_code,
                actor=user,
                customer_key=email,
                ip=client_ip,
            )
        audit_record(
            customer=customer,
            actor=user,
            action="customer.signed_up",
            obj=customer,
            summary=f"{company_name} signed up for {package.name} ({'trial' if subscription.trial_end else 'paid'})",
            after={
                "package": package.slug,
                "interval": interval,
                "seats": seats,
                "tax_exempt": exemption is not None,
                "promotion_code": normalize_code(promotion_code) or None,
            },
        )
    return SignupResult(user=user, customer=customer, subscription=subscription)
