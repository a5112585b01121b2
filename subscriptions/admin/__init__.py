"""Back-office registrations for subscriptions, one module per model family. Admin actions call services; they
never edit money or status fields.

- `base`: the read-only admin and inline everything builds on; `actions`: the `AdminAction` table row and the one
  way a posted action runs.
- `people` (users, memberships, invitations), `catalog` (SKUs, packages, prices), `subscription` (subscriptions,
  extending a trial), `audit` (audit trail, staff notes), `provisioning` (entitlements, runs), `webhooks`.

Who may do what comes from model permissions (the groups are created by portal/migrations/0001_staff_groups.py):
view-only pages for everyone, superusers included, except the catalog, which superusers edit (validated on save).
A staff action on a row (change seats, extend a trial, resend an invitation...) needs the model's "change"
permission or the policy action named in `ADMIN_ACTIONS`; the admin form itself stays read-only and the action runs
the same service the portal runs.
"""

from subscriptions import policy
from subscriptions.admin import audit, catalog, people, provisioning, subscription, webhooks
from subscriptions.admin.actions import AdminAction, Button, button_rows, form_errors, run_button, run_posted
from subscriptions.admin.base import ReadOnlyAdmin, ReadOnlyInline
from subscriptions.admin.catalog import CatalogValidatedMixin, PackageAdmin, SkuAdmin, SuperuserEditsMixin
from subscriptions.admin.people import InvitationAdmin, MembershipAdmin, UserAdmin
from subscriptions.admin.provisioning import (
    EntitlementAdmin,
    ProvisioningRunAdmin,
    RetryReasonForm,
    can_retry_provisioning,
    retry_provisioning,
)
from subscriptions.admin.subscription import (
    ExtendTrialForm,
    StaffReasonForm,
    SubscriptionAdmin,
    subscription_staff_actions,
)
from subscriptions.admin.webhooks import WebhookEndpointForm

_SERVICES = "subscriptions.services"

# (model, action, form, service, policy action or model permission): tests/admin/test_action_table.py holds it
# against the registered admins, docs/backoffice.md lists it.
ADMIN_ACTIONS: tuple[AdminAction, ...] = (
    AdminAction(
        "subscriptions.invitation",
        "resend_selected",
        None,
        f"{_SERVICES}.members.invitation_resend",
        policy.Action.INVITATIONS_RESEND,
    ),
    AdminAction(
        "subscriptions.invitation",
        "subscriptions_invitation_resend",
        None,
        f"{_SERVICES}.members.invitation_resend",
        policy.Action.INVITATIONS_RESEND,
    ),
    AdminAction(
        "subscriptions.subscription",
        "subscriptions_subscription_extend_trial",
        ExtendTrialForm,
        f"{_SERVICES}.trials.subscription_extend_trial",
        policy.Action.TRIALS_EXTEND,
    ),
    AdminAction(
        "subscriptions.entitlement",
        "retry_selected",
        None,
        f"{_SERVICES}.provisioning.entitlements_retry",
        policy.Action.PROVISIONING_RETRY,
    ),
    AdminAction(
        "subscriptions.webhookendpoint",
        "save_model:add",
        WebhookEndpointForm,
        f"{_SERVICES}.webhooks.webhook_endpoint_create",
        permission="subscriptions.add_webhookendpoint",
    ),
    AdminAction(
        "subscriptions.webhookendpoint",
        "save_model:change",
        WebhookEndpointForm,
        f"{_SERVICES}.webhooks.webhook_endpoint_update",
        policy.Action.WEBHOOKS_MANAGE,
    ),
    AdminAction(
        "subscriptions.webhookendpoint",
        "send_test",
        None,
        f"{_SERVICES}.webhooks.webhook_endpoint_send_test",
        policy.Action.WEBHOOKS_MANAGE,
    ),
    AdminAction(
        "subscriptions.webhookendpoint",
        "rotate_secret",
        None,
        f"{_SERVICES}.webhooks.webhook_endpoint_rotate_secret",
        policy.Action.WEBHOOKS_MANAGE,
    ),
    AdminAction(
        "subscriptions.webhookdelivery",
        "resend",
        None,
        f"{_SERVICES}.webhooks.webhook_delivery_resend",
        permission="subscriptions.change_webhookdelivery",
    ),
)

__all__ = [
    "ADMIN_ACTIONS",
    "AdminAction",
    "Button",
    "CatalogValidatedMixin",
    "EntitlementAdmin",
    "ExtendTrialForm",
    "InvitationAdmin",
    "MembershipAdmin",
    "PackageAdmin",
    "ProvisioningRunAdmin",
    "ReadOnlyAdmin",
    "ReadOnlyInline",
    "RetryReasonForm",
    "SkuAdmin",
    "StaffReasonForm",
    "SubscriptionAdmin",
    "SuperuserEditsMixin",
    "UserAdmin",
    "audit",
    "button_rows",
    "can_retry_provisioning",
    "catalog",
    "form_errors",
    "people",
    "provisioning",
    "retry_provisioning",
    "run_button",
    "run_posted",
    "subscription",
    "subscription_staff_actions",
    "webhooks",
]
