# Issue 18: billing's tables append to the customer data version (subscriptions.CustomerDataChange) in the same
# transaction as every write to them (subscriptions/triggers.py).

from django.db import migrations

from subscriptions.triggers import DIRECT, GLOBAL, create_triggers, via

INVOICE = via("billing_invoice", "invoice_id")

WATCHED = {
    "billing_invoice": DIRECT,
    "billing_invoiceline": INVOICE,
    "billing_invoicetaxline": INVOICE,
    "billing_invoicestatuschange": INVOICE,
    "billing_pendinginvoiceitem": DIRECT,
    "billing_creditnote": DIRECT,
    "billing_creditnoteline": via("billing_creditnote", "credit_note_id"),
    "billing_discount": DIRECT,
    "billing_paymentmethod": DIRECT,
    "billing_payment": DIRECT,
    "billing_refund": via("billing_creditnote", "credit_note_id"),
    "billing_externalrefund": via("billing_payment", "payment_id"),
    "billing_dunningcase": DIRECT,
    "billing_billingprofile": DIRECT,
    "billing_stripecustomer": DIRECT,
    "billing_taxexemption": DIRECT,
    "billing_exemptionstatuschange": via("billing_taxexemption", "exemption_id"),
    # Global inputs (customer 0): tax rates and the coupons a discount shows.
    "billing_taxrate": GLOBAL,
    "billing_coupon": GLOBAL,
    "billing_couponamount": GLOBAL,
    "billing_promotioncode": GLOBAL,
}

forwards, backwards = create_triggers(WATCHED)


class Migration(migrations.Migration):

    dependencies = [
        ("billing", "0012_invoice_regular_period_index"),
        ("subscriptions", "0012_customer_data_changes"),
    ]

    operations = [migrations.RunPython(forwards, backwards)]
