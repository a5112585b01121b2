"""People: members and invitations of a customer, and who holds a seat on a subscription."""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.response import Response

from portal.api.idempotency import IDEMPOTENCY_PARAMETER, idempotent
from portal.api.principal import parse_id
from portal.api.serializers import AsciiIntegerField, StrictSerializer, paginated
from portal.api.views.base import ApiView
from portal.api.views.subscriptions import subscription_for_access
from subscriptions.models import Membership, Role, SeatAssignment
from subscriptions.policy import Action
from subscriptions.services.members import invitation_create
from subscriptions.services.seats import seat_assign, seat_unassign


class UserRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    email = serializers.EmailField()
    name = serializers.CharField()


class MemberSerializer(serializers.Serializer):
    id = serializers.IntegerField(help_text="The membership id.")
    user = UserRefSerializer()
    role = serializers.ChoiceField(choices=Role.choices)
    created_at = serializers.DateTimeField()


class InvitationSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    email = serializers.EmailField()
    role = serializers.ChoiceField(choices=Role.choices)
    created_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField()


class MemberListApi(ApiView):
    """The people of a customer; a member sees only themselves. POST invites someone by e-mail."""

    class Input(StrictSerializer):
        email = serializers.EmailField(max_length=254)
        role = serializers.ChoiceField(choices=Role.choices, required=False, default=Role.MEMBER)

    @extend_schema(operation_id="members_list", responses={200: paginated(MemberSerializer, "Member")})
    def get(self, request, customer_id):
        access = self.access(Action.ACCOUNT_VIEW)
        members = Membership.objects.filter(customer=access.customer).select_related("user").order_by("user__email")
        if not access.can(Action.MEMBERS_VIEW):
            if access.principal.user is None:
                access.require(Action.MEMBERS_VIEW)
            members = members.filter(user=access.principal.user)  # members read their own membership only
        return self.paginate(members, MemberSerializer)

    @extend_schema(
        operation_id="member_invite",
        request=Input,
        responses={201: InvitationSerializer},
        parameters=[IDEMPOTENCY_PARAMETER],
    )
    @idempotent
    def post(self, request, customer_id):
        access = self.access(Action.MEMBERS_INVITE)
        data = self.valid_input()
        if data.validated_data["role"] == Role.OWNER:
            access.require(Action.MEMBERS_INVITE_OWNER)
        principal = self.principal()
        key = principal.api_key
        invitation = invitation_create(
            customer=access.customer,
            email=data.validated_data["email"],
            role=data.validated_data["role"],
            invited_by=principal.person,
            actor_kind=principal.actor_kind,
            api_key_scope=key.role if key is not None else "",
            api_key_label=principal.actor_label,
        )
        return Response(InvitationSerializer(invitation).data, status=201)


class SeatAssignmentSerializer(serializers.Serializer):
    user = UserRefSerializer()
    assigned_at = serializers.DateTimeField()


class SeatAssignmentListApi(ApiView):
    """Who holds a seat on the subscription; POST gives a member a seat (idempotent for the same person)."""

    class Input(StrictSerializer):
        user = AsciiIntegerField(min_value=1, max_value=2**63 - 1, help_text="The user id of a member.")

    @extend_schema(
        operation_id="seat_assignments_list", responses={200: paginated(SeatAssignmentSerializer, "SeatAssignment")}
    )
    def get(self, request, customer_id, subscription_id):
        access = self.access(Action.ACCOUNT_VIEW)
        subscription = subscription_for_access(access, subscription_id)
        assignments = (
            SeatAssignment.objects.filter(subscription=subscription).select_related("user").order_by("assigned_at")
        )
        if not access.can(Action.MEMBERS_VIEW):
            if access.principal.user is None:
                access.require(Action.MEMBERS_VIEW)
            assignments = assignments.filter(user=access.principal.user)
        return self.paginate(assignments, SeatAssignmentSerializer)

    @extend_schema(
        operation_id="seat_assign",
        request=Input,
        responses={201: SeatAssignmentSerializer},
        parameters=[IDEMPOTENCY_PARAMETER],
    )
    @idempotent
    def post(self, request, customer_id, subscription_id):
        access = self.access(Action.ACCOUNT_VIEW)
        subscription = subscription_for_access(access, subscription_id)
        access.require(Action.SEATS_CHANGE)
        data = self.valid_input()
        principal = self.principal()
        assignment = seat_assign(
            subscription_id=subscription.pk,
            user_id=data.validated_data["user"],
            actor=principal.actor,
            actor_kind=principal.actor_kind,
        )
        return Response(SeatAssignmentSerializer(assignment).data, status=201)


class SeatAssignmentDetailApi(ApiView):
    @extend_schema(operation_id="seat_unassign", responses={204: None})
    def delete(self, request, customer_id, subscription_id, user_id):
        access = self.access(Action.ACCOUNT_VIEW)
        subscription = subscription_for_access(access, subscription_id)
        access.require(Action.SEATS_CHANGE)
        user_pk = parse_id(user_id)
        if not SeatAssignment.objects.filter(subscription=subscription, user_id=user_pk).exists():
            raise NotFound("That person does not hold a seat on this subscription.")
        principal = self.principal()
        seat_unassign(
            subscription_id=subscription.pk, user_id=user_pk, actor=principal.actor, actor_kind=principal.actor_kind
        )
        return Response(status=204)
