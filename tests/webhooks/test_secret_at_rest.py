"""Webhook signing secrets are encrypted at rest (subscriptions/secretbox.py): no row holds one in clear, a tampered or
orphaned token is refused, keys rotate through `webhook_secrets_reencrypt`, and migration 0008 encrypts old rows."""

import base64

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from subscriptions.models import Membership, Role, WebhookEndpoint
from subscriptions.secretbox import SecretBoxError, secret_decrypt, secret_encrypt, secret_needs_reencrypt
from subscriptions.services.webhooks import (
    webhook_endpoint_create,
    webhook_endpoint_rotate_secret,
    webhook_secrets_reencrypt,
    webhook_sign,
    webhook_verify,
)
from tests.factories import CustomerFactory, UserFactory


@pytest.fixture
def owner_and_customer(db):
    customer = CustomerFactory(name="Acme")
    owner = UserFactory()
    Membership.objects.create(user=owner, customer=customer, role=Role.OWNER)
    return customer, owner


def _raw_row(endpoint_id):
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM subscriptions_webhookendpoint WHERE id = %s", [endpoint_id])
        return " ".join(str(value) for value in cursor.fetchone())


def _create(customer, owner):
    return webhook_endpoint_create(
        customer=customer, url="http://127.0.0.1:9081/hooks", event_types=["invoice.paid"], actor=owner
    )


def test_webhook_endpoint_create_stores_no_secret_in_clear(owner_and_customer):
    customer, owner = owner_and_customer
    # when
    endpoint = _create(customer, owner)
    shown_once = endpoint.secret
    # then
    assert shown_once.startswith("whsec_")
    assert shown_once not in _raw_row(endpoint.pk)
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).secret == shown_once  # still signs with it


def test_webhook_endpoint_rotate_secret_keeps_both_secrets_encrypted(owner_and_customer):
    customer, owner = owner_and_customer
    endpoint = _create(customer, owner)
    old = endpoint.secret
    # when
    rotated = webhook_endpoint_rotate_secret(endpoint_id=endpoint.pk, actor=owner, overlap_hours=24)
    # then
    row = _raw_row(endpoint.pk)
    assert old not in row and rotated.secret not in row
    signing = WebhookEndpoint.objects.get(pk=endpoint.pk).signing_secrets()
    header = webhook_sign(secrets=signing, timestamp=1, body=b"{}")
    assert webhook_verify(secret=old, header=header, body=b"{}", now=1)
    assert webhook_verify(secret=rotated.secret, header=header, body=b"{}", now=1)


def test_secret_decrypt_refuses_a_tampered_token():
    token = secret_encrypt("whsec_abc")
    # flip one byte of the decoded token (a flipped base64 character may only touch unused padding bits)
    raw = bytearray(base64.urlsafe_b64decode(token))
    raw[len(raw) // 2] ^= 0x01
    with pytest.raises(SecretBoxError):
        secret_decrypt(base64.urlsafe_b64encode(bytes(raw)).decode())
    with pytest.raises(SecretBoxError):
        secret_decrypt("whsec_plain_text_secret")
    assert secret_encrypt("whsec_abc") != token  # a fresh IV every time


# Written by the earlier hand-built box (v1: HMAC-SHA256 keystream and tag) under "old-key-0123456789abcdef".
V1_TOKEN = (
    "v1.3ec4d34f.5qy9iSPkbi7EcA41LzdMx8rb5C3cEFNpdoeqEKg4ZL6R_1XBYP2aobqPWbpWNpaZ8ZwPGyuGAJSzRa8L4jjkzmJnSe4-B3Kp"
)


def test_a_secret_written_by_the_old_box_still_decrypts_and_is_rewritten_as_fernet(owner_and_customer, settings):
    customer, owner = owner_and_customer
    settings.WEBHOOK_SECRET_KEYS = ["old-key-0123456789abcdef"]
    endpoint = _create(customer, owner)
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(secret_encrypted=V1_TOKEN)
    # given: a row still holding the old format, under the current key
    assert secret_decrypt(V1_TOKEN) == "whsec_made_by_the_v1_box"
    assert secret_needs_reencrypt(V1_TOKEN)
    # when
    assert webhook_secrets_reencrypt() == 1
    # then: the same secret, now a Fernet token that needs nothing more
    token = WebhookEndpoint.objects.get(pk=endpoint.pk).secret_encrypted
    assert not token.startswith("v1.") and not secret_needs_reencrypt(token)
    assert base64.urlsafe_b64decode(token)[0] == 0x80  # cryptography's Fernet format, version byte 0x80
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).secret == "whsec_made_by_the_v1_box"
    assert webhook_secrets_reencrypt() == 0
    tampered = V1_TOKEN[:-6] + ("A" if V1_TOKEN[-6] != "A" else "B") + V1_TOKEN[-5:]
    with pytest.raises(SecretBoxError):
        secret_decrypt(tampered)


def test_webhook_secrets_reencrypt_moves_every_secret_to_the_new_key(owner_and_customer, settings):
    customer, owner = owner_and_customer
    settings.WEBHOOK_SECRET_KEYS = ["old-key-0123456789abcdef"]
    endpoint = _create(customer, owner)
    old_secret = endpoint.secret
    new_secret = webhook_endpoint_rotate_secret(endpoint_id=endpoint.pk, actor=owner, overlap_hours=24).secret
    # given: a new key in front, the old one still listed
    settings.WEBHOOK_SECRET_KEYS = ["new-key-fedcba9876543210", "old-key-0123456789abcdef"]
    # when
    call_command("webhook_secrets_reencrypt", stdout=open("/dev/null", "w"))  # noqa: SIM115
    # then: the old key can go, and the secrets are unchanged
    settings.WEBHOOK_SECRET_KEYS = ["new-key-fedcba9876543210"]
    reread = WebhookEndpoint.objects.get(pk=endpoint.pk)
    assert reread.secret == new_secret and reread.previous_secret == old_secret
    assert webhook_secrets_reencrypt() == 0  # idempotent


def test_a_secret_under_a_removed_key_is_refused_with_a_readable_reason(owner_and_customer, settings):
    customer, owner = owner_and_customer
    settings.WEBHOOK_SECRET_KEYS = ["old-key-0123456789abcdef"]
    endpoint = _create(customer, owner)
    settings.WEBHOOK_SECRET_KEYS = ["new-key-fedcba9876543210"]
    with pytest.raises(SecretBoxError, match="WEBHOOK_SECRET_KEYS"):
        WebhookEndpoint.objects.get(pk=endpoint.pk).secret  # noqa: B018


BEFORE = [("subscriptions", "0007_merge_parallel_work")]
AFTER = [("subscriptions", "0008_webhook_secret_encrypted")]


@pytest.mark.django_db(transaction=True)
def test_migration_0008_encrypts_existing_secrets():
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    apps = executor.loader.project_state(BEFORE).apps
    endpoints = apps.get_model("subscriptions", "WebhookEndpoint")
    endpoint = endpoints.objects.create(
        url="https://hooks.example.com/in", event_types=["invoice.paid"], secret="whsec_old_clear", previous_secret=""
    )
    # when
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(AFTER)
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())
    # then
    assert "whsec_old_clear" not in _raw_row(endpoint.pk)
    migrated = WebhookEndpoint.objects.get(pk=endpoint.pk)
    assert migrated.secret == "whsec_old_clear" and migrated.previous_secret == ""
