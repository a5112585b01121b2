"""The authorisation matrix, generated from the one policy table (subscriptions/policy.py).

For every action of the table and every actor — owner, billing admin, member, a `read_only`/`billing`/`admin` API
key, a support agent, billing staff, a superuser, another customer's owner and an anonymous caller — the probes
below exercise the action through each surface that offers it: the portal (a session), the REST API (an access
token, or the key) and the back office (a session). What each answer must be comes from the table:

- allowed → the request is served (2xx, a redirect back to the page, or a 400/422 for the deliberately incomplete
  input some probes send: the refusal must come from the rule, not the input);
- refused to someone on the account → 403; staff in the portal and another customer's owner → 404 (nothing leaks);
- anonymous (and customers in the back office) → asked to sign in (401 from the API, a redirect to the sign-in page).

An action without a probe, a probe for an action without a policy entry, and a customer-scoped page or API route
that no probe reaches all fail `test_every_action_and_every_customer_route_is_in_the_matrix`.
"""

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.core.cache import cache
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone
from rest_framework.test import APIClient

from billing.health.formulas import DEFAULT_WEIGHTS
from billing.models import BillingProfile, CreditNote, HealthWeights, PaymentMethod, TaxExemption
from billing.services.exemptions import tax_exemption_submit
from portal.models import ApiKey
from portal.services.api_keys import access_token_create, api_key_create
from subscriptions import policy
from subscriptions.models import Invitation, Membership, SeatAssignment
from subscriptions.policy import Action
from subscriptions.services.members import invitation_create
from tests.factories import UserFactory
from tests.portal.conftest import Account, make_account, make_invoice

pytestmark = pytest.mark.django_db

ALLOW, FORBIDDEN, NOT_FOUND, SIGN_IN = "allowed", "403", "404", "sign in"
PERSONS = ("owner", "billing_admin", "member")
KEYS = ("key:read_only", "key:billing", "key:admin")
STAFF = ("support", "billing_staff", "superuser")
ACTORS = (*PERSONS, *KEYS, *STAFF, "other_owner", "anonymous")
SURFACE_ACTORS = {
    "portal": (*PERSONS, *STAFF, "other_owner", "anonymous"),
    "api": ACTORS,
    "admin": (*PERSONS, *STAFF, "other_owner", "anonymous"),
}


@dataclass
class World:
    account: Account
    other: Account
    users: dict
    key_secrets: dict
    invoice: object
    credit_note: object
    exemption: TaxExemption
    invitation: Invitation
    spare_key: ApiKey
    seen: set = field(default_factory=set)  # (surface, url name) reached by a probe

    @property
    def cid(self) -> int:
        return self.account.customer.pk

    @property
    def sid(self) -> int:
        return self.account.subscription.pk


def _build_world() -> World:
    account = make_account("Acme Inc")
    other = make_account("Globex Corp", seats=5, package=account.subscription.package)
    users = {role: account.user(role) for role in PERSONS}
    users["other_owner"] = other.owner
    for actor, group in (("support", "Support agents"), ("billing_staff", "Billing staff")):
        users[actor] = UserFactory(email=f"{actor}@continuum.test", is_staff=True)
        users[actor].groups.add(Group.objects.get(name=group))
    users["superuser"] = UserFactory(email="root@continuum.test", is_staff=True, is_superuser=True)
    users["anonymous"] = None
    key_secrets = {}
    for scope in KEYS:
        _, key_secrets[scope] = api_key_create(
            customer=account.customer, name=scope, role=scope.removeprefix("key:"), actor=account.owner
        )
    spare_key, _ = api_key_create(customer=account.customer, name="spare", role="read_only", actor=account.owner)
    BillingProfile.objects.create(
        customer=account.customer, legal_name="Acme Inc", country="US", region="CA", billing_emails=["ap@acme.test"]
    )
    invoice = make_invoice(account.customer)
    credit_note = CreditNote.objects.create(
        customer=account.customer,
        invoice=invoice,
        number="CN-2026-000001",
        currency=invoice.currency,
        reason_code="other",
        reason_text="Goodwill",
        subtotal_minor=100,
        tax_minor=0,
        total_minor=100,
        is_full=False,
        issued_at=timezone.now(),
    )
    pdf = b"%PDF-1.4 credit"
    credit_note.pdf_file.save(f"{credit_note.number}.pdf", ContentFile(pdf), save=False)
    CreditNote.objects.filter(pk=credit_note.pk).update(
        pdf_file=credit_note.pdf_file.name, pdf_sha256=hashlib.sha256(pdf).hexdigest()
    )
    exemption = tax_exemption_submit(
        customer=account.customer,
        jurisdictions="US-CA",
        exemption_type="resale",
        certificate_number="CA-1",
        expires_on=timezone.localdate() + timedelta(days=300),
        certificate=SimpleUploadedFile("cert.pdf", b"%PDF-1.4\n% a certificate\n", content_type="application/pdf"),
    )
    invitation = invitation_create(customer=account.customer, email="pending@acme.test", invited_by=None)
    return World(account, other, users, key_secrets, invoice, credit_note, exemption, invitation, spare_key)


