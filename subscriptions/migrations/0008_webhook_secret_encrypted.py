"""Webhook signing secrets encrypted at rest: new columns, existing secrets encrypted into them, clear ones dropped."""

from django.db import migrations, models

import subscriptions.models.webhooks
from subscriptions.secretbox import secret_decrypt, secret_encrypt


def encrypt_existing(apps, schema_editor):
    endpoints = apps.get_model("subscriptions", "WebhookEndpoint")
    for endpoint in endpoints.objects.only("pk", "secret", "previous_secret").iterator():
        endpoint.secret_encrypted = secret_encrypt(endpoint.secret)
        endpoint.previous_secret_encrypted = secret_encrypt(endpoint.previous_secret) if endpoint.previous_secret else ""
        endpoint.save(update_fields=["secret_encrypted", "previous_secret_encrypted"])


def decrypt_existing(apps, schema_editor):
    endpoints = apps.get_model("subscriptions", "WebhookEndpoint")
    for endpoint in endpoints.objects.only("pk", "secret_encrypted", "previous_secret_encrypted").iterator():
        endpoint.secret = secret_decrypt(endpoint.secret_encrypted)
        endpoint.previous_secret = (
            secret_decrypt(endpoint.previous_secret_encrypted) if endpoint.previous_secret_encrypted else ""
        )
        endpoint.save(update_fields=["secret", "previous_secret"])


class Migration(migrations.Migration):
    dependencies = [
        ("subscriptions", "0007_merge_parallel_work"),
    ]

    operations = [
        migrations.AddField(
            model_name="webhookendpoint",
            name="secret_encrypted",
            field=models.TextField(default=subscriptions.models.webhooks.webhook_secret_encrypted_new, editable=False),
        ),
        migrations.AddField(
            model_name="webhookendpoint",
            name="previous_secret_encrypted",
            field=models.TextField(blank=True, editable=False),
        ),
        migrations.RunPython(encrypt_existing, decrypt_existing),
        migrations.RemoveField(model_name="webhookendpoint", name="secret"),
        migrations.RemoveField(model_name="webhookendpoint", name="previous_secret"),
    ]
