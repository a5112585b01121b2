"""Billing use cases, one area per module: each function owns its transaction, locks what it changes and queues
side effects after commit. Views, API views, admin actions and tasks call these; these never import them.
"""
