"""The post-change effort survey (portal pages, issue 8)."""

from django.db import IntegrityError, transaction

from portal.models import EffortSurveyResponse
from subscriptions.exceptions import SubscriptionError
from subscriptions.models import Customer, SubscriptionChange, User


class SurveyInvalid(SubscriptionError):
    code = "survey_invalid"


def effort_survey_record(
    *,
    customer: Customer,
    user: User,
    score,
    change: SubscriptionChange | None = None,
    change_kind: str = "",
    comment: str = "",
) -> EffortSurveyResponse:
    """Store one answer (1 = very hard … 7 = very easy). Answering the same change again returns the first answer."""
    try:
        score = int(score)
    except (TypeError, ValueError):
        raise SurveyInvalid("Pick a number from 1 (very hard) to 7 (very easy).", field="score")
    if not 1 <= score <= 7:
        raise SurveyInvalid("Pick a number from 1 (very hard) to 7 (very easy).", field="score")
    comment = (comment or "").strip()
    if len(comment) > 2000:
        raise SurveyInvalid("Please keep the comment under 2,000 characters.", field="comment")
    if change is not None and change.subscription.customer_id != customer.pk:
        raise SurveyInvalid("That change belongs to another account.", field="change")
    kind = change.kind if change is not None else (change_kind or "other")
    try:
        with transaction.atomic():
            return EffortSurveyResponse.objects.create(
                customer=customer, user=user, change_kind=kind, subscription_change=change, score=score, comment=comment
            )
    except IntegrityError:
        return EffortSurveyResponse.objects.get(user=user, subscription_change=change)
