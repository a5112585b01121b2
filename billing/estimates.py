"""The dashboard's "estimated next invoice", cached (issue 18).

An estimate is a pure function of its inputs: each line's amount and where its tax category comes from (a package's
SKU of a kind), the tax date, the billing address and VAT ID, the customer's tax exemptions, the tax rates and the
catalog's tax categories. The cache key is built from those inputs, so it can never answer for a state it was not
computed from:

- the subscription's own facts — id and `version` (bumped by every change service: seats, package, add-ons), status,
  package, price, amounts, seats, whether its period or any period was invoiced, each live add-on — and the billing
  profile's address, VAT ID and `updated_at` come from the rows the dashboard has just read;
- the customer's tax exemptions enter as a stamp (`exemption_stamp_annotations`: latest `updated_at` and count),
  read in that same query, so a new, decided or expired certificate changes the key whichever process wrote it;
- tax rates and the catalog's SKU tax categories are global and edited in the admin: they enter as generation
  tokens kept in the cache (`ESTIMATE_TOKENS`), replaced on every save or delete of a TaxRate, Sku or
  PackageComponent (at once and again after commit). A token is read before the data it guards.

With a shared cache (Redis: production requires it) the tokens are shared by every process; with the local-memory
cache of the zero-setup default they are per process, so a catalog or tax-rate edit made by another process (a
management command) reaches a running server's estimates after `NEXT_INVOICE_ESTIMATE_CACHE_SECONDS` at the latest.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable
from datetime import date

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import Count, Max, OuterRef, Subquery
from django.db.models.signals import post_delete, post_save

from billing.models import BillingProfile, TaxExemption, TaxRate
from billing.selectors import InvoiceEstimate, invoice_estimates_for_customer
from billing.services.tax import tax_rates_for
from subscriptions.data_versions import data_version_now
from subscriptions.models import PackageComponent, Sku
from subscriptions.selectors import package_skus

# (catalog, tax rates): the generation tokens of the global inputs.
CATALOG_TOKEN = "estimate:token:catalog"
RATES_TOKEN = "estimate:token:rates"
ESTIMATE_TOKENS = (CATALOG_TOKEN, RATES_TOKEN)
KEY_VERSION = "v1"

# A line's source: (amount_minor, package_id, SKU kind) — its tax category is the package's SKU of that kind — or
# (amount_minor, None, tax category) when the category is already known (a discount line).
LineSource = tuple[int, int | None, str]


def cache_seconds() -> int:
    return int(getattr(settings, "NEXT_INVOICE_ESTIMATE_CACHE_SECONDS", 3600))


def exemption_stamp_annotations(*, customer_ref: str) -> dict:
    """Annotations for a query with a customer id in `customer_ref`: the latest change to any of the customer's tax
    exemptions and how many there are, the stamp `next_invoice_estimates` keys on."""
    exemptions = TaxExemption.objects.filter(customer_id=OuterRef(customer_ref)).order_by().values("customer_id")
    return {
        "exemption_changed_at": Subquery(exemptions.annotate(at=Max("updated_at")).values("at")),
        "exemption_count": Subquery(exemptions.annotate(n=Count("pk")).values("n")),
    }


def _tokens() -> tuple[str, str]:
    found = cache.get_many(ESTIMATE_TOKENS)
    for name in ESTIMATE_TOKENS:
        if name not in found:
            # A missing token (first use, evicted, cache flushed) is a new one: nothing cached before can match it.
            cache.add(name, uuid.uuid4().hex, timeout=None)
    if len(found) < len(ESTIMATE_TOKENS):
        found = cache.get_many(ESTIMATE_TOKENS)
    catalog, rates = found.get(CATALOG_TOKEN, "-"), found.get(RATES_TOKEN, "-")
    version = data_version_now()
    if version is not None:
        # Computing a page cached under the data version (portal/page_cache.py): the database's global version
        # also moves on a catalog or rate write that no save signal saw (a queryset update, raw SQL).
        catalog, rates = f"{catalog}:{version.catalog}", f"{rates}:{version.catalog}"
    return catalog, rates


def estimate_tokens_renew(*names: str) -> None:
    """Invalidate every cached estimate that depends on the catalog or the tax rates (all of them, by default)."""
    cache.set_many({name: uuid.uuid4().hex for name in (names or ESTIMATE_TOKENS)}, timeout=None)


def _profile_facts(profile: BillingProfile | None) -> tuple:
    if profile is None:
        return ()
    return (
        profile.pk,
        profile.country,
        profile.region,
        profile.tax_id,
        profile.tax_id_valid,
        profile.updated_at.isoformat() if profile.updated_at else "",
    )


def _key(*parts) -> str:
    return f"estimate:{KEY_VERSION}:" + hashlib.sha256(repr(parts).encode()).hexdigest()


def next_invoice_estimates(
    *,
    customer_id: int,
    profile: BillingProfile | None,
    exemption_stamp: tuple,
    items: dict[object, tuple[tuple, str, date, list[LineSource]]],
) -> dict[object, InvoiceEstimate]:
    """`invoice_estimates_for_customer` for the dashboard, cached. `items` maps a key to (the subscription's facts
    — anything else that decides its lines, e.g. (pk, version, …) —, currency, tax date, line sources). The tax
    categories of the line sources are looked up (one plain query for all packages, `package_skus`) and the
    tax determined (two queries) only for the items not in the cache."""
    catalog_token, rates_token = _tokens()
    common = (customer_id, _profile_facts(profile), tuple(exemption_stamp), catalog_token, rates_token)
    version = data_version_now()
    if version is not None:
        # Under the page cache: the customer's data version too (an exemption or profile written by a queryset
        # update moves no `updated_at`); the page itself is cached under the same version.
        common += (version.customer,)
    keys = {
        item: _key(common, facts, currency, tax_date.isoformat(), tuple(lines))
        for item, (facts, currency, tax_date, lines) in items.items()
    }
    found = cache.get_many(list(keys.values()))
    estimates = {item: found[key] for item, key in keys.items() if key in found}
    missing = {item: items[item] for item in items if item not in estimates}
    if missing:
        categories = _categories(
            {package_id for _, _, _, lines in missing.values() for _, package_id, _ in lines if package_id},
            catalog_token,
        )
        computed = invoice_estimates_for_customer(
            customer_id=customer_id,
            profile=profile,
            has_exemptions=bool(exemption_stamp[1]),
            items={
                item: (currency, tax_date, [_line(line, categories) for line in lines])
                for item, (_, currency, tax_date, lines) in missing.items()
            },
        )
        cache.set_many({keys[item]: estimate for item, estimate in computed.items()}, timeout=cache_seconds())
        estimates.update(computed)
    return estimates


def _skus(package_ids: set[int], catalog_token: str) -> dict[int, dict[str, tuple[str, str]]]:
    # Each package's (SKU code, tax category) by SKU kind, shared by every customer until the catalog changes.
    keys = {package_id: f"estimate:{KEY_VERSION}:skus:{catalog_token}:{package_id}" for package_id in package_ids}
    found = cache.get_many(list(keys.values()))
    skus = {package_id: found[key] for package_id, key in keys.items() if key in found}
    missing = package_ids - skus.keys()
    if missing:
        loaded = package_skus(package_ids=missing)
        cache.set_many({keys[package_id]: value for package_id, value in loaded.items()}, timeout=cache_seconds())
        skus.update(loaded)
    return skus


def package_skus_cached(*, package_ids: set[int]) -> dict[int, dict[str, tuple[str, str]]]:
    """`subscriptions.selectors.package_skus`, cached per package under the catalog token (renewed on every save or
    delete of a Sku or PackageComponent): what `sku_for` answers, without a query once a package is cached."""
    catalog_token, _ = _tokens()
    return _skus(set(package_ids), catalog_token)


def tax_rates_cached(*, country: str, region: str, tax_date: date) -> list[TaxRate]:
    """The tax rates `tax_context_for` reads for (country, region) on `tax_date`, cached under the rates token
    (renewed on every save or delete of a TaxRate): a live preview needs no rate query per keystroke."""
    _, rates_token = _tokens()
    key = f"estimate:{KEY_VERSION}:rates:{rates_token}:{country}:{region}:{tax_date.isoformat()}"
    rates = cache.get(key)
    if rates is None:
        rates = tax_rates_for(country=country, region=region, tax_date=tax_date)
        cache.set(key, rates, timeout=cache_seconds())
    return rates


def _categories(package_ids: set[int], catalog_token: str) -> dict[int, dict[str, str]]:
    return {
        package_id: {kind: sku[1] for kind, sku in skus.items()}
        for package_id, skus in _skus(package_ids, catalog_token).items()
    }


def _line(line: LineSource, categories: dict[int, dict[str, str]]) -> tuple[int, str]:
    amount_minor, package_id, kind_or_category = line
    if package_id is None:
        return amount_minor, kind_or_category
    return amount_minor, categories[package_id][kind_or_category]


def _renew_after_commit(names: Iterable[str]):
    names = tuple(names)

    def renew(**_kwargs) -> None:
        # Now, and once more after the commit: a request that read the old rows between the two cannot leave an
        # estimate under the token that outlives the change.
        estimate_tokens_renew(*names)
        transaction.on_commit(lambda: estimate_tokens_renew(*names))

    return renew


_renew_catalog = _renew_after_commit([CATALOG_TOKEN])
_renew_rates = _renew_after_commit([RATES_TOKEN])


def estimate_invalidation_connect() -> None:
    """Wired once in billing's AppConfig.ready()."""
    for model, receiver in ((Sku, _renew_catalog), (PackageComponent, _renew_catalog), (TaxRate, _renew_rates)):
        post_save.connect(receiver, sender=model, dispatch_uid=f"estimate-{model.__name__}-save")
        post_delete.connect(receiver, sender=model, dispatch_uid=f"estimate-{model.__name__}-delete")
