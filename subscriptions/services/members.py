"""People of a customer: invitations (signed, expiring, e-mailed links) and memberships with roles.

Guarantees: a customer always keeps at least one owner (role changes and removals lock the customer's memberships
in primary-key order and check); every change is audited; removing a member frees their seats and queues an
entitlements reconcile.
"""

from datetime import timedelta

from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core import signing
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.utils import timezone

from subscriptions import policy
from subscriptions.exceptions import InvitationError, InvitationExpired, LastOwner, MembershipError, RoleNotGrantable
from subscriptions.models import Customer, Invitation, Membership, Role, SeatAssignment, User
from subscriptions.money import format_date
from subscriptions.services.audit import audit_record
from subscriptions.services.events import member_event_record
from subscriptions.services.provisioning import entitlements_reconcile_enqueue

INVITATION_SALT = "continuum.invitation"
INVITATION_VALID_FOR = timedelta(days=7)


# --- invitations -----------------------------------------------------------------------------------------------


def invitation_token(invitation: Invitation) -> str:
    """A signed token naming the invitation and its e-mail; tampering or a changed e-mail invalidates it."""
    return signing.dumps({"i": invitation.pk, "e": invitation.email}, salt=INVITATION_SALT)


def invitation_url(invitation: Invitation) -> str:
    return f"{settings.SITE_URL}/invitations/{invitation_token(invitation)}/"


def _send_invitation(invitation: Invitation) -> None:
    inviter = invitation.invited_by.get_full_name() if invitation.invited_by else "Your team"
    role = Role(invitation.role).label.lower()
    expires = format_date(invitation.expires_at, invitation.customer.country)  # as the team's country writes dates
    send_mail(
        subject=f"{inviter} invited you to {invitation.customer.name} on Continuum",
        message=(
            f"Hello,\n\n{inviter} invited you to join {invitation.customer.name} on Continuum as {role}.\n\n"
            f"Accept the invitation here:\n{invitation_url(invitation)}\n\n"
            f"The link works until {expires}. If you were not expecting this, you can ignore this e-mail.\n"
        ),
        from_email=settings.DEFAULT_FROM_EMAIL,
        recipient_list=[invitation.email],
    )


def _normalise_email(email) -> str:
    if not isinstance(email, str):
        raise InvitationError("Enter an e-mail address.", field="email")
    email = email.strip().lower()
    try:
        validate_email(email)
    except ValidationError:
        raise InvitationError(f"“{email}” is not a valid e-mail address.", field="email")
    return email


def _validate_role(role) -> str:
    if role not in Role.values:
        raise MembershipError("Choose owner, billing admin or member.", field="role")
    return role


def _require_may_grant(*, customer: Customer, role: str, invited_by: User | None, api_key_scope: str) -> None:
    """Who may grant which role (subscriptions/policy.py), whatever surface calls: a person by their membership role
    on this customer, a key by its scope. No inviter at all is the system (sign-up, demo data)."""
    if api_key_scope:
        inviter = policy.key_scope(api_key_scope)
    elif invited_by is not None:
        inviter = (
            Membership.objects.filter(customer=customer, user=invited_by).values_list("role", flat=True).first() or ""
        )
    else:
        return
    if not policy.role_allows(inviter, policy.Action.MEMBERS_INVITE):
        raise RoleNotGrantable(f"Only owners (or an admin API key) can invite people to {customer.name}.")
    if role == Role.OWNER and not policy.role_allows(inviter, policy.Action.MEMBERS_INVITE_OWNER):
        raise RoleNotGrantable("Only an owner can invite another owner.")


