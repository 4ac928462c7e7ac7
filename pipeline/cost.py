"""`make cost`: what the stood-up stacks keep running and what that costs per month, from the config alone.

Prices come from `pipeline/data/prices.json`, a table the project ships for every region some
framework has images in (a superset of the regions `make regions` accepts), with its date, its
source and whether its numbers were checked against AWS's Price List. `make prices` rewrites it
from AWS's public Price List bulk files (one offer file per region, format documented in the AWS
Billing guide, "Reading the service price list file"); `--live` asks the Price List API
(`pricing:GetProducts`) instead of the table. Nothing here changes anything in AWS.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Any

HOURS_PER_MONTH = 730  # AWS's pricing pages and calculator count a month as 730 hours
PRICES_FILE = "data/prices.json"
OFFER_URL = "https://pricing.us-east-1.amazonaws.com/offers/v1.0/aws/AmazonSageMaker/current/{region}/index.json"
WIDTH = 80
ALARMS_PER_GUARDED_ENDPOINT = 2  # 5XX errors and model latency (pipeline/stacks/endpoint.py)


class PriceError(Exception):
    """A price the table or the Price List does not have; the message is one line naming it."""


@dataclass(frozen=True)
class PriceTable:
    """Hourly on-demand prices of SageMaker hosting instances per region, and the flat rates."""

    date: str
    source: str
    verified: bool
    hosting: Mapping[str, Mapping[str, float]]  # region -> instance type -> USD per hour
    kms_key_month: float
    codepipeline_action_minute: float
    s3_gb_month: float
    cloudwatch_alarm_month: float  # one standard-resolution metric alarm
    # Whose rates stand in for a region the table lacks (said on the report); None: no stand-in.
    fallback_region: str | None = None

    def rates_region(self, region: str) -> str:
        """The region whose hosting rates price `region`: its own, else the named stand-in."""
        if region in self.hosting:
            return region
        if self.fallback_region is not None and self.fallback_region in self.hosting:
            return self.fallback_region
        raise PriceError(f"the price table has no region {region} (make prices rewrites it)")

    def hourly(self, region: str, instance_type: str) -> float:
        """USD per hour of one hosting instance; PriceError names what the table lacks."""
        source = self.rates_region(region)
        prices = self.hosting[source]
        if instance_type not in prices:
            known = ", ".join(sorted(prices))
            raise PriceError(f"the price table has no hosting price for {instance_type} in {source} (it has: {known})")
        return prices[instance_type]


def load_table(text: str | None = None) -> PriceTable:
    """The shipped price table (or one given as JSON text)."""
    body = json.loads(text if text is not None else resources.files("pipeline").joinpath(PRICES_FILE).read_text())
    return PriceTable(
        date=body["date"],
        source=body["source"],
        verified=body["verified"],
        hosting=body["hosting"],
        kms_key_month=body["kms_key_month"],
        codepipeline_action_minute=body["codepipeline_action_minute"],
        s3_gb_month=body["s3_gb_month"],
        cloudwatch_alarm_month=body["cloudwatch_alarm_month"],
        fallback_region=body.get("fallback_region"),
    )


# ----- the Price List's shape: offer files (bulk) and GetProducts (API) -------------------------


def _hosting_type(attributes: Mapping[str, Any]) -> str | None:
    """The instance type a product prices when it is real-time hosting, else None. Hosting products
    carry a usage type `<region prefix>-Host:<instance type>` (training is `-Train:`, notebooks
    `-Notebk:`); assumed from published SageMaker offer files, not checked here."""
    usage = str(attributes.get("usagetype", ""))
    _, _, kind_and_type = usage.partition("-")
    kind, _, instance_type = kind_and_type.partition(":")
    if kind == "Host" and instance_type.startswith("ml."):
        return instance_type
    return None


def _on_demand_usd_per_hour(terms: Mapping[str, Any]) -> float | None:
    """The on-demand USD price per hour among a product's terms ({offer term: {priceDimensions}})."""
    for term in terms.values():
        for dimension in term.get("priceDimensions", {}).values():
            if dimension.get("unit", "").lower() in ("hrs", "hours", "hour") and "USD" in dimension["pricePerUnit"]:
                return float(dimension["pricePerUnit"]["USD"])
    return None


def parse_offer(offer: Mapping[str, Any]) -> dict[str, float]:
    """Instance type -> USD per hour of real-time hosting, from one region's AmazonSageMaker offer
    file (`products` by SKU with `attributes`; `terms.OnDemand` by SKU, then by offer term, with
    `priceDimensions` whose `pricePerUnit.USD` is a string)."""
    on_demand = offer.get("terms", {}).get("OnDemand", {})
    found: dict[str, float] = {}
    for sku, product in offer.get("products", {}).items():
        instance_type = _hosting_type(product.get("attributes", {}))
        if instance_type is None or sku not in on_demand:
            continue
        price = _on_demand_usd_per_hour(on_demand[sku])
        if price is not None and price > 0:
            found[instance_type] = price
    return found


