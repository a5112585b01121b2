import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings

from subscriptions.exceptions import CatalogError
from subscriptions.models import Package, PackageComponent
from subscriptions.services.catalog import catalog_assert_valid, catalog_validate
from tests.factories import PackageFactory, SkuFactory


def test_catalog_validate_accepts_the_test_catalog(catalog):
    assert catalog_validate() == []


def test_catalog_validate_accepts_the_demo_catalog(db):
    call_command("seed_demo")
    assert catalog_validate() == []
    call_command("check_catalog")


def test_catalog_validate_reports_missing_price_per_currency_and_interval(catalog):
    catalog.team.prices.filter(currency="EUR", interval="year").delete()
    assert catalog_validate(catalog.team) == ["Team: no active price in EUR for annual billing."]


@override_settings(ENABLED_CURRENCIES=["USD", "EUR", "GBP"])
def test_catalog_validate_requires_every_enabled_currency(catalog):
    problems = catalog_validate(catalog.starter)
    assert problems == [
        "Starter: no active price in GBP for monthly billing.",
        "Starter: no active price in GBP for annual billing.",
    ]


def test_catalog_validate_reports_inactive_sku_in_active_package(catalog):
    sku = catalog.team.components.get(sku__code="SEAT-STD-M").sku
    sku.is_active = False
    sku.save()
    assert "Team: contains the inactive SKU SEAT-STD-M." in catalog_validate(catalog.team)


def test_catalog_validate_reports_package_without_recurring_component(catalog):
    PackageComponent.objects.filter(package=catalog.team).delete()
    PackageComponent.objects.create(package=catalog.team, sku=SkuFactory(code="LIC-SSO", kind="feature"))
    assert catalog_validate(catalog.team) == [
        "Team: has no recurring component (add a recurring flat or per-seat SKU)."
    ]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"min_seats": 6, "included_seats": 5}, "Team: minimum seats (6) is more than the included seats (5)."),
        (
            {"included_seats": 5, "max_seats": 4, "min_seats": 1},
            "Team: included seats (5) is more than the maximum seats (4).",
        ),
        ({"intervals": ["week"]}, "Team: billing intervals must be a list of “month” and/or “year”."),
        ({"intervals": []}, "Team: offers no billing interval (choose monthly, annual or both)."),
    ],
)
def test_catalog_validate_reports_bad_seat_limits_and_intervals(catalog, fields, message):
    Package.objects.filter(pk=catalog.team.pk).update(**fields)
    catalog.team.refresh_from_db()
    assert message in catalog_validate(catalog.team)


def test_catalog_validate_addons_attach_to_base_packages_only(catalog):
    other_addon = PackageFactory(slug="extra", name="Extra storage", is_addon=True, is_public=False)
    catalog.premium.addon_for.add(other_addon)
    catalog.team.addon_for.add(catalog.business)
    problems = catalog_validate()
    assert "Premium support: an add-on can only attach to base packages, not to the add-on Extra storage." in problems
    assert "Team: only add-ons can attach to other packages; mark it as an add-on or detach it." in problems


def test_catalog_validate_ignores_private_or_inactive_packages_without_prices(catalog):
    PackageFactory(slug="draft", name="Draft", is_active=False)
    PackageFactory(slug="custom", name="Custom deal", is_public=False)
    assert catalog_validate() == []


def test_catalog_validate_checks_an_unsaved_package_fields(db):
    package = Package(slug="new", name="New", min_seats=3, included_seats=1, intervals=["month"])
    assert catalog_validate(package) == ["New: minimum seats (3) is more than the included seats (1)."]


def test_catalog_assert_valid_raises_catalog_error_with_every_problem(catalog):
    catalog.team.prices.filter(currency="EUR").delete()
    with pytest.raises(CatalogError) as caught:
        catalog_assert_valid(catalog.team)
    assert caught.value.message.splitlines() == [
        "Team: no active price in EUR for monthly billing.",
        "Team: no active price in EUR for annual billing.",
    ]


def test_check_catalog_command_fails_with_messages(catalog, capsys):
    catalog.team.prices.filter(currency="EUR", interval="month").delete()
    with pytest.raises(CommandError) as caught:
        call_command("check_catalog")
    assert "1 problem" in str(caught.value)
    assert "Team: no active price in EUR for monthly billing." in capsys.readouterr().err


def test_catalog_validate_reports_a_feature_without_a_customer_facing_label(catalog):
    sku = SkuFactory(code="STOR-100", feature_key="storage_gb", feature_value_kind="limit", feature_value=100)
    PackageComponent.objects.create(package=catalog.team, sku=sku)
    assert catalog_validate(catalog.team) == [
        "Team: the SKU STOR-100 grants “storage_gb” but has no feature label (how customers see the feature, "
        "e.g. “API calls per month”)."
    ]
    sku.feature_label = "Storage (GB)"
    sku.save()
    assert catalog_validate(catalog.team) == []


def test_migration_labels_the_features_existing_catalogs_grant(db):
    from importlib import import_module

    from django.apps import apps

    from subscriptions.models import Sku

    labelled = SkuFactory(code="LIC-API-1M", feature_key="api_calls_per_month")
    custom = SkuFactory(code="STOR-1T", feature_key="storage_gb", feature_label="Storage (GB, archive)")
    import_module("subscriptions.migrations.0004_sku_feature_label").label_known_features(apps, None)
    assert Sku.objects.get(pk=labelled.pk).feature_label == "API calls per month"
    assert Sku.objects.get(pk=custom.pk).feature_label == "Storage (GB, archive)"  # a label set by staff stays
