"""`make cost`: the monthly estimate, the price table, the Price List parsers and --live (Stubber)."""

from __future__ import annotations

import copy
import dataclasses
import json
import re
from pathlib import Path

import pytest
import yaml

from pipeline import aws
from pipeline.cli import main as cli_main
from pipeline.config import parse_config
from pipeline.cost import (
    HOURS_PER_MONTH,
    PriceError,
    build_table,
    estimate,
    live_hourly,
    load_table,
    parse_offer,
    parse_price_list_items,
    report,
)
from pipeline.frameworks import all_regions

REPO = Path(__file__).resolve().parent.parent
SAMPLE = yaml.safe_load((REPO / "pipeline.yml").read_text())


def _config(**changes):
    data = copy.deepcopy(SAMPLE)
    data.update(changes)
    return parse_config(data, root=REPO)


def _sample_variant():
    """Three environments, a bigger prod, in eu-west-1."""
    return _config(
        region="eu-west-1",
        environments=[
            {"name": "qa", "instance_type": "ml.t2.medium"},
            {"name": "staging", "instance_type": "ml.m5.large", "initial_instance_count": 2},
            {"name": "prod", "approval": True, "instance_type": "ml.m5.xlarge", "initial_instance_count": 3},
        ],
    )


def test_sample_is_each_endpoint_all_month_plus_one_key():
    table = load_table()
    items = estimate(_config(), table, kms_keys=1)
    monthly = {item.name: item.monthly for item in items}
    rate = table.hourly("us-east-1", "ml.m5.large")
    assert monthly["endpoint qa"] is None  # serverless: usage-based, nothing while idle
    assert monthly["endpoint prod"] == pytest.approx(2 * HOURS_PER_MONTH * rate)  # autoscaling's minimum
    assert monthly["  up to 4"] is None  # the rest of the range, as traffic needs it
    assert monthly["KMS keys"] == pytest.approx(table.kms_key_month)
    assert monthly["pipeline (V2)"] is None and monthly["S3 storage"] is None  # usage-based


def test_variant_prices_each_environment_in_its_own_type_and_the_pipeline_from_runs():
    table = load_table()
    items = estimate(_sample_variant(), table, kms_keys=2, runs_per_month=40, action_minutes_per_run=25)
    monthly = {item.name: item.monthly for item in items}
    hourly = table.hosting[table.rates_region("eu-west-1")]
    assert monthly["endpoint qa"] == pytest.approx(730 * hourly["ml.t2.medium"])
    assert monthly["endpoint staging"] == pytest.approx(2 * 730 * hourly["ml.m5.large"])
    assert monthly["endpoint prod"] == pytest.approx(3 * 730 * hourly["ml.m5.xlarge"])
    assert monthly["KMS keys"] == pytest.approx(2 * table.kms_key_month)
    assert monthly["pipeline (V2)"] == pytest.approx(40 * 25 * table.codepipeline_action_minute)


def test_report_fits_80_columns_totals_the_priced_items_and_says_the_table_is_unverified():
    table = load_table()
    config = _sample_variant()
    items = estimate(config, table, kms_keys=1, runs_per_month=20)
    lines = report(config, items, table)
    assert all(len(line) <= 80 for line in lines), [line for line in lines if len(line) > 80]
    total = next(line for line in lines if line.strip().startswith("total"))
    assert float(total.split()[-1].replace(",", "")) == pytest.approx(sum(i.monthly for i in items if i.monthly))
    assert not table.verified
    assert any("UNVERIFIED" in line for line in lines)


def test_every_region_is_priced_by_its_own_rates_or_a_named_stand_in():
    table = load_table()
    sample = _config()
    wanted = {env.instance_type for env in sample.environments}
    for region in all_regions():
        assert table.rates_region(region) in (region, table.fallback_region)
        for kind in wanted:
            assert table.hourly(region, kind) > 0
    assert table.date and table.source


def test_a_region_priced_by_the_stand_in_says_so():
    table = load_table()
    config = _sample_variant()  # eu-west-1, which the shipped table lacks
    assert "eu-west-1" not in table.hosting
    lines = report(config, estimate(config, table, kms_keys=1), table)
    assert "  hosting at us-east-1's rates: none shipped for eu-west-1 (rates differ)" in lines


