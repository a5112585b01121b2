"""Re-encrypt webhook signing secrets under the newest WEBHOOK_SECRET_KEYS key (the middle step of a key rotation).

WEBHOOK_SECRET_KEYS=new,old manage.py webhook_secrets_reencrypt   # then drop "old" from the setting
"""

from django.core.management.base import BaseCommand

from subscriptions.services.webhooks import webhook_secrets_reencrypt


class Command(BaseCommand):
    help = "Re-encrypt every webhook endpoint's signing secrets under the first WEBHOOK_SECRET_KEYS key."

    def handle(self, *args, **options):
        changed = webhook_secrets_reencrypt()
        self.stdout.write(f"{changed} webhook endpoint(s) re-encrypted under the current key.")
