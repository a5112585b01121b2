"""Subscription use cases, one area per module (catalog, subscriptions, changes, seats, lifecycle, provisioning,
members, trials, events/webhooks): each owns its transaction and its invariants, whoever calls it.
"""
