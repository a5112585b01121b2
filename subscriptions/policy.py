"""Who may do what: the one table every surface asks — portal pages, the REST API and the back office.

An *action* is something a caller wants to do to one customer's account (`billing.edit`, `members.invite`, …).
For each action the table says

- which **customer roles** may do it (a person's membership role: owner, billing admin, member),
- which **API key scopes** may do it (a customer API key's role: read_only, billing, admin),
- which **Django permission** a **staff** user needs for it (`None`: staff never do it), and whether staff do it
  in the back office only (`staff_in_admin_only`, every write: staff act on a customer's behalf with a reason and a
  preview there) or may also read it through the API.

Callers who are not on the account at all (another customer's owner, a key of another customer) get a 404 from
every surface, whatever the action, so ids leak nothing; anonymous callers are asked to sign in. Those two rules
are the surfaces' and are not in the table.

The table lives in the lowest layer (`subscriptions`, which depends on nothing of ours) so that the portal, the
API and the admins of both apps import it without inverting the layers; it names billing's permissions as plain
strings. The services still enforce their own invariants whatever the caller (e.g. `invitation_create` refuses an
owner invitation unless an owner makes it; `billing_profile_update` refuses staff-only fields from customers).
docs/decisions.md says why this is a plain table rather than `rules` or `django-guardian`.
"""

from dataclasses import dataclass
from enum import StrEnum

# Customer roles (subscriptions.models.Role values) and API key scopes (portal.models.ApiKeyRole values).
OWNER = "owner"
BILLING_ADMIN = "billing_admin"
MEMBER = "member"
KEY_READ_ONLY = "key:read_only"
KEY_BILLING = "key:billing"
KEY_ADMIN = "key:admin"

CUSTOMER_ROLES = (OWNER, BILLING_ADMIN, MEMBER)
KEY_SCOPES = (KEY_READ_ONLY, KEY_BILLING, KEY_ADMIN)


class Action(StrEnum):
    ACCOUNT_VIEW = "account.view"
    MEMBERS_VIEW = "members.view"
    MEMBERS_INVITE = "members.invite"
    MEMBERS_INVITE_OWNER = "members.invite_owner"
    MEMBERS_MANAGE = "members.manage"
    INVITATIONS_RESEND = "invitations.resend"
    BILLING_VIEW = "billing.view"
    BILLING_EDIT = "billing.edit"
    BILLING_EDIT_TERMS = "billing.edit_terms"
    INVOICES_RESEND = "invoices.resend"
    TAX_VIEW = "tax.view"
    TAX_SUBMIT = "tax.submit"
    PAYMENT_METHODS_MANAGE = "payment_methods.manage"
    SEATS_CHANGE = "seats.change"
    PACKAGE_CHANGE = "package.change"
    ACTIVITY_VIEW = "activity.view"
    API_KEYS_MANAGE = "api_keys.manage"
    NOTES_ADD = "notes.add"
    PROVISIONING_RETRY = "provisioning.retry"
    TRIALS_EXTEND = "trials.extend"
    INVOICES_REVIEW = "invoices.review"
    CREDIT_NOTES_ISSUE = "credit_notes.issue"
    PAYMENTS_RECORD = "payments.record"
    REFUNDS_RECORD = "refunds.record"
    TAX_REVIEW = "tax.review"
    STRIPE_EVENTS_RETRY = "stripe_events.retry"
    DISCOUNTS_ATTACH = "discounts.attach"
    EXPORTS_RUN = "exports.run"
    WEBHOOKS_MANAGE = "webhooks.manage"
    HEALTH_VIEW = "health.view"
    HEALTH_WEIGHTS = "health.weights"
    METRICS_VIEW = "metrics.view"


@dataclass(frozen=True)
class Rule:
    action: Action
    description: str  # in the words of the docs tables
    allowed: frozenset[str]  # customer roles and API key scopes
    staff_permission: str | None = None
    staff_in_admin_only: bool = True  # False: staff with the permission may also read it through the API


def _rule(action, description, allowed, staff_permission=None, *, staff_in_admin_only=True) -> Rule:
    return Rule(action, description, frozenset(allowed), staff_permission, staff_in_admin_only)


