"""The simulated year's report: figures as text, and one HTML page with inline SVG charts (no plotting library)."""

from __future__ import annotations

import html
from collections import Counter, defaultdict
from pathlib import Path

from billing.models import ISSUED_STATUSES, CreditNote, Invoice
from portal.simulation.clerk import CUSTOMER_REPORTED
from portal.simulation.extensions import html_sections, text_lines
from subscriptions.models import ProvisioningRun, RunOutcome


def figures(*, stats, violations, customers: int, start, end) -> dict:
    issued = list(
        Invoice.objects.filter(status__in=ISSUED_STATUSES, issued_at__isnull=False).values(
            "id", "issued_at", "status", "void_reason_code", "void_reason"
        )
    )
    corrected = set(CreditNote.objects.values_list("invoice_id", flat=True)) | {
        i["id"] for i in issued if i["status"] == "void"
    }
    by_month = defaultdict(lambda: [0, 0])
    for invoice in issued:
        month = invoice["issued_at"].strftime("%Y-%m")
        by_month[month][0] += 1
        by_month[month][1] += invoice["id"] not in corrected
    external = {"goodwill", "service_issue", "tax_exemption_missed"}
    causes = Counter(CreditNote.objects.values_list("reason_code", flat=True))
    internal_corrections = {
        note.invoice_id for note in CreditNote.objects.exclude(reason_code__in=external).only("invoice_id")
    } | {
        i["id"]
        for i in issued
        if i["status"] == "void"
        and i["void_reason_code"] not in external
        and not i["void_reason"].startswith(CUSTOMER_REPORTED)  # the customer's own details were wrong (clerk.py)
    }
    causes.update(f"void: {i['void_reason_code']}" for i in issued if i["status"] == "void")
    holds_by_reason = Counter()
    for reason_list in Invoice.objects.filter(status_changes__to_status="held").values_list("hold_reasons", flat=True):
        for reason in reason_list or []:
            holds_by_reason[reason["code"]] += 1
    enablement = [
        (run.finished_at - run.queued_at).total_seconds()
        for run in ProvisioningRun.objects.filter(
            outcome=RunOutcome.APPLIED, queued_at__isnull=False, finished_at__isnull=False
        )
    ]
    total = len(issued)
    right_first_time = sum(ok for _, ok in by_month.values())
    return {
        "customers": customers,
        "start": start,
        "end": end,
        "issued": total,
        "held_ever": Invoice.objects.filter(status_changes__to_status="held").distinct().count(),
        "corrected": len(corrected),
        "corrected_inside": len(internal_corrections),
        "right_first_time": right_first_time / total if total else 1.0,
        "right_first_time_inside": (total - len(internal_corrections)) / total if total else 1.0,
        "by_month": dict(sorted(by_month.items())),
        "holds_by_reason": dict(holds_by_reason.most_common()),
        "corrections_by_cause": dict(causes.most_common()),
        "enablement_seconds": enablement,
        "events": dict(stats.events.most_common()),
        "refused": dict(stats.refused.most_common()),
        "reviews": dict(stats.reviews.most_common()),
        "violations": [str(v) for v in violations],
        "seconds": stats.seconds,
        "billing_runs": stats.runs,
        "hours": stats.hours,
    }


