"""Who has what: customers and members, the package/SKU catalog, subscriptions and their changes, seats (an
append-only ledger), entitlements and provisioning, outbound webhooks. Imports nothing of ours.

Also the project-wide basics: `policy.py` (who may do what), `clock.py` (now/today), `money.py` (amounts and dates
for people, on Babel).
"""
