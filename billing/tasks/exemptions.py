"""Tax exemptions: daily expiry and reminders."""

from celery import shared_task

from billing.services import exemptions


@shared_task(name="billing.tax_exemptions_daily")
def tax_exemptions_daily_task() -> dict:
    """Daily (Celery beat): expire exemptions at their expiry date; remind 30 and 7 days before."""

    return {"expired": exemptions.tax_exemptions_expire_due(), "reminded": exemptions.tax_exemption_send_reminders()}