def invitation_create(
    *,
    customer: Customer,
    email: str,
    role: str = Role.MEMBER,
    invited_by: User | None,
    actor_kind: str | None = None,
    api_key_scope: str = "",
    api_key_label: str = "",
) -> Invitation:
    """Invite `email` to `customer` with `role` and e-mail the link (after commit).

    The inviter must be allowed to grant `role` (`_require_may_grant`): owners and admin keys invite, and only an
    owner invites an owner. An invitation made with an API key (`api_key_scope`, `api_key_label`) is recorded as made
    by the key, with no person as inviter. A pending invitation to the same address is replaced (its link stops
    working). Refuses people who are already members. Audited.
    """
    email = _normalise_email(email)
    role = _validate_role(role)
    if api_key_scope:
        invited_by = None
    _require_may_grant(customer=customer, role=role, invited_by=invited_by, api_key_scope=api_key_scope)
    now = timezone.now()
    with transaction.atomic():
        if Membership.objects.filter(customer=customer, user__email__iexact=email).exists():
            raise InvitationError(f"{email} is already a member of {customer.name}.", field="email")
        Invitation.objects.filter(
            customer=customer, email__iexact=email, accepted_at__isnull=True, revoked_at__isnull=True
        ).update(revoked_at=now)
        invitation = Invitation.objects.create(
            customer=customer,
            email=email,
            role=role,
            invited_by=invited_by,
            invited_by_key=api_key_label[:120],
            expires_at=now + INVITATION_VALID_FOR,
        )
        by_key = f" with {api_key_label}" if api_key_label else ""
        audit_record(
            customer=customer,
            actor=invited_by,
            actor_kind=actor_kind,
            action="invitation.created",
            obj=invitation,
            summary=f"Invited {email} as {Role(role).label.lower()}{by_key}",
            after={"email": email, "role": role, **({"api_key": api_key_label} if api_key_label else {})},
        )
        transaction.on_commit(lambda: _send_invitation(invitation))
    return invitation


def invitation_resend(*, invitation_id: int, actor: User | None, actor_kind: str | None = None) -> Invitation:
    """E-mail a pending invitation again with a fresh expiry (the old link keeps working until then)."""
    with transaction.atomic():
        invitation = Invitation.objects.select_for_update().select_related("customer").get(pk=invitation_id)
        _require_pending(invitation, check_expiry=False)
        invitation.expires_at = timezone.now() + INVITATION_VALID_FOR
        invitation.save(update_fields=["expires_at"])
        audit_record(
            customer=invitation.customer,
            actor=actor,
            actor_kind=actor_kind,
            action="invitation.resent",
            obj=invitation,
            summary=f"Invitation to {invitation.email} sent again",
        )
        transaction.on_commit(lambda: _send_invitation(invitation))
    return invitation


def invitation_revoke(*, invitation_id: int, actor: User | None, actor_kind: str | None = None) -> Invitation:
    """Revoke a pending invitation: its link stops working."""
    with transaction.atomic():
        invitation = Invitation.objects.select_for_update().select_related("customer").get(pk=invitation_id)
        _require_pending(invitation, check_expiry=False)
        invitation.revoked_at = timezone.now()
        invitation.save(update_fields=["revoked_at"])
        audit_record(
            customer=invitation.customer,
            actor=actor,
            actor_kind=actor_kind,
            action="invitation.revoked",
            obj=invitation,
            summary=f"Invitation to {invitation.email} revoked",
        )
    return invitation


def _require_pending(invitation: Invitation, *, check_expiry: bool = True) -> None:
    if invitation.accepted_at:
        raise InvitationError("This invitation has already been accepted.")
    if invitation.revoked_at:
        raise InvitationError("This invitation was withdrawn. Ask for a new one.")
    if check_expiry and invitation.expires_at <= timezone.now():
        raise InvitationExpired("This invitation has expired. Ask for a new one.")


def invitation_from_token(token: str) -> Invitation:
    """The pending invitation a token names, or `InvitationError`/`InvitationExpired` with a readable message."""
    try:
        data = signing.loads(token, salt=INVITATION_SALT, max_age=INVITATION_VALID_FOR * 2)
    except signing.SignatureExpired:
        raise InvitationExpired("This invitation has expired. Ask for a new one.")
    except (signing.BadSignature, TypeError):
        raise InvitationError("This invitation link is not valid. Check that you copied all of it.")
    invitation = (
        Invitation.objects.select_related("customer").filter(pk=data.get("i"), email__iexact=data.get("e")).first()
    )
    if invitation is None:
        raise InvitationError("This invitation link is not valid. Check that you copied all of it.")
    _require_pending(invitation)
    return invitation


