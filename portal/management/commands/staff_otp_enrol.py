"""Enrol a staff member's authenticator app (TOTP) for the back office's two-factor sign-in.

    manage.py staff_otp_enrol admin@continuum.test          # prints the otpauth:// link and the secret, once
    manage.py staff_otp_enrol admin@continuum.test --reset  # lost phone: replaces every existing authenticator

The secret is shown only here; scan the link as a QR code (any QR tool) or type the secret into the app.
"""

from base64 import b32encode

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django_otp.plugins.otp_totp.models import TOTPDevice

from subscriptions.models import ActorKind, User
from subscriptions.services.audit import audit_record


class Command(BaseCommand):
    help = "Enrol (or with --reset, replace) a staff member's TOTP authenticator and print its setup link."

    def add_arguments(self, parser):
        parser.add_argument("email")
        parser.add_argument("--reset", action="store_true", help="Remove the existing authenticators first.")

    def handle(self, *args, email, reset, **options):
        user = User.objects.filter(email__iexact=email.strip()).first()
        if user is None or not user.is_staff:
            raise CommandError(f"{email} is not a staff account.")
        with transaction.atomic():
            existing = TOTPDevice.objects.filter(user=user)
            if existing.exists() and not reset:
                raise CommandError(f"{user.email} already has an authenticator; use --reset to replace it.")
            existing.delete()
            device = TOTPDevice.objects.create(user=user, name="Authenticator app", confirmed=True)
            audit_record(
                customer=None,
                action="staff.two_factor_enrolled",
                actor=user,
                actor_kind=ActorKind.SYSTEM,
                obj=user,
                summary=f"Authenticator app enrolled for {user.email}" + (" (replaced)" if reset else ""),
            )
        self.stdout.write(f"Authenticator enrolled for {user.email}. Add it to the app (shown once):")
        self.stdout.write(f"  link:   {device.config_url}")
        self.stdout.write(f"  secret: {b32encode(device.bin_key).decode()}")
