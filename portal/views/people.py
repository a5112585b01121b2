"""Seat assignment, invitations (send, revoke, accept) and role changes."""

from django.contrib import messages
from django.contrib.auth import login
from django.shortcuts import redirect, render

from portal.inputs import id_from_request
from portal.permissions import INVITE, MEMBERS, SEATS, customer_view, get_for_customer
from portal.views.seats import seats_page_context
from subscriptions.exceptions import SubscriptionError
from subscriptions.models import LIVE_STATUSES, Invitation, Membership, Role, Subscription
from subscriptions.services.members import (
    invitation_accept,
    invitation_create,
    invitation_from_token,
    invitation_revoke,
    membership_change_role,
    membership_remove,
)
from subscriptions.services.seats import seat_assign, seat_unassign


def _back(request):
    return redirect("portal:seats", customer_id=request.customer.pk)


def _seat_change(request, service, done: str):
    if request.method != "POST":
        return _back(request)
    subscription = get_for_customer(
        Subscription.objects.filter(status__in=LIVE_STATUSES),
        request.customer,
        pk=id_from_request(request.POST.get("subscription_id")),
    )
    membership = get_for_customer(
        Membership.objects.select_related("user"),
        request.customer,
        user_id=id_from_request(request.POST.get("user_id")),
    )
    try:
        service(subscription_id=subscription.pk, user_id=membership.user_id, actor=request.user)
    except SubscriptionError as e:
        messages.error(request, e.message)
    else:
        messages.success(request, done.format(who=membership.user.get_full_name()))
    return _back(request)


@customer_view(SEATS)
def seat_assign_view(request):
    return _seat_change(request, seat_assign, "{who} now has a seat.")


@customer_view(SEATS)
def seat_unassign_view(request):
    return _seat_change(request, seat_unassign, "{who}'s seat is free again.")


@customer_view(INVITE)
def invite(request):
    if request.method != "POST":
        return _back(request)
    email = request.POST.get("email", "").strip()
    role = request.POST.get("role", Role.MEMBER)
    if role == Role.OWNER and not request.can.invite_owner:
        messages.error(request, "Only an owner can invite another owner.")
        return _back(request)
    try:
        invitation = invitation_create(customer=request.customer, email=email, role=role, invited_by=request.user)
    except SubscriptionError as e:
        context = seats_page_context(request)
        context.update(
            {"invite_form": {"email": email, "role": role}, "invite_errors": {e.field or "email": e.message}}
        )
        return render(request, "portal/seats.html", context, status=422)
    messages.success(request, f"Invitation sent to {invitation.email}. The link works for 7 days.")
    return _back(request)


@customer_view(INVITE)
def invitation_revoke_view(request, invitation_id: int):
    invitation = get_for_customer(Invitation, request.customer, pk=invitation_id)
    if request.method == "POST":
        try:
            invitation_revoke(invitation_id=invitation.pk, actor=request.user)
        except SubscriptionError as e:
            messages.error(request, e.message)
        else:
            messages.success(request, f"The invitation to {invitation.email} no longer works.")
    return _back(request)


@customer_view(MEMBERS)
def member_role(request, membership_id: int):
    membership = get_for_customer(Membership.objects.select_related("user"), request.customer, pk=membership_id)
    if request.method == "POST":
        try:
            if request.POST.get("action") == "remove":
                membership_remove(membership_id=membership.pk, actor=request.user)
                messages.success(request, f"{membership.user.email} no longer has access to {request.customer.name}.")
            else:
                updated = membership_change_role(
                    membership_id=membership.pk, role=request.POST.get("role", ""), actor=request.user
                )
                messages.success(request, f"{updated.user.email} is now {updated.get_role_display().lower()}.")
        except SubscriptionError as e:
            messages.error(request, e.message)
    return _back(request)


def accept_invitation(request, token: str):
    """The link from the invitation e-mail: join as the signed-in person, or create an account and join."""
    try:
        invitation = invitation_from_token(token)
    except SubscriptionError as e:
        return render(request, "portal/invitation.html", {"error": e}, status=410)
    context = {"invitation": invitation, "token": token, "errors": {}, "form": {}}
    signed_in = request.user.is_authenticated
    if signed_in and request.user.email.lower() != invitation.email.lower():
        context["wrong_user"] = True
    if request.method == "POST":
        name = request.POST.get("name", "")
        try:
            if signed_in:
                membership = invitation_accept(token=token, user=request.user)
            else:
                membership = invitation_accept(token=token, name=name, password=request.POST.get("password", ""))
                login(request, membership.user, backend="django.contrib.auth.backends.ModelBackend")
        except SubscriptionError as e:
            context["errors"] = {e.field or "form": e.message}
            context["form"] = {"name": name}
            return render(request, "portal/invitation.html", context, status=422)
        messages.success(request, f"Welcome to {membership.customer.name}.")
        return redirect("portal:customer_dashboard", customer_id=membership.customer_id)
    return render(request, "portal/invitation.html", context)