def parse_price_list_items(items: Iterable[str]) -> dict[str, float]:
    """The same, from GetProducts' PriceList: JSON strings each with `product` and `terms`."""
    found: dict[str, float] = {}
    for item in items:
        body = json.loads(item)
        instance_type = _hosting_type(body.get("product", {}).get("attributes", {}))
        price = _on_demand_usd_per_hour(body.get("terms", {}).get("OnDemand", {}))
        if instance_type is not None and price is not None and price > 0:
            found[instance_type] = price
    return found


def live_hourly(pricing_client: Any, region: str, instance_type: str) -> float:
    """USD per hour of one hosting instance from the Price List API (its endpoint is in us-east-1)."""
    filters = [
        {"Type": "TERM_MATCH", "Field": "regionCode", "Value": region},
        {"Type": "TERM_MATCH", "Field": "instanceName", "Value": instance_type},
    ]
    items: list[str] = []
    token = None
    while True:
        args: dict[str, Any] = {"ServiceCode": "AmazonSageMaker", "Filters": filters, "FormatVersion": "aws_v1"}
        if token:
            args["NextToken"] = token
        page = pricing_client.get_products(**args)
        items.extend(page.get("PriceList", []))
        token = page.get("NextToken")
        if not token:
            break
    prices = parse_price_list_items(items)
    if instance_type not in prices:
        raise PriceError(f"the Price List has no on-demand hosting price for {instance_type} in {region}")
    return prices[instance_type]


# ----- the estimate ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Item:
    """One line of the estimate: what, how it is counted, and USD per month (None: usage-based)."""

    name: str
    basis: str
    monthly: float | None


def kms_key_count(templates: Mapping[str, Mapping[str, Any]]) -> int:
    """Customer-managed keys in the rendered templates (each is billed per month while it exists)."""
    return sum(
        1
        for template in templates.values()
        for resource in template.get("Resources", {}).values()
        if resource["Type"] == "AWS::KMS::Key"
    )


def _endpoint_items(env: Any, rate: float) -> list[Item]:
    """An environment's endpoint: usage-based when serverless (per request and compute time, nothing
    while idle unless provisioned concurrency is set); instances around the clock otherwise, the
    minimum counted and the rest of an autoscaled range shown as usage."""
    name = f"endpoint {env.name}"
    if env.serverless is not None:
        warm = env.serverless.provisioned_concurrency
        basis = (
            f"usage-based: serverless, {warm} provisioned (billed idle)"
            if warm
            else "usage-based: serverless, nothing while idle"
        )
        return [Item(name, basis, None)]
    scaling = env.autoscaling
    count = scaling.min_instances if scaling else env.initial_instance_count
    counted = f"{count}..{scaling.max_instances}" if scaling else f"{count}"
    items = [
        Item(name, f"{counted} x {env.instance_type} x {HOURS_PER_MONTH} h x {rate:g}", count * HOURS_PER_MONTH * rate)
    ]
    if scaling and scaling.max_instances > count:
        most = scaling.max_instances * HOURS_PER_MONTH * rate
        items.append(Item(f"  up to {scaling.max_instances}", f"usage-based: autoscaled, at most {most:,.2f}", None))
    return items


def estimate(
    config: Any,
    table: PriceTable,
    *,
    kms_keys: int,
    runs_per_month: int | None = None,
    action_minutes_per_run: int = 30,
    hourly: Callable[[str, str], float] | None = None,
) -> list[Item]:
    """The monthly items for a config: each environment's endpoint, its rollback alarms and data
    capture, the keys, the pipeline, S3. `hourly(region, instance type)` overrides the table's
    hosting prices (--live)."""
    price = hourly or table.hourly
    items = []
    alarms = sum(ALARMS_PER_GUARDED_ENDPOINT for env in config.environments if env.guardrails)
    captured = [env.name for env in config.environments if env.capture]
    for env in config.environments:
        items += _endpoint_items(
            env, price(env.region or config.region, env.instance_type) if not env.serverless else 0
        )
    if alarms:
        rate = table.cloudwatch_alarm_month
        items.append(Item("rollback alarms", f"{alarms} CloudWatch alarms x {rate:g}", alarms * rate))
    if captured:
        items.append(Item("data capture", f"usage-based: S3 GB-month and requests ({', '.join(captured)})", None))
    monitored = [f"{env.name} {env.monitoring.schedule}" for env in config.environments if env.monitoring]
    if monitored:
        # One ml.m5.xlarge processing job per scheduled run, and the baseline job per Train run
        # (scripts/baseline.py, pipeline/stacks/endpoint.py): processing is not in the price table.
        items.append(
            Item("monitoring", f"usage-based: a processing job per run ({', '.join(monitored)}) + baseline", None)
        )
    items.append(
        Item("KMS keys", f"{kms_keys} customer-managed x {table.kms_key_month:g}", kms_keys * table.kms_key_month)
    )
    per_minute = table.codepipeline_action_minute
    if runs_per_month is None:
        items.append(Item("pipeline (V2)", f"usage-based: {per_minute:g} per action-minute", None))
    else:
        minutes = runs_per_month * action_minutes_per_run
        items.append(
            Item(
                "pipeline (V2)",
                f"{runs_per_month} runs x {action_minutes_per_run} action-min x {per_minute:g}",
                minutes * per_minute,
            )
        )
    items.append(Item("S3 storage", f"usage-based: {table.s3_gb_month:g} per GB-month", None))
    return items


