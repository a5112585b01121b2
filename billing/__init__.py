"""Who owes what: billing profiles, tax and exemptions, invoices and credit notes, payments, dunning, discounts,
PDFs and e-invoices, accounting exports and the billing run. Imports only `subscriptions` (`.importlinter`).

Use cases are in `services/`, reads in `selectors.py`, models in `models/`, errors in `exceptions.py`.
"""
