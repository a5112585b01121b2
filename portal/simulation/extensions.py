"""The later issues' parts of the simulated year, plugged into year.py's hooks (`Simulation.hook`): each extension
may define `schedule(sim, day0)`, `enter(sim, stack)`, `signup_create(sim, c, function)` (wraps the sign-up call),
`after_signup(sim, c, result)`, `finish(sim, traveller)`, `violations(sim)` and `figures(sim)`.

- issue 20, customer health: health_report.CustomerHealth;
- issue 21, e-invoices: einvoices.XRechnungBuyers (and the einvoices_check invariant in invariants.check_all);
- issue 22, discounts: promotions.Promotions (and the discounts_check invariant);
- issue 23, webhooks: webhook_receiver.WebhookReceivers.
"""

from __future__ import annotations

import html

from billing.models import ISSUED_STATUSES, CreditNote, Invoice
from portal.simulation.einvoices import XRechnungBuyers
from portal.simulation.health_report import CustomerHealth
from portal.simulation.promotions import Promotions
from portal.simulation.violations import Violation
from portal.simulation.webhook_receiver import WebhookReceivers


def extensions_for(seed: int) -> list:
    # Order matters at the end: the webhook receiver's drain moves the clock before health is scored a last time.
    return [XRechnungBuyers(seed), Promotions(seed), WebhookReceivers(seed), CustomerHealth(seed)]


def extension_violations(sim) -> list[Violation]:
    return [v for found in sim.hook("violations") for v in found]


def extension_figures(sim) -> dict:
    figures = {}
    for found in sim.hook("figures"):
        figures.update(found)
    e_invoiced = Invoice.objects.filter(status__in=ISSUED_STATUSES, e_invoice=True)
    figures["e_invoices"] = e_invoiced.count()
    figures["e_invoice_credit_notes"] = CreditNote.objects.filter(invoice__in=e_invoiced).count()
    return figures


def _pairs(mapping: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in mapping.items()) or "none"


def text_lines(f: dict) -> list[str]:
    """The report's lines for the extensions' figures (report.text); none when the run had no extensions."""
    if "health_stages" not in f:
        return []
    lines = [
        f"e-invoices (Factur-X EN 16931) issued {f['e_invoices']}, their credit notes {f['e_invoice_credit_notes']}, "
        f"public buyers also getting XRechnung {f.get('xrechnung_buyers', 0)}: every one validated (XSD + Schematron)",
        "promotion codes redeemed: " + _pairs(f["promotion_codes_redeemed"]),
        "promotion codes refused: " + _pairs(f["promotion_codes_refused"]),
        f"forever discounts ended by staff: {f['discounts_ended_by_staff']}",
        f"seat increases with a code billed at once: {f.get('promotion_previews_compared', 0)}, invoiced differently "
        f"from their preview (each a violation): {len(f['promotion_preview_differences'])}",
        *(f"  {row}" for row in f["promotion_preview_differences"][:20]),
        f"webhooks: {f['webhook_endpoints']} endpoints, {f['webhook_requests']} requests, "
        f"{f['webhook_events_received']} events received, {f['webhook_duplicates']} duplicates (redelivered after a "
        f"failed answer), {f['webhook_stale_arrivals']} late arrivals dropped by sequence; injected failures: "
        + _pairs(f["webhook_injected_failures"]),
        f"customer health ({f['health_runs']} nightly runs, {f['health_stage_changes']} stage changes): "
        "score distribution " + _pairs(f["health_distribution"]),
        "journey stages: " + _pairs(f["health_stages"]),
        "at risk (lowest scores first):",
    ]
    lines += [f"  {row['customer']}: {row['score']} — {row['why']}" for row in f["health_at_risk"]] or ["  none"]
    for r in f.get("revenue", []):
        lines += [
            f"revenue metrics ({r['currency']}, minor units, month ends): MRR " + _pairs(r["mrr_by_month"]),
            f"  last month: MRR {r['mrr_minor']}, ARR {r['arr_minor']}, ARPA {r['arpa_minor']}, customers "
            f"{r['customers']}, logo churn {r['logo_churn']}, NRR {r['nrr']}, GRR {r['grr']} (NRR/GRR need 12 months)",
            "  MRR ↔ invoice differences by reason: " + _pairs(r["reconciliation_reasons"]),
        ]
    return lines


def html_sections(f: dict, bars) -> list[str]:
    """The HTML page's charts for the extensions (report.html_page passes its bar chart)."""
    if "health_stages" not in f:
        return []
    rows = "".join(
        f"<tr><td>{html.escape(str(row['customer']))}</td><td>{row['score']}</td><td>{html.escape(row['why'])}</td></tr>"
        for row in f["health_at_risk"]
    )
    return [
        bars("Health score distribution", list(f["health_distribution"].items())),
        bars("Journey stages", list(f["health_stages"].items())),
        *(bars(f"MRR by month ({r['currency']}, minor units)", list(r["mrr_by_month"].items())) for r in f["revenue"]),
        "<h2>At risk: top 10</h2><table><tr><th>Customer</th><th>Score</th><th>Why</th></tr>" + rows + "</table>",
        bars("Promotion codes redeemed", list(f["promotion_codes_redeemed"].items())),
        bars("Webhook events received by type", list(f["webhook_event_types"].items())),
    ]