# --- clients and outcomes ------------------------------------------------------------------------------------------


def _client(world: World, actor: str, surface: str):
    if surface == "api":
        client = APIClient()
        if actor in KEYS:
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {world.key_secrets[actor]}")
        elif actor != "anonymous":
            _, secret = access_token_create(user=world.users[actor])
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
        return client
    client = Client()
    if actor != "anonymous":
        client.force_login(world.users[actor])
    return client


def outcome(response) -> str:
    code = response.status_code
    assert code < 500, f"{code}: {response.content[:300]!r}"
    if code == 401 or (code in (301, 302) and "/login/" in response.get("Location", "")):
        return SIGN_IN
    if code == 403:
        return FORBIDDEN
    if code == 404:
        return NOT_FOUND
    return ALLOW


def expected(world: World, actor: str, surface: str, action: Action) -> str:
    user = world.users.get(actor)
    if actor == "anonymous":
        return SIGN_IN
    if surface == "admin":
        if actor not in STAFF:
            return SIGN_IN  # customers are sent to the back office's sign-in page
        return ALLOW if policy.staff_allows(user, action, in_admin=True) else FORBIDDEN
    if actor == "other_owner":
        return NOT_FOUND
    if actor in STAFF:
        if surface == "portal":
            return NOT_FOUND  # staff are not members; they work in the back office
        return ALLOW if policy.staff_allows(user, action, in_admin=False) else FORBIDDEN
    return ALLOW if policy.role_allows(actor, action) else FORBIDDEN


# --- probes ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    surface: str  # portal, api, admin
    route: str  # url name (portal:…, api:…, admin:…)
    run: Callable  # (world, client, actor) -> response or outcome string


def _url(world, route, *extra):
    if route.startswith("admin:"):
        return reverse(route, args=extra)
    return reverse(route, args=[world.cid, *extra])


def get(surface, route, *args, query=""):
    def run(world, client, actor):
        return client.get(_url(world, route, *(a(world) if callable(a) else a for a in args)) + query)

    return Probe(surface, route, run)


def post(surface, route, data=None, *args, fmt="json"):
    def run(world, client, actor):
        url = _url(world, route, *(a(world) if callable(a) else a for a in args))
        body = data(world, actor) if callable(data) else (data or {})
        if surface == "api":
            return client.post(url, body, format=fmt)
        return client.post(url, body)

    return Probe(surface, route, run)


def patch(route, data):
    def run(world, client, actor):
        return client.patch(_url(world, route), data, format="json")

    return Probe("api", route, run)


def _sub(world):
    return world.sid


def _api_einvoice(world, client, actor):
    # The world's invoice is not an e-invoice: a caller the policy lets through reaches the service, which says so.
    response = client.get(_url(world, "api:invoice-einvoice", world.invoice.pk))
    if response.status_code == 404 and b"not issued as an e-invoice" in response.content:
        return ALLOW
    return response


def _endpoint(world):
    """The account's webhook endpoint (made on first use; loopback http is the documented test-only setting)."""
    from django.test import override_settings

    from subscriptions.models import WebhookEndpoint
    from subscriptions.services.webhooks import webhook_endpoint_create

    endpoint = WebhookEndpoint.objects.filter(customer=world.account.customer).first()
    if endpoint is None:
        with override_settings(WEBHOOKS_ALLOW_LOOPBACK_HTTP=True):
            endpoint = webhook_endpoint_create(
                customer=world.account.customer,
                url="http://127.0.0.1:9/matrix",
                event_types=["invoice.issued"],
                actor=world.account.owner,
            )
    return endpoint.pk