def invitation_accept(
    *, token: str, user: User | None = None, name: str = "", password: str | None = None
) -> Membership:
    """Accept an invitation: as the signed-in `user` (whose e-mail must match), or by creating an account.

    Creating an account needs a password that passes the password validators. Idempotent per person: a second
    acceptance of a used link is refused, and an existing membership is kept (not duplicated). Audited.
    """
    with transaction.atomic():
        invitation = invitation_from_token(token)
        invitation = Invitation.objects.select_for_update().select_related("customer").get(pk=invitation.pk)
        _require_pending(invitation)
        if user is not None:
            if user.email.lower() != invitation.email.lower():
                raise InvitationError(
                    f"This invitation was sent to {invitation.email}. Sign in with that address to accept it."
                )
        else:
            if User.objects.filter(email__iexact=invitation.email).exists():
                raise InvitationError(
                    f"An account for {invitation.email} already exists. Sign in to accept the invitation."
                )
            if not password:
                raise InvitationError("Choose a password.", field="password")
            candidate = User(email=invitation.email, name=name)
            try:
                validate_password(password, user=candidate)
            except ValidationError as error:
                raise InvitationError(" ".join(error.messages), field="password")
            try:
                user = User.objects.create_user(invitation.email, password, name=name.strip()[:150])
            except IntegrityError:
                raise InvitationError(
                    f"An account for {invitation.email} already exists. Sign in to accept the invitation."
                )
        membership, created = Membership.objects.get_or_create(
            user=user, customer=invitation.customer, defaults={"role": invitation.role}
        )
        invitation.accepted_at = timezone.now()
        invitation.save(update_fields=["accepted_at"])
        audit_record(
            customer=invitation.customer,
            actor=user,
            action="invitation.accepted",
            obj=membership,
            summary=f"{user.email} joined as {membership.get_role_display().lower()}",
            after={"email": user.email, "role": membership.role, "new_membership": created},
        )
        if created:
            member_event_record(membership, added=True)
    return membership


# --- memberships -----------------------------------------------------------------------------------------------


def _lock_memberships(customer_id: int) -> list[Membership]:
    # Locking every membership of the customer (in pk order) serialises concurrent demotions/removals, so two owners
    # cannot demote each other at once and leave nobody in charge.
    return list(
        Membership.objects.select_for_update().filter(customer_id=customer_id).select_related("user").order_by("pk")
    )


def _require_other_owner(memberships: list[Membership], leaving: Membership, customer: Customer) -> None:
    owners = [m for m in memberships if m.role == Role.OWNER and m.pk != leaving.pk]
    if leaving.role == Role.OWNER and not owners:
        raise LastOwner(f"{customer.name} needs at least one owner. Make someone else an owner first.")


def _require_may_manage(memberships: list[Membership], actor: User | None) -> None:
    """Role changes and removals are the owners' (subscriptions/policy.py `members.manage`), whatever surface calls;
    no actor is the system."""
    if actor is None:
        return
    role = next((m.role for m in memberships if m.user_id == actor.pk), "")
    if not policy.role_allows(role, policy.Action.MEMBERS_MANAGE):
        raise RoleNotGrantable("Only an owner can change roles or remove people.")


def membership_change_role(
    *, membership_id: int, role: str, actor: User | None, actor_kind: str | None = None
) -> Membership:
    """Change a member's role (owners only, `_require_may_manage`); the last owner cannot be demoted. Audited."""
    role = _validate_role(role)
    with transaction.atomic():
        customer_id = Membership.objects.values_list("customer_id", flat=True).get(pk=membership_id)
        memberships = _lock_memberships(customer_id)
        _require_may_manage(memberships, actor)
        membership = next(m for m in memberships if m.pk == membership_id)
        if membership.role == role:
            return membership
        if role != Role.OWNER:
            _require_other_owner(memberships, membership, membership.customer)
        before = membership.role
        membership.role = role
        membership.save(update_fields=["role"])
        audit_record(
            customer=membership.customer,
            actor=actor,
            actor_kind=actor_kind,
            action="membership.role_changed",
            obj=membership,
            summary=f"{membership.user.email} is now {membership.get_role_display().lower()}",
            before={"role": before},
            after={"role": role},
        )
    return membership


def membership_remove(*, membership_id: int, actor: User | None, actor_kind: str | None = None) -> None:
    """Remove a member from the customer and free any seat they held (owners only); the last owner stays."""
    with transaction.atomic():
        customer_id = Membership.objects.values_list("customer_id", flat=True).get(pk=membership_id)
        memberships = _lock_memberships(customer_id)
        _require_may_manage(memberships, actor)
        membership = next(m for m in memberships if m.pk == membership_id)
        _require_other_owner(memberships, membership, membership.customer)
        freed = SeatAssignment.objects.filter(subscription__customer_id=customer_id, user=membership.user).delete()[0]
        audit_record(
            customer=membership.customer,
            actor=actor,
            actor_kind=actor_kind,
            action="membership.removed",
            obj=membership,
            summary=f"{membership.user.email} was removed",
            before={"email": membership.user.email, "role": membership.role, "seats_freed": freed},
        )
        member_event_record(membership, added=False)
        membership.delete()
        if freed:
            entitlements_reconcile_enqueue(customer_id=customer_id, trigger="membership.removed")