def text(f: dict) -> str:
    lines = [
        f"Simulated {f['start']:%Y-%m-%d} → {f['end']:%Y-%m-%d}: {f['customers']} customers, "
        f"{f['hours']} scheduler hours ({f['billing_runs']} billing runs with something to do), {f['seconds']:.0f} s",
        f"invoices issued {f['issued']}, held at some point {f['held_ever']}, corrected {f['corrected']} "
        f"(root cause inside Continuum: {f['corrected_inside']})",
        f"right first time: {f['right_first_time']:.2%} of issued invoices never corrected; "
        f"{f['right_first_time_inside']:.2%} excluding corrections whose root cause is outside Continuum",
        "by month (issued, right first time): " + ", ".join(f"{m} {n}/{ok}" for m, (n, ok) in f["by_month"].items()),
        "holds by reason: " + (", ".join(f"{k} {v}" for k, v in f["holds_by_reason"].items()) or "none"),
        "corrections by root cause: " + (", ".join(f"{k} {v}" for k, v in f["corrections_by_cause"].items()) or "none"),
        "events: " + ", ".join(f"{k} {v}" for k, v in f["events"].items()),
        "refused (as a customer would see): " + (", ".join(f"{k} {v}" for k, v in f["refused"].items()) or "none"),
        "clerk: " + (", ".join(f"{k} {v}" for k, v in f["reviews"].items()) or "nothing to review"),
    ]
    if f["enablement_seconds"]:
        values = sorted(f["enablement_seconds"])
        p50, p95 = values[len(values) // 2], values[min(len(values) - 1, int(len(values) * 0.95))]
        lines.append(
            f"time to enablement (simulated clock): {len(values)} runs, p50 {p50:.1f} s, p95 {p95:.1f} s, "
            f"max {values[-1]:.1f} s"
        )
    lines += text_lines(f)  # issues 20–23
    cards = f.get("cards") or {"customers": 0}
    lines.append(
        f"card customers on localstripe: {cards['customers']}"
        + "".join(f", {k} {v}" for k, v in cards.items() if k not in ("customers", "url"))
    )
    lines.append(f"invariant violations: {len(f['violations'])}")
    lines += [f"  {v}" for v in f["violations"][:200]]
    return "\n".join(lines)


def _bars(title: str, items: list[tuple[str, float]], *, unit: str = "", width: int = 640) -> str:
    if not items:
        return f"<h2>{html.escape(title)}</h2><p>None.</p>"
    top = max(value for _, value in items) or 1
    row = 22
    parts = [f'<svg width="{width}" height="{row * len(items) + 10}" role="img" aria-label="{html.escape(title)}">']
    for i, (label, value) in enumerate(items):
        length = int((width - 260) * value / top)
        y = i * row + 4
        parts.append(f'<text x="0" y="{y + 14}" font-size="12">{html.escape(label)}</text>')
        parts.append(f'<rect x="180" y="{y}" width="{length}" height="16" fill="#3b6ea5"/>')
        parts.append(f'<text x="{186 + length}" y="{y + 13}" font-size="12">{value:g}{unit}</text>')
    parts.append("</svg>")
    return f"<h2>{html.escape(title)}</h2>" + "".join(parts)


def html_page(f: dict) -> str:
    months = [(m, round(100 * ok / n, 2) if n else 100.0) for m, (n, ok) in f["by_month"].items()]
    buckets = Counter()
    for seconds in f["enablement_seconds"]:
        buckets[
            "< 1 s" if seconds < 1 else "< 10 s" if seconds < 10 else "< 10 min" if seconds < 600 else "≥ 10 min"
        ] += 1
    order = ["< 1 s", "< 10 s", "< 10 min", "≥ 10 min"]
    body = [
        "<!doctype html><html><head><meta charset='utf-8'><title>Continuum — a simulated year</title>",
        "<style>body{font-family:sans-serif;max-width:760px;margin:2em auto}pre{white-space:pre-wrap}</style>",
        "</head><body><h1>A simulated year</h1>",
        f"<pre>{html.escape(text(f))}</pre>",
        _bars("Right first time by month (%)", months, unit=" %"),
        _bars("Holds by reason", list(f["holds_by_reason"].items())),
        _bars("Corrections by root cause", list(f["corrections_by_cause"].items())),
        _bars("Time to enablement", [(b, buckets[b]) for b in order]),
        *html_sections(f, _bars),
        "</body></html>",
    ]
    return "\n".join(body)


def write(f: dict, directory: Path) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    text_path, html_path = directory / "simulated-year.txt", directory / "simulated-year.html"
    text_path.write_text(text(f) + "\n")
    html_path.write_text(html_page(f))
    return text_path, html_path
