"""One process of the SQLite contention test (tests/portal/test_default_profile.py): a web process and a worker in one.

Runs the real default settings (portal.settings) against the database file in DATABASE_URL, with tasks run eagerly so
that the after-commit work (entitlements reconcile, invoice rendering) writes from the same processes, as the worker
does under `make run`. Through Django's full request stack it changes seats (preview, then apply with the preview's
version) and reads invoices, and prints one JSON line: the status codes it got and any exception it saw.

    python tests/portal/sqlite_contention_client.py <token> <customer_id> <subscription_id> <rounds>
"""

import json
import os
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ["DJANGO_SETTINGS_MODULE"] = "portal.settings"


def main() -> None:
    token, customer_id, subscription_id, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    import django

    django.setup()
    from django.test import Client

    client = Client(HTTP_AUTHORIZATION=f"Bearer {token}", raise_request_exception=False)
    base = f"/api/v1/customers/{customer_id}/subscriptions/{subscription_id}/"
    statuses: Counter = Counter()
    errors: list[str] = []

    def record(response) -> None:
        statuses[str(response.status_code)] += 1
        if response.status_code >= 500:
            errors.append(response.content.decode(errors="replace")[:300])

    for number in range(rounds):
        seats = 11 + (os.getpid() + number) % 5
        preview = client.post(base + "seat-changes/preview/", {"seats": seats}, content_type="application/json")
        record(preview)
        if preview.status_code == 200:
            version = preview.json()["version"]
            record(client.post(base + "seat-changes/", {"seats": seats, "version": version}, "application/json"))
        record(client.get(f"/api/v1/customers/{customer_id}/invoices/"))
    print(json.dumps({"statuses": statuses, "errors": errors}))


if __name__ == "__main__":
    main()