def test_instance_type_missing_from_the_table_is_one_line_naming_it(tmp_path, capsys):
    data = copy.deepcopy(SAMPLE)
    data["environments"][1]["instance_type"] = "ml.m9.huge"
    path = tmp_path / "pipeline.yml"
    path.write_text(yaml.safe_dump(data))
    (tmp_path / "model").symlink_to(REPO / "model")  # the folders the config names, next to it
    assert cli_main(["cost", "--config", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "ml.m9.huge" in err and "us-east-1" in err
    without_stand_in = dataclasses.replace(load_table(), fallback_region=None)
    with pytest.raises(PriceError, match="no region xx-east-9"):
        without_stand_in.hourly("xx-east-9", "ml.m5.large")


def test_readme_shows_what_the_command_prints(capsys):
    assert cli_main(["cost", "--config", str(REPO / "pipeline.yml")]) == 0
    printed = capsys.readouterr().out
    readme = (REPO / "README.md").read_text()
    block = re.search(r"<!-- cost -->\n```\n\$ make cost\n(.*?)```", readme, re.S)
    assert block, "README lacks the make cost sample"
    assert block.group(1) == printed


# ----- the Price List's shape ----------------------------------------------------------------------


def _dimension(usd: str, unit: str = "Hrs") -> dict:
    return {"RATE.CODE": {"unit": unit, "pricePerUnit": {"USD": usd}, "description": "$ per hour"}}


# A hand-made AmazonSageMaker offer file in the documented shape: products by SKU, terms.OnDemand by SKU
# then by offer term (SKU.offerTermCode), priceDimensions by rate code, pricePerUnit a string.
OFFER = {
    "formatVersion": "v1.0",
    "offerCode": "AmazonSageMaker",
    "version": "20261101000000",
    "publicationDate": "2026-11-01T00:00:00Z",
    "products": {
        "HOST1": {
            "sku": "HOST1",
            "productFamily": "ML Instance",
            "attributes": {
                "regionCode": "eu-west-1",
                "instanceName": "ml.m5.large",
                "usagetype": "EU-Host:ml.m5.large",
            },
        },
        "TRAIN1": {
            "sku": "TRAIN1",
            "productFamily": "ML Instance",
            "attributes": {
                "regionCode": "eu-west-1",
                "instanceName": "ml.m5.large",
                "usagetype": "EU-Train:ml.m5.large",
            },
        },
        "HOST2": {
            "sku": "HOST2",
            "productFamily": "ML Instance",
            "attributes": {
                "regionCode": "eu-west-1",
                "instanceName": "ml.c5.xlarge",
                "usagetype": "EU-Host:ml.c5.xlarge",
            },
        },
        "STORE": {
            "sku": "STORE",
            "productFamily": "ML Storage",
            "attributes": {"regionCode": "eu-west-1", "usagetype": "EU-Host:VolumeUsage.gp2"},
        },
    },
    "terms": {
        "OnDemand": {
            "HOST1": {
                "HOST1.JRTCKXETXF": {
                    "offerTermCode": "JRTCKXETXF",
                    "sku": "HOST1",
                    "priceDimensions": _dimension("0.1280000000"),
                }
            },
            "TRAIN1": {"TRAIN1.JRTCKXETXF": {"priceDimensions": _dimension("0.1370000000")}},
            "HOST2": {"HOST2.JRTCKXETXF": {"priceDimensions": _dimension("0.2270000000")}},
            "STORE": {"STORE.JRTCKXETXF": {"priceDimensions": _dimension("0.1540000000", "GB-Mo")}},
        }
    },
}


def test_offer_file_parser_keeps_on_demand_hosting_per_hour_only():
    assert parse_offer(OFFER) == {"ml.m5.large": 0.128, "ml.c5.xlarge": 0.227}


def test_build_table_reads_one_offer_per_region_and_keeps_the_flat_rates():
    old = json.loads((REPO / "pipeline/data/prices.json").read_text())
    body = build_table(["eu-west-1"], ["ml.m5.large", "ml.t2.medium"], lambda region: OFFER, old)
    assert body["hosting"] == {"eu-west-1": {"ml.m5.large": 0.128}}
    assert body["verified"] is True and body["kms_key_month"] == old["kms_key_month"]


def _price_list_item(sku: str) -> str:
    product = OFFER["products"][sku]
    return json.dumps({"product": product, "terms": {"OnDemand": OFFER["terms"]["OnDemand"][sku]}})


def test_live_asks_get_products_for_the_region_and_type_and_follows_pages(stub_aws):
    stubs = stub_aws("pricing")
    filters = [
        {"Type": "TERM_MATCH", "Field": "regionCode", "Value": "eu-west-1"},
        {"Type": "TERM_MATCH", "Field": "instanceName", "Value": "ml.m5.large"},
    ]
    base = {"ServiceCode": "AmazonSageMaker", "Filters": filters, "FormatVersion": "aws_v1"}
    stubs["pricing"].add_response(
        "get_products", {"PriceList": [_price_list_item("TRAIN1")], "NextToken": "page2"}, base
    )
    stubs["pricing"].add_response(
        "get_products", {"PriceList": [_price_list_item("HOST1")]}, {**base, "NextToken": "page2"}
    )
    assert live_hourly(stubs.clients["pricing"], "eu-west-1", "ml.m5.large") == 0.128
    assert parse_price_list_items([_price_list_item("STORE")]) == {}


def test_live_cli_prices_endpoints_from_the_api_and_names_a_missing_price(stub_aws, monkeypatch, capsys):
    stubs = stub_aws("pricing")
    monkeypatch.setattr(aws, "session_for", lambda profile, region: stubs.session)
    stubs["pricing"].add_response("get_products", {"PriceList": [_price_list_item("HOST1")]})
    assert cli_main(["cost", "--config", str(REPO / "pipeline.yml"), "--live"]) == 0  # qa is serverless: no price
    out = capsys.readouterr().out
    assert f"{2 * 730 * 0.128:,.2f}" in out and "Price List API" in out
    stubs["pricing"].add_response("get_products", {"PriceList": []})
    assert cli_main(["cost", "--config", str(REPO / "pipeline.yml"), "--live"]) == 1
    assert (
        capsys.readouterr().err == "cost: the Price List has no on-demand hosting price for ml.m5.large in us-east-1\n"
    )


def test_a_serverless_environment_with_provisioned_concurrency_says_it_bills_while_idle():
    config = _config(
        environments=[
            {"name": "qa", "serverless": {"max_concurrency": 4, "provisioned_concurrency": 2}},
            {"name": "prod", "approval": True},
        ]
    )
    (item,) = [i for i in estimate(config, load_table(), kms_keys=1) if i.name == "endpoint qa"]
    assert (item.basis, item.monthly) == ("usage-based: serverless, 2 provisioned (billed idle)", None)