def _members_list(world, client, actor):
    response = client.get(_url(world, "api:members"))
    if response.status_code == 200 and [m["user"]["id"] for m in response.json()["results"]] == [
        getattr(world.users.get(actor), "pk", None)
    ]:
        return FORBIDDEN  # a member sees only their own membership: not the "see every member" action
    return response


def _invite(role):
    def data(world, actor):
        return {"email": f"{actor.replace(':', '-')}-{role}@invited.test", "role": role}

    return data


def _profile_form(world) -> dict:
    profile = BillingProfile.objects.get(customer=world.account.customer)
    data = {name: getattr(profile, name) for name in ("legal_name", "address_line1", "address_line2", "city")}
    data.update(
        region=profile.region,
        postal_code=profile.postal_code,
        country=profile.country,
        billing_emails=", ".join(profile.billing_emails),
        standing_po_number=profile.standing_po_number,
        tax_id=profile.tax_id,
        payment_terms_days=profile.payment_terms_days,
        invoice_language=profile.invoice_language,
        currency=profile.currency,
        change_billing_mode=profile.change_billing_mode,
    )
    return data


def _admin_terms(world, client, actor):
    """Billing staff set payment terms in the back office; observed by whether the stored terms changed."""
    profile = BillingProfile.objects.get(customer=world.account.customer)
    before = profile.payment_terms_days
    response = client.post(
        reverse("admin:billing_billingprofile_change", args=[profile.pk]),
        {**_profile_form(world), "payment_terms_days": before + 15},
    )
    profile.refresh_from_db()
    if profile.payment_terms_days != before:
        BillingProfile.objects.filter(pk=profile.pk).update(payment_terms_days=before)
        return ALLOW
    return outcome(response) if response.status_code in (302, 401, 403, 404) else FORBIDDEN


def _admin_profile_edit(world, client, actor):
    profile = BillingProfile.objects.get(customer=world.account.customer)
    return client.post(reverse("admin:billing_billingprofile_change", args=[profile.pk]), _profile_form(world))


def _admin_revoke_key(world, client, actor):
    response = client.post(
        reverse("admin:portal_apikey_changelist"),
        {"action": "revoke_selected", "_selected_action": [world.spare_key.pk]},
    )
    world.spare_key.refresh_from_db()
    if world.spare_key.revoked_at is not None:
        ApiKey.objects.filter(pk=world.spare_key.pk).update(revoked_at=None, revoked_by=None)
        return ALLOW
    return outcome(response) if outcome(response) != ALLOW else FORBIDDEN


def _portal_member_role(world, client, actor):
    membership = Membership.objects.get(customer=world.account.customer, user=world.account.member)
    return client.post(reverse("portal:member_role", args=[world.cid, membership.pk]), {"role": "member"})


def _portal_revoke_invitation(world, client, actor):
    invitation = invitation_create(
        customer=world.account.customer, email=f"{actor}-revoke@invited.test", invited_by=None
    )
    return client.post(reverse("portal:invitation_revoke", args=[world.cid, invitation.pk]))


def _admin_resend(world, client, actor):
    return client.post(reverse("admin:subscriptions_invitation_resend", args=[world.invitation.pk]))


def _admin_invoice_resend(world, client, actor):
    return client.post(reverse("admin:billing_invoice_action", args=[world.invoice.pk, "resend_email"]))


def _admin_get(route, *args):
    def run(world, client, actor):
        return client.get(reverse(route, args=[a(world) if callable(a) else a for a in args]))

    return Probe("admin", route, run)


def _admin_probe(route, run):
    return Probe("admin", route, run)


def _admin_health_weights_save(world, client, actor):
    """Saving weights (health.weights) is observed by whether a weight set was stored; viewers may only preview."""
    before = HealthWeights.objects.count()
    response = client.post(reverse("admin:staff_health"), {**DEFAULT_WEIGHTS, "at_risk_below": 55, "save": "1"})
    if HealthWeights.objects.count() != before:
        HealthWeights.objects.order_by("-id").first().delete()
        return ALLOW
    return outcome(response) if outcome(response) != ALLOW else FORBIDDEN


def _portal(route, run):
    return Probe("portal", route, run)


def _api_tax_submit(world, client, actor):
    return client.post(_url(world, "api:tax-exemptions"), {}, format="multipart")