def report(config: Any, items: list[Item], table: PriceTable, live: bool = False) -> list[str]:
    """The estimate as lines of at most 80 characters: one per item, the total, the prices' caveat."""
    lines = [f"{config.project} in {config.region}: monthly cost, USD"]
    for item in items:
        amount = "usage" if item.monthly is None else f"{item.monthly:,.2f}"
        lines.append(f"  {item.name:<16.16} {item.basis:<47.47} {amount:>10}")
    total = sum(item.monthly for item in items if item.monthly is not None)
    lines.append(f"  {'total':<16} {'(usage-based items not included)':<47} {total:>10,.2f}")
    if live:
        lines.append("hosting prices: AWS Price List API, on-demand, now; other rates from the table")
    else:
        lines.append(f"prices: table of {table.date}")
        lines.append(f"  source: {table.source}")
        stand_in = table.rates_region(config.region)
        if stand_in != config.region:
            lines.append(f"  hosting at {stand_in}'s rates: none shipped for {config.region} (rates differ)")
    if not table.verified:
        lines.append("CAVEAT: the table's numbers are UNVERIFIED (not fetched from the Price List);")
        lines.append("        run make prices, or pass --live, before relying on them")
    return lines


# ----- `make prices`: the table from the Price List's bulk files --------------------------------


def fetch_offer(region: str, opener: Callable[[str], bytes] | None = None) -> dict[str, Any]:
    """One region's AmazonSageMaker offer file (large: hundreds of MB for the big regions)."""
    if opener is None:
        from urllib.request import urlopen

        def opener(url: str) -> bytes:
            with urlopen(url, timeout=600) as response:  # noqa: S310 - a fixed https URL
                return response.read()

    return json.loads(opener(OFFER_URL.format(region=region)))


def build_table(
    regions: Iterable[str], instance_types: Iterable[str], offer_for: Callable[[str], Mapping[str, Any]], old: dict
) -> dict[str, Any]:
    """The table's JSON body: hosting prices of `instance_types` per region from the offer files;
    the flat rates (KMS, CodePipeline, S3, CloudWatch alarms) are kept from `old` (they are not in SageMaker's file)."""
    wanted = sorted(set(instance_types))
    hosting = {}
    for region in sorted(regions):
        prices = parse_offer(offer_for(region))
        hosting[region] = {kind: prices[kind] for kind in wanted if kind in prices}
    return {
        **old,
        "date": date.today().isoformat(),
        "source": "AWS Price List bulk files (AmazonSageMaker/current/<region>/index.json), on-demand",
        "verified": True,
        "hosting": hosting,
    }


def main(argv: list[str] | None = None) -> int:
    """`make prices`: rewrite the price table from the Price List's bulk files (needs the network)."""
    import argparse

    from pipeline.frameworks import all_regions

    parser = argparse.ArgumentParser(prog="python -m pipeline.cost", description=main.__doc__)
    parser.add_argument("--write-prices", metavar="FILE", required=True)
    args = parser.parse_args(argv)
    path = Path(args.write_prices)
    old = json.loads(path.read_text()) if path.is_file() else json.loads(load_table_text())
    instance_types = {kind for prices in old["hosting"].values() for kind in prices}
    try:
        body = build_table(all_regions(), instance_types, fetch_offer, old)
    except OSError as exc:
        print(f"prices: cannot read the Price List ({exc})", file=sys.stderr)
        return 1
    path.write_text(json.dumps(body, indent=1, sort_keys=True) + "\n")
    print(f"wrote {path}: {len(body['hosting'])} regions")
    return 0


def load_table_text() -> str:
    """The shipped table's JSON text."""
    return resources.files("pipeline").joinpath(PRICES_FILE).read_text()


if __name__ == "__main__":
    sys.exit(main())
