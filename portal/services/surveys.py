"""The effort survey after a self-service change or a sign-up."""

from django.db import IntegrityError, transaction

from portal.models import EffortSurveyResponse
from subscriptions.exceptions import SubscriptionError
from subscriptions.inputs import parse_int
from subscriptions.models import Customer, SubscriptionChange, User
from subscriptions.services.health_marks import health_marks_record


class SurveyInvalid(SubscriptionError):
    code = "survey_invalid"


# What an answer without a SubscriptionChange can be about.
SIGNUP = "signup"
KINDS_WITHOUT_CHANGE = (SIGNUP, "other")


def effort_survey_record(
    *,
    customer: Customer,
    user: User,
    score,
    change: SubscriptionChange | None = None,
    change_kind: str = "",
    comment: str = "",
) -> EffortSurveyResponse:
    """Store one answer (1 = very hard … 7 = very easy) about `change`, or about a sign-up (`change_kind="signup"`).

    Idempotent: answering the same change, or the same sign-up, again returns the first answer (unique constraints,
    so two concurrent submits cannot both count).
    """
    score = parse_int(score, minimum=1, maximum=7)
    if score is None:
        raise SurveyInvalid("Pick a number from 1 (very hard) to 7 (very easy).", field="score")
    comment = (comment or "").strip()
    if len(comment) > 2000:
        raise SurveyInvalid("Please keep the comment under 2,000 characters.", field="comment")
    if change is not None and change.subscription.customer_id != customer.pk:
        raise SurveyInvalid("That change belongs to another account.", field="change")
    kind = change_kind if change_kind in KINDS_WITHOUT_CHANGE else "other"
    if change is not None:
        kind = change.kind
    try:
        with transaction.atomic():
            answer = EffortSurveyResponse.objects.create(
                customer=customer, user=user, change_kind=kind, subscription_change=change, score=score, comment=comment
            )
            health_marks_record([customer.pk], reason="effort_survey.answered")
            return answer
    except IntegrityError:
        if change is not None:
            return EffortSurveyResponse.objects.get(user=user, subscription_change=change)
        return EffortSurveyResponse.objects.get(user=user, customer=customer, change_kind=SIGNUP)
