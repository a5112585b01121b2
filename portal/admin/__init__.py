"""The portal's back office: `customers` (the customer 360 page, reading across subscriptions and billing, hence
here), `subscription_changes` (staff seat and package changes, billed, on the customer's behalf) and `credentials`
(customers' API keys, service tokens). The admin site itself is portal/admin_site.py. `ADMIN_ACTIONS` lists this
package's staff actions (subscriptions.admin.actions says what a row holds).
"""

from django.contrib import admin

from portal.admin import credentials, customers, subscription_changes
from portal.admin.credentials import ApiKeyAdmin, ServiceTokenAdmin, ServiceTokenCreateForm
from portal.admin.customers import CustomerAdmin
from portal.admin.subscription_changes import ChangePackageForm, ChangeSeatsForm, SubscriptionAdmin, staff_change_view
from subscriptions import policy
from subscriptions.admin import AdminAction, RetryReasonForm

# The index lists the signed-in role's work queues (held invoices, exemptions, failed provisioning).
admin.site.index_template = "admin/continuum_index.html"

# (model, action, form, service, policy action or model permission) of this package's admins: tests/admin/
# test_action_table.py holds it against the registered admins, docs/backoffice.md lists it. "superuser": the admin
# lets superusers only, whatever their groups.
ADMIN_ACTIONS: tuple[AdminAction, ...] = (
    AdminAction(
        "subscriptions.customer",
        "subscriptions_customer_retry_provisioning",
        RetryReasonForm,
        "subscriptions.services.provisioning.entitlements_retry",
        policy.Action.PROVISIONING_RETRY,
    ),
    AdminAction(
        "subscriptions.customer",
        "subscriptions_customer_add_note",
        None,  # the note's text is checked by the service
        "subscriptions.services.notes.staff_note_add",
        policy.Action.NOTES_ADD,
    ),
    AdminAction(
        "subscriptions.subscription",
        "subscriptions_subscription_change_seats",
        ChangeSeatsForm,
        "billing.services.changes.change_apply",
        policy.Action.SEATS_CHANGE,
    ),
    AdminAction(
        "subscriptions.subscription",
        "subscriptions_subscription_change_package",
        ChangePackageForm,
        "billing.services.changes.change_apply",
        policy.Action.PACKAGE_CHANGE,
    ),
    AdminAction(
        "portal.apikey",
        "revoke_selected",
        None,
        "portal.services.api_keys.api_key_revoke",
        policy.Action.API_KEYS_MANAGE,
    ),
    AdminAction(
        "portal.servicetoken",
        "add_view",
        ServiceTokenCreateForm,
        "portal.services.api_keys.service_token_create",
        permission="superuser",
    ),
    AdminAction(
        "portal.servicetoken",
        "revoke_selected",
        None,
        "portal.services.api_keys.service_token_revoke",
        permission="superuser",
    ),
)

__all__ = [
    "ADMIN_ACTIONS",
    "ApiKeyAdmin",
    "ChangePackageForm",
    "ChangeSeatsForm",
    "CustomerAdmin",
    "ServiceTokenAdmin",
    "ServiceTokenCreateForm",
    "SubscriptionAdmin",
    "credentials",
    "customers",
    "staff_change_view",
    "subscription_changes",
]