def _card_probe(route):
    def run(world, client, actor):
        card = PaymentMethod.objects.create(
            customer=world.account.customer,
            stripe_payment_method_id=f"pm_{actor}_{route[-6:]}",
            brand="visa",
            last4="4242",
            exp_month=12,
            exp_year=timezone.now().year + 3,
        )
        return client.post(reverse(route, args=[world.cid, card.pk]))

    return run


def _api_unassign(world, client, actor):
    SeatAssignment.objects.get_or_create(subscription=world.account.subscription, user=world.account.owner)
    return client.delete(_url(world, "api:seat-assignment", world.sid, world.account.owner.pk))


def _admin_stripe_retry(world, client, actor):
    """Retrying a failed Stripe event (a changelist bulk action) is observed by the service's audit row."""
    from billing.models import StripeEvent, StripeEventStatus
    from subscriptions.models import AuditEvent

    event = StripeEvent.objects.create(
        stripe_event_id=f"evt_matrix_{actor}",
        type="matrix.unknown",
        stripe_created=1_700_000_000,
        payload={"id": f"evt_matrix_{actor}", "type": "matrix.unknown", "data": {"object": {}}},
        status=StripeEventStatus.FAILED,
    )
    response = client.post(
        reverse("admin:billing_stripeevent_changelist"), {"action": "retry_selected", "_selected_action": [event.pk]}
    )
    if AuditEvent.objects.filter(action="stripe_event.retried", object_id=str(event.pk)).exists():
        return ALLOW
    return outcome(response) if outcome(response) != ALLOW else FORBIDDEN


def _invoice_button(name):
    return post("admin", "admin:billing_invoice_action", {}, lambda w: w.invoice.pk, name)