ALL_ROLES = (OWNER, BILLING_ADMIN, MEMBER, KEY_READ_ONLY, KEY_BILLING, KEY_ADMIN)
BILLING_READERS = (OWNER, BILLING_ADMIN, KEY_READ_ONLY, KEY_BILLING, KEY_ADMIN)
BILLING_WRITERS = (OWNER, BILLING_ADMIN, KEY_BILLING, KEY_ADMIN)

POLICY: dict[Action, Rule] = {
    rule.action: rule
    for rule in [
        _rule(
            Action.ACCOUNT_VIEW,
            "See the account: dashboard, subscriptions, entitlements, one's own seat",
            ALL_ROLES,
            "subscriptions.view_customer",
            staff_in_admin_only=False,
        ),
        _rule(
            Action.MEMBERS_VIEW,
            "See every member and seat holder (a member sees only themselves)",
            BILLING_READERS,
            "subscriptions.view_membership",
            staff_in_admin_only=False,
        ),
        _rule(
            Action.MEMBERS_INVITE, "Invite people as member or billing admin, revoke invitations", (OWNER, KEY_ADMIN)
        ),
        _rule(Action.MEMBERS_INVITE_OWNER, "Invite an owner", (OWNER,)),
        _rule(Action.MEMBERS_MANAGE, "Change roles, remove people", (OWNER,)),
        _rule(
            Action.INVITATIONS_RESEND,
            "Resend a pending invitation (back office)",
            (),
            "subscriptions.change_invitation",
        ),
        _rule(
            Action.BILLING_VIEW,
            "See billing details, invoices (PDFs) and credit notes",
            BILLING_READERS,
            "billing.view_invoice",
            staff_in_admin_only=False,
        ),
        _rule(
            Action.BILLING_EDIT,
            "Edit billing details (legal name, address, e-mails, PO, tax ID, language, change billing)",
            BILLING_WRITERS,
            "billing.change_billingprofile",
        ),
        _rule(
            Action.BILLING_EDIT_TERMS,
            "Set payment terms and invoice currency (agreed with billing staff)",
            (),
            "billing.change_billingprofile",
        ),
        _rule(Action.INVOICES_RESEND, "Resend an invoice e-mail (back office)", (), "billing.send_email_invoice"),
        _rule(
            Action.TAX_VIEW,
            "See tax exemptions and their status",
            BILLING_READERS,
            "billing.view_taxexemption",
            staff_in_admin_only=False,
        ),
        _rule(Action.TAX_SUBMIT, "Submit or replace a tax exemption certificate", BILLING_WRITERS),
        _rule(Action.PAYMENT_METHODS_MANAGE, "Manage payment methods, pay an invoice now", (OWNER, BILLING_ADMIN)),
        _rule(
            Action.SEATS_CHANGE,
            "Change the seat count (preview, then apply; billed), assign and unassign seats",
            BILLING_WRITERS,
            "subscriptions.change_subscription",
        ),
        _rule(
            Action.PACKAGE_CHANGE,
            "Change package or interval, add-ons, cancel and reactivate (billed)",
            (OWNER, KEY_ADMIN),
            "subscriptions.change_subscription",
        ),
        _rule(Action.ACTIVITY_VIEW, "See the activity log", (OWNER,), "subscriptions.view_auditevent"),
        _rule(Action.API_KEYS_MANAGE, "Create and revoke API keys", (OWNER,), "portal.change_apikey"),
        _rule(
            Action.WEBHOOKS_MANAGE,
            "Register webhook endpoints, rotate their secrets, see and resend deliveries",
            (OWNER, KEY_ADMIN),
            "subscriptions.change_webhookendpoint",
        ),
        _rule(
            Action.NOTES_ADD, "Add an internal note to the customer (back office)", (), "subscriptions.add_staffnote"
        ),
        _rule(
            Action.PROVISIONING_RETRY,
            "Retry provisioning of the customer's entitlements (back office)",
            (),
            "subscriptions.change_entitlement",
        ),
        # Staff actions of the back office (billing/admin, subscriptions/admin: their ADMIN_ACTIONS name these).
        _rule(
            Action.TRIALS_EXTEND,
            "Extend a customer's trial, with a reason (back office)",
            (),
            "subscriptions.change_subscription",
        ),
        _rule(
            Action.INVOICES_REVIEW,
            "Re-run an invoice's checks, approve and issue, void or write off (back office)",
            (),
            "billing.change_invoice",
        ),
        _rule(
            Action.CREDIT_NOTES_ISSUE, "Issue a credit note on an invoice (back office)", (), "billing.add_creditnote"
        ),
        _rule(
            Action.PAYMENTS_RECORD,
            "Record a bank transfer received for an invoice (back office)",
            (),
            "billing.add_payment",
        ),
        _rule(
            Action.REFUNDS_RECORD,
            "Record a refund paid by transfer, resend a pending card refund (back office)",
            (),
            "billing.add_refund",
        ),
        _rule(
            Action.TAX_REVIEW,
            "Approve or reject a tax exemption certificate (back office)",
            (),
            "billing.change_taxexemption",
        ),
        _rule(
            Action.STRIPE_EVENTS_RETRY, "Retry a failed Stripe event (back office)", (), "billing.change_stripeevent"
        ),
        _rule(
            Action.DISCOUNTS_ATTACH,
            "Attach a coupon to a customer, end a discount at its period boundary (back office)",
            (),
            "billing.add_discount",
        ),
        _rule(
            Action.EXPORTS_RUN,
            "Build and download accounting exports (back office)",
            (),
            "billing.run_accountingexport",
        ),
        # Staff pages across all customers (issue 20): never a customer's, so no customer role or key has them.
        _rule(
            Action.HEALTH_VIEW,
            "See customer health: scores, the at-risk list and its CSV export (back office)",
            (),
            "billing.view_customerhealthsnapshot",
        ),
        _rule(
            Action.HEALTH_WEIGHTS,
            "Change the health score's weights and at-risk threshold (back office)",
            (),
            "billing.add_healthweights",
        ),
        _rule(
            Action.METRICS_VIEW,
            "See revenue metrics: MRR, retention, LTV, billing quality (back office)",
            (),
            "portal.view_revenuemetrics",
        ),
    ]
}

