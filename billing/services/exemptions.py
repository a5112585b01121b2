"""Tax exemptions: submit (with a certificate), approve, reject, expire, remind.

While an exemption is submitted and undecided the customer's invoices are held (see invoices.invoice_checks_run), so
a tax-exempt customer is never issued an invoice with tax. A decision re-runs the checks on the customer's drafts
and held invoices: an approval recomputes them at 0 tax with the exemption wording and issues those that now pass.
"""

import hashlib
import re
from datetime import date, timedelta

from django.core.files.base import ContentFile
from django.core.mail import EmailMessage
from django.db import transaction
from django.utils import timezone

from billing.exceptions import CertificateInvalid, ExemptionInvalid, NotFound
from billing.models import (
    BillingProfile,
    ExemptionStatus,
    ExemptionStatusChange,
    ExemptionType,
    TaxExemption,
)
from billing.services.events import tax_exemption_event_record, tax_exemption_transition_event_record
from billing.services.invoices import invoices_recheck_for_customer
from billing.services.transitions import transition_set
from subscriptions import clock
from subscriptions.models import Customer, Membership, Role, User
from subscriptions.money import format_date
from subscriptions.places import jurisdiction_exists
from subscriptions.services.audit import audit_record

MAX_CERTIFICATE_BYTES = 5 * 1024 * 1024
# Content type from the first bytes, never from the file name or the browser's claim.
MAGIC = (
    (b"%PDF-", "application/pdf"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
)
JURISDICTION_RE = re.compile(r"^[A-Z]{2}(-[A-Z0-9]{1,3})?$")
CERTIFICATE_NUMBER_MAX_LENGTH = 80  # TaxExemption.certificate_number
# Certificate numbers end up in e-mail subjects, audit summaries, file names and staff screens. Printable means no
# CR/LF or other control characters and no Unicode format characters (the bidi overrides U+202A-U+202E and
# U+2066-U+2069 among them, which reorder what staff read); quotes and backslashes are not part of any issuer's
# numbering and are what header and path injection is made of.
_CERTIFICATE_NUMBER_FORBIDDEN = set('"\\<>`')


def certificate_number_clean(value) -> str:
    """The certificate number as stored, or ExemptionInvalid: printable, at most 80 characters, not blank."""
    number = (value if isinstance(value, str) else "").strip()
    if not number:
        raise ExemptionInvalid("Enter the certificate number.", field="certificate_number")
    if len(number) > CERTIFICATE_NUMBER_MAX_LENGTH:
        raise ExemptionInvalid(
            f"Certificate numbers are at most {CERTIFICATE_NUMBER_MAX_LENGTH} characters.", field="certificate_number"
        )
    if not number.isprintable() or _CERTIFICATE_NUMBER_FORBIDDEN & set(number):
        raise ExemptionInvalid(
            "Enter the certificate number as printed on the certificate: letters, digits, spaces and punctuation "
            "such as - / . only.",
            field="certificate_number",
        )
    return number


REMINDER_DAYS = (30, 7)


def certificate_sniff(*, head: bytes) -> str | None:
    for magic, content_type in MAGIC:
        if head.startswith(magic):
            return content_type
    return None


def _read_upload(upload) -> tuple[bytes, str]:
    """Read at most 5 MB + 1 byte (never the whole of an oversized upload) and return (data, original name)."""
    name = getattr(upload, "name", "") or ""
    if isinstance(upload, bytes | bytearray):
        data = bytes(upload[: MAX_CERTIFICATE_BYTES + 1])
    else:
        size = getattr(upload, "size", None)
        if size is not None and size > MAX_CERTIFICATE_BYTES:
            raise CertificateInvalid(f"The certificate is {size / 1024 / 1024:.1f} MB; the limit is 5 MB.")
        if hasattr(upload, "seek"):
            upload.seek(0)
        data = upload.read(MAX_CERTIFICATE_BYTES + 1)
    if len(data) > MAX_CERTIFICATE_BYTES:
        raise CertificateInvalid("The certificate is larger than 5 MB; please upload a smaller scan.")
    if not data:
        raise CertificateInvalid("The certificate file is empty.")
    # Staff download the file under this name (the admin's FileResponse): no control, format or quote characters.
    base = name.rsplit("/", 1)[-1].rsplit("\\", 1)[-1]
    return data, "".join(ch if ch.isprintable() and ch not in '"' else "_" for ch in base)[:200]


def _transition(exemption: TaxExemption, to_status: str, *, actor: User | None, reason: str = "") -> None:
    from_status = transition_set(exemption, to_status)
    ExemptionStatusChange.objects.create(
        exemption=exemption, from_status=from_status, to_status=to_status, actor=actor, reason=reason
    )
    audit_record(
        customer=exemption.customer,
        actor=actor,
        action=f"tax_exemption.{to_status}",
        obj=exemption,
        summary=f"Tax exemption {exemption.certificate_number}: {ExemptionStatus(to_status).label.lower()}",
        before={"status": from_status},
        after={"status": to_status},
        reason=reason,
    )
    tax_exemption_transition_event_record(exemption)


def _overlaps(a: list[str], b: list[str]) -> bool:
    def countries(items):
        return {item.split("-")[0] for item in items}

    sa, sb = set(a), set(b)
    return (
        bool(sa & sb)
        or any("-" not in x and x in countries(sb) for x in sa)
        or any("-" not in x and x in countries(sa) for x in sb)
    )


def _recheck_after_commit(customer_id: int) -> None:
    def run():
        invoices_recheck_for_customer(customer_id=customer_id)

    transaction.on_commit(run)


def tax_exemption_submit(
    *,
    customer: Customer,
    jurisdictions: list[str] | str,
    exemption_type: str,
    certificate_number: str,
    expires_on: date,
    certificate,
    reason: str = "",
    actor: User | None = None,
    today: date | None = None,
) -> TaxExemption:
    """Submit an exemption for review with its certificate (PDF, PNG or JPEG by content, ≤ 5 MB, stored privately).

    Replaces (supersedes) any undecided submission of an overlapping jurisdiction: history is kept via
    `replaced_by`. An approved exemption stays in force until the replacement is decided. Invoices are held until
    then. Nothing is written when any input is invalid.
    """
    today = today or clock.today()
    if isinstance(jurisdictions, str):
        jurisdictions = [j for j in re.split(r"[,;\s]+", jurisdictions) if j]
    jurisdictions = sorted({j.strip().upper() for j in jurisdictions})
    if not jurisdictions:
        raise ExemptionInvalid("Name at least one jurisdiction, e.g. US-NY.", field="jurisdictions")
    bad = [j for j in jurisdictions if not JURISDICTION_RE.match(j)]
    if bad:
        raise ExemptionInvalid(
            f"{', '.join(bad)}: use a country code, optionally with a state, e.g. US-NY or DE.", field="jurisdictions"
        )
    unknown = [j for j in jurisdictions if not jurisdiction_exists(j)]
    if unknown:
        raise ExemptionInvalid(
            f"{', '.join(unknown)}: not an ISO 3166 country or state/province code (e.g. US-NY, CA-QC, DE).",
            field="jurisdictions",
        )
    if exemption_type not in ExemptionType.values:
        raise ExemptionInvalid("Choose the type of exemption.", field="exemption_type")
    certificate_number = certificate_number_clean(certificate_number)
    if not isinstance(expires_on, date) or expires_on < today:
        raise ExemptionInvalid(
            "The certificate's expiry date (its last valid day) must be today or later.", field="expires_on"
        )
    data, original_name = _read_upload(certificate)
    content_type = certificate_sniff(head=data[:16])
    if content_type is None:
        raise CertificateInvalid(
            "The certificate must be a PDF, PNG or JPEG file; this file's content is none of them "
            "(renaming a file does not change its type)."
        )
    with transaction.atomic():
        exemption = TaxExemption(
            customer=customer,
            jurisdictions=jurisdictions,
            exemption_type=exemption_type,
            reason=reason.strip(),
            certificate_number=certificate_number,
            expires_on=expires_on,
            certificate_content_type=content_type,
            certificate_size=len(data),
            certificate_sha256=hashlib.sha256(data).hexdigest(),
            original_filename=original_name,
            submitted_by=actor,
        )
        exemption.certificate.save("certificate", ContentFile(data), save=False)
        # Remove the stored file if the transaction fails, so a failed submit leaves nothing behind.
        stored_name = exemption.certificate.name
        storage = exemption.certificate.storage
        try:
            exemption.save()
            ExemptionStatusChange.objects.create(exemption=exemption, to_status=ExemptionStatus.SUBMITTED, actor=actor)
            audit_record(
                customer=customer,
                actor=actor,
                action="tax_exemption.submitted",
                obj=exemption,
                summary=f"Tax exemption submitted for {', '.join(jurisdictions)} (certificate {certificate_number})",
                after={"jurisdictions": jurisdictions, "expires_on": expires_on.isoformat(), "type": exemption_type},
            )
            tax_exemption_event_record(exemption, type="tax_exemption.submitted")
            older = (
                TaxExemption.objects.select_for_update()
                .filter(customer=customer, status=ExemptionStatus.SUBMITTED)
                .exclude(pk=exemption.pk)
            )
            for previous in older:
                if _overlaps(previous.jurisdictions, jurisdictions):
                    _transition(
                        previous, ExemptionStatus.SUPERSEDED, actor=actor, reason="Replaced by a new certificate."
                    )
                    previous.replaced_by = exemption
                    previous.save(update_fields=["status", "replaced_by", "updated_at"])
        except Exception:
            storage.delete(stored_name)
            raise
        # Drafts become held for review right away (not only at the next billing run).
        _recheck_after_commit(customer.pk)
    return exemption


def _lock(exemption_id: int) -> TaxExemption:
    try:
        return TaxExemption.objects.select_for_update().select_related("customer").get(pk=exemption_id)
    except TaxExemption.DoesNotExist:
        raise NotFound("That tax exemption does not exist.")


def tax_exemption_approve(
    *, exemption_id: int, reviewer: User, expires_on: date | None = None, note: str = ""
) -> TaxExemption:
    """Approve a submitted exemption (optionally correcting the expiry). Supersedes older approved exemptions of an
    overlapping jurisdiction, then (after commit) recomputes the customer's draft/held invoices at 0 tax and issues
    those that now pass their checks."""
    with transaction.atomic():
        exemption = _lock(exemption_id)
        if expires_on is not None:
            if expires_on < clock.today():
                raise ExemptionInvalid(
                    "The expiry date (the certificate's last valid day) must be today or later.", field="expires_on"
                )
            exemption.expires_on = expires_on
        _transition(exemption, ExemptionStatus.APPROVED, actor=reviewer, reason=note)
        exemption.reviewer = reviewer
        exemption.decided_at = timezone.now()
        exemption.decision_reason = note
        exemption.save()
        for previous in (
            TaxExemption.objects.select_for_update()
            .filter(customer_id=exemption.customer_id, status=ExemptionStatus.APPROVED)
            .exclude(pk=exemption.pk)
        ):
            if _overlaps(previous.jurisdictions, exemption.jurisdictions):
                _transition(
                    previous, ExemptionStatus.SUPERSEDED, actor=reviewer, reason="Replaced by a new certificate."
                )
                previous.replaced_by = exemption
                previous.save(update_fields=["status", "replaced_by", "updated_at"])
        _recheck_after_commit(exemption.customer_id)
    return exemption


def tax_exemption_reject(*, exemption_id: int, reviewer: User, reason: str) -> TaxExemption:
    """Reject a submitted exemption with a reason the customer sees; held invoices are re-checked (with tax)."""
    reason = (reason or "").strip()
    if not reason:
        raise ExemptionInvalid("Give the customer a reason for the rejection.", field="decision_reason")
    with transaction.atomic():
        exemption = _lock(exemption_id)
        _transition(exemption, ExemptionStatus.REJECTED, actor=reviewer, reason=reason)
        exemption.reviewer = reviewer
        exemption.decided_at = timezone.now()
        exemption.decision_reason = reason
        exemption.save()
        _recheck_after_commit(exemption.customer_id)
    return exemption


def tax_exemptions_expire_due(*, today: date | None = None) -> int:
    """Expire approved exemptions whose last valid day (`expires_on`) is over (idempotent; run daily by Celery beat):
    a certificate "valid until 30 June" still applies on 30 June and is expired from 1 July."""
    today = today or clock.today()
    count = 0
    ids = list(
        TaxExemption.objects.filter(status=ExemptionStatus.APPROVED, expires_on__lt=today).values_list("id", flat=True)
    )
    for exemption_id in ids:
        with transaction.atomic():
            exemption = _lock(exemption_id)
            if exemption.status != ExemptionStatus.APPROVED or exemption.expires_on >= today:
                continue
            reason = f"Expired after {exemption.expires_on}, its last valid day."
            _transition(exemption, ExemptionStatus.EXPIRED, actor=None, reason=reason)
            exemption.save()
            count += 1
    return count


def _reminder_recipients(customer_id: int) -> list[str]:
    emails = list(
        Membership.objects.filter(customer_id=customer_id, role__in=[Role.OWNER, Role.BILLING_ADMIN]).values_list(
            "user__email", flat=True
        )
    )
    profile_emails = BillingProfile.objects.filter(customer_id=customer_id).values_list("billing_emails", flat=True)
    for extra in profile_emails.first() or []:
        emails.append(extra)
    return sorted(set(emails))


def tax_exemption_send_reminders(*, today: date | None = None) -> int:
    """E-mail owners and billing admins 30 and 7 days before an approved exemption's last valid day (each reminder
    once)."""
    today = today or clock.today()
    sent = 0
    for days, flag in zip(REMINDER_DAYS, ("reminder_30_sent_at", "reminder_7_sent_at"), strict=True):
        due = TaxExemption.objects.filter(
            status=ExemptionStatus.APPROVED, expires_on__lte=today + timedelta(days=days), expires_on__gte=today
        ).filter(**{f"{flag}__isnull": True})
        for exemption_id in list(due.values_list("id", flat=True)):
            with transaction.atomic():
                exemption = _lock(exemption_id)
                if getattr(exemption, flag) is not None:
                    continue
                recipients = _reminder_recipients(exemption.customer_id)
                if recipients:
                    left = (exemption.expires_on - today).days
                    EmailMessage(
                        subject=(
                            f"Your tax exemption certificate expires in {left} days"
                            if left
                            else "Your tax exemption certificate expires today"
                        ),
                        body=(
                            f"Hello,\n\nThe tax exemption certificate {exemption.certificate_number} for "
                            f"{', '.join(exemption.jurisdictions)} on file for {exemption.customer.name} is valid "
                            f"until {format_date(exemption.expires_on, exemption.customer.country)} (its last valid "
                            "day). Upload a renewed "
                            "certificate in the portal (Billing → Tax exemption) so your invoices stay tax-free."
                            "\n\nContinuum Billing"
                        ),
                        to=recipients,
                    ).send()
                    sent += 1
                setattr(exemption, flag, timezone.now())
                tax_exemption_event_record(
                    exemption, type="tax_exemption.expiring", days_left=left_days(exemption, today)
                )
                if days == 30 and exemption.reminder_7_sent_at is None and left_days(exemption, today) <= 7:
                    # Submitted late: one reminder is enough.
                    exemption.reminder_7_sent_at = timezone.now()
                exemption.save()
    return sent


def left_days(exemption: TaxExemption, today: date) -> int:
    return (exemption.expires_on - today).days