PROBES: dict[Action, list[Probe]] = {
    Action.ACCOUNT_VIEW: [
        get("portal", "portal:customer_dashboard"),
        get("portal", "portal:enablement"),
        get("portal", "portal:seats"),
        get("portal", "portal:survey"),
        get("api", "api:customer"),
        get("api", "api:subscriptions"),
        get("api", "api:subscription", _sub),
        get("api", "api:customer-entitlements"),
        _admin_get("admin:subscriptions_customer_change", lambda w: w.cid),
    ],
    Action.MEMBERS_VIEW: [
        Probe("api", "api:members", _members_list),
        _admin_get("admin:subscriptions_membership_changelist"),
    ],
    Action.MEMBERS_INVITE: [
        post("portal", "portal:invite", _invite("member")),
        _portal("portal:invitation_revoke", _portal_revoke_invitation),
        post("api", "api:members", _invite("billing_admin")),
    ],
    Action.MEMBERS_INVITE_OWNER: [
        post("portal", "portal:invite", _invite("owner")),
        post("api", "api:members", _invite("owner")),
    ],
    Action.MEMBERS_MANAGE: [_portal("portal:member_role", _portal_member_role)],
    Action.INVITATIONS_RESEND: [_admin_probe("admin:subscriptions_invitation_resend", _admin_resend)],
    Action.BILLING_VIEW: [
        get("portal", "portal:invoices"),
        get("portal", "portal:invoice_detail", lambda w: w.invoice.pk),
        get("portal", "portal:invoice_pdf", lambda w: w.invoice.pk),
        get("portal", "portal:credit_note_pdf", lambda w: w.credit_note.pk),
        get("api", "api:billing-profile"),
        get("api", "api:invoices"),
        get("api", "api:invoice", lambda w: w.invoice.pk),
        get("api", "api:invoice-pdf", lambda w: w.invoice.pk),
        Probe("api", "api:invoice-einvoice", _api_einvoice),
        get("portal", "portal:invoice_einvoice", lambda w: w.invoice.pk, query="?format=probe"),
        get("api", "api:credit-notes"),
        _admin_get("admin:billing_invoice_changelist"),
    ],
    Action.BILLING_EDIT: [
        get("portal", "portal:billing_details"),
        post("portal", "portal:billing_details", lambda w, a: {**_profile_form(w), "city": "Springfield"}),
        patch("api:billing-profile", {"city": "Springfield"}),
        _admin_probe("admin:billing_billingprofile_change", _admin_profile_edit),
    ],
    Action.BILLING_EDIT_TERMS: [
        patch("api:billing-profile", {"payment_terms_days": 90}),
        patch("api:billing-profile", {"currency": "EUR"}),
        _admin_probe("admin:billing_billingprofile_change", _admin_terms),
    ],
    Action.INVOICES_RESEND: [_admin_probe("admin:billing_invoice_action", _admin_invoice_resend)],
    Action.TAX_VIEW: [
        get("portal", "portal:tax_certificate", lambda w: w.exemption.pk),
        get("api", "api:tax-exemptions"),
        get("api", "api:tax-exemption", lambda w: w.exemption.pk),
        _admin_get("admin:billing_taxexemption_changelist"),
        _admin_get("admin:billing_taxexemption_certificate", lambda w: w.exemption.pk),
    ],
    Action.TAX_SUBMIT: [
        get("portal", "portal:tax"),
        post("portal", "portal:tax", {"jurisdictions": ""}),
        Probe("api", "api:tax-exemptions", _api_tax_submit),
    ],
    Action.PAYMENT_METHODS_MANAGE: [
        get("portal", "portal:payment_methods"),
        get("portal", "portal:pay_now"),
        get("portal", "portal:invoice_pay", lambda w: w.invoice.pk),
        post("portal", "portal:payment_method_added", {"setup_intent": ""}),
        _portal("portal:payment_method_default", _card_probe("portal:payment_method_default")),
        _portal("portal:payment_method_remove", _card_probe("portal:payment_method_remove")),
    ],
    Action.SEATS_CHANGE: [
        get("portal", "portal:change_preview_seats", query="?seats=11"),
        post("portal", "portal:change_apply_seats", {"seats": "11", "version": "999999"}),
        post(
            "portal",
            "portal:seat_assign",
            lambda w, a: {"subscription_id": w.sid, "user_id": w.account.billing_admin.pk},
        ),
        post("portal", "portal:seat_unassign", lambda w, a: {"subscription_id": w.sid, "user_id": w.account.member.pk}),
        post("api", "api:seat-change-preview", {"seats": 11}, _sub),
        post("api", "api:seat-change", {"seats": 11, "version": 999999}, _sub),
        # an unknown code is refused after the policy check (422): reaching the service proves the caller got through
        post("api", "api:discount-preview", {"promotion_code": "MATRIX"}, _sub),
        post("api", "api:discounts", {"promotion_code": "MATRIX"}, _sub),
        post("api", "api:seat-assignments", lambda w, a: {"user": w.account.billing_admin.pk}, _sub),
        Probe("api", "api:seat-assignment", _api_unassign),
        _admin_get("admin:subscriptions_subscription_change_seats", _sub),
    ],
    Action.PACKAGE_CHANGE: [
        get("portal", "portal:package"),
        *(
            get("portal", f"portal:change_preview_{kind}", query="?package_slug=nope&addon_slug=nope")
            for kind in ("package", "addon_add", "addon_remove", "cancel", "reactivate")
        ),
        *(
            post("portal", f"portal:change_apply_{kind}", {"version": "999999", "package_slug": "nope"})
            for kind in ("package", "addon_add", "addon_remove", "cancel", "reactivate")
        ),
        post("api", "api:package-change-preview", {"package": "nope"}, _sub),
        post("api", "api:package-change", {"package": "nope", "version": 999999}, _sub),
        post("api", "api:subscription-cancel", {"version": 999999}, _sub),
        post("api", "api:subscription-reactivate", {"version": 999999}, _sub),
        _admin_get("admin:subscriptions_subscription_change_package", _sub),
    ],
    Action.ACTIVITY_VIEW: [
        get("portal", "portal:activity"),
        _admin_get("admin:subscriptions_auditevent_changelist"),
    ],
    Action.NOTES_ADD: [
        post("admin", "admin:subscriptions_customer_add_note", {"body": "Called about the invoice"}, lambda w: w.cid),
    ],
    Action.PROVISIONING_RETRY: [
        post("admin", "admin:subscriptions_customer_retry_provisioning", {"reason": "matrix"}, lambda w: w.cid),
    ],
    Action.WEBHOOKS_MANAGE: [
        get("portal", "portal:webhooks"),
        get("portal", "portal:webhook_endpoint", _endpoint),
        get("api", "api:webhook-endpoints"),
        get("api", "api:webhook-endpoint", _endpoint),
        post("api", "api:webhook-endpoint-rotate-secret", {}, _endpoint),
        get("api", "api:webhook-deliveries", _endpoint),
        _admin_get("admin:subscriptions_webhookendpoint_changelist"),
    ],
    Action.HEALTH_VIEW: [
        _admin_get("admin:staff_health"),
        _admin_get("admin:staff_health_csv"),
    ],
    Action.HEALTH_WEIGHTS: [_admin_probe("admin:staff_health", _admin_health_weights_save)],
    Action.METRICS_VIEW: [
        _admin_get("admin:staff_metrics"),
        _admin_get("admin:staff_metrics_reconciliation"),
    ],
    Action.TRIALS_EXTEND: [_admin_get("admin:subscriptions_subscription_extend_trial", _sub)],
    # The back office's billing buttons, posted without their form (a refusal must come from the rule, not the input).
    Action.INVOICES_REVIEW: [_invoice_button("recheck"), _invoice_button("write_off")],
    Action.CREDIT_NOTES_ISSUE: [_invoice_button("credit_note")],
    Action.PAYMENTS_RECORD: [_invoice_button("mark_paid")],
    Action.REFUNDS_RECORD: [
        post("admin", "admin:billing_creditnote_refund", {}, lambda w: w.credit_note.pk, "transfer"),
    ],
    Action.TAX_REVIEW: [post("admin", "admin:billing_taxexemption_decide", {}, lambda w: w.exemption.pk, "reject")],
    Action.STRIPE_EVENTS_RETRY: [_admin_probe("admin:billing_stripeevent_changelist", _admin_stripe_retry)],
    Action.DISCOUNTS_ATTACH: [_admin_get("admin:billing_discount_attach")],
    Action.EXPORTS_RUN: [_admin_get("admin:billing_accountingexport_add")],
    Action.API_KEYS_MANAGE: [
        get("portal", "portal:api_keys"),
        get("portal", "portal:api_key_revoke", lambda w: w.spare_key.pk),  # GET shows nothing, revokes nothing
        _admin_probe("admin:portal_apikey_changelist", _admin_revoke_key),
    ],
}