assert set(POLICY) == set(Action), "every action needs a policy entry"


class UnknownAction(ValueError):
    pass


def rule_for(action) -> Rule:
    try:
        return POLICY[Action(action)]
    except ValueError:
        raise UnknownAction(f"No policy entry for action {action!r}; add it to subscriptions/policy.py.")


def role_allows(role: str, action) -> bool:
    """May a customer role (`owner`…) or an API key scope (`key:billing`…) do `action`?"""
    return role in rule_for(action).allowed


def key_scope(api_key_role: str) -> str:
    return f"key:{api_key_role}"


def staff_allows(user, action, *, in_admin: bool) -> bool:
    """May staff `user` do `action` — in the back office (`in_admin`), or through the API (reads only)?"""
    rule = rule_for(action)
    if user is None or not getattr(user, "is_staff", False) or not user.is_active or rule.staff_permission is None:
        return False
    if not in_admin and rule.staff_in_admin_only:
        return False
    return user.has_perm(rule.staff_permission)


def actions_for_role(role: str) -> frozenset[Action]:
    return frozenset(action for action, rule in POLICY.items() if role in rule.allowed)


# --- the docs table --------------------------------------------------------------------------------------------

ROLE_HEADERS = {
    OWNER: "owner",
    BILLING_ADMIN: "billing admin",
    MEMBER: "member",
    KEY_READ_ONLY: "`read_only` key",
    KEY_BILLING: "`billing` key",
    KEY_ADMIN: "`admin` key",
}


def policy_markdown_table(*, staff_grants: dict[str, set[str]] | None = None) -> str:
    """The policy as a Markdown table (docs/api.md, docs/portal.md, docs/backoffice.md show it; a test compares).

    `staff_grants`: group name → its permissions ("app.codename"); the staff columns say ✓ where the group holds the
    action's permission (superusers hold every permission)."""
    staff_grants = staff_grants or {}
    headers = ["action", *ROLE_HEADERS.values(), *staff_grants.keys(), "superuser", "staff permission"]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for action, rule in POLICY.items():
        cells = [f"`{action}` {rule.description}"]
        cells += ["✓" if role in rule.allowed else "–" for role in ROLE_HEADERS]
        where = "" if rule.staff_in_admin_only else " (+API read)"
        for perms in staff_grants.values():
            cells.append(("✓" + where) if rule.staff_permission in perms else "–")
        cells.append(("✓" + where) if rule.staff_permission else "–")
        cells.append(f"`{rule.staff_permission}`" if rule.staff_permission else "–")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