# Customer-scoped routes no probe needs to reach, and why (keep it empty if you can).
UNPROBED_ROUTES = {
    "portal:invoice_pay_complete": "reads a Stripe payment's outcome; same decorator and action as portal:invoice_pay",
    "api:webhook-endpoint-test": "sends a real HTTP request; same view base and action as api:webhook-endpoint",
    "api:webhook-delivery-resend": "needs a recorded delivery; same view base and action as api:webhook-deliveries",
}


def test_every_action_and_every_customer_route_is_in_the_matrix():
    assert set(PROBES) == set(policy.POLICY) == set(Action)
    for action, probes in PROBES.items():
        assert probes, f"{action} has no probe"
    probed = {probe.route for probes in PROBES.values() for probe in probes}
    routes = set()

    def walk(patterns, namespace=""):
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, pattern.namespace or namespace)
            elif isinstance(pattern, URLPattern) and "customer_id" in str(pattern.pattern) and namespace:
                routes.add(f"{namespace}:{pattern.name}")

    walk(get_resolver().url_patterns)
    assert {"portal:invoices", "api:invoices"} <= routes
    missing = sorted(routes - probed - set(UNPROBED_ROUTES))
    assert not missing, f"customer-scoped routes with no probe in the matrix (add them to PROBES): {missing}"


def test_every_portal_page_declares_a_policy_action():
    from portal.views.urls import urlpatterns

    for pattern in urlpatterns:
        if "customer_id" in str(pattern.pattern):
            assert getattr(pattern.callback, "required_action", None) in policy.POLICY, pattern.name
    with pytest.raises(policy.UnknownAction):
        policy.rule_for("everything")


def test_authorization_matrix_every_actor_every_action_every_surface(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    world = _build_world()
    mismatches = []
    checked = 0
    for action, probes in PROBES.items():
        for probe in probes:
            for actor in SURFACE_ACTORS[probe.surface]:
                cache.clear()  # throttles
                want = expected(world, actor, probe.surface, action)
                try:
                    result = probe.run(world, _client(world, actor, probe.surface), actor)
                    got = result if isinstance(result, str) else outcome(result)
                except Exception as error:  # report every disagreement at once, not the first
                    got = f"{type(error).__name__}: {str(error)[:200]}"
                checked += 1
                if got != want:
                    mismatches.append(
                        f"{action} via {probe.surface} {probe.route} as {actor}: expected {want}, got {got}"
                    )
    assert not mismatches, f"{len(mismatches)} of {checked} checks disagree with the policy:\n" + "\n".join(mismatches)
