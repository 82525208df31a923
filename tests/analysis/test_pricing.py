"""The shipped price table, lookups, LCU estimate, and the Pricing API refresh (botocore Stubber)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import boto3
import pytest
from botocore.stub import Stubber

from mlops_lb.analysis import pricing
from mlops_lb.analysis.pricing import (
    alb_hourly_cost,
    estimate_lcu,
    hourly_price,
    price_table,
    refresh_prices_from_aws,
    register_price,
    spot_snapshot,
)
from mlops_lb.errors import MetricsError, SpecError


@pytest.fixture(autouse=True)
def _clean_overrides() -> Iterator[None]:
    saved = dict(pricing._overrides)
    pricing._overrides.clear()
    yield
    pricing._overrides.clear()
    pricing._overrides.update(saved)


class TestTable:
    def test_every_row_has_a_source_url_and_a_date(self) -> None:
        """Each shipped row (on-demand and spot) names an https source and an ISO date: no unsourced number."""
        import datetime as dt

        rows = pricing._shipped_rows()
        assert len(rows) > 40
        for p in rows:
            assert p.source.startswith("https://"), p
            dt.date.fromisoformat(p.as_of)
            assert p.usd_per_hour > 0 and p.market in ("on_demand", "spot")
            assert (p.market == "spot") == bool(p.zone), p

    def test_gpu_families_in_three_regions(self) -> None:
        """g4dn and g5 are priced in us-east-1, us-west-2 and eu-west-1; g6/g6e in the US regions; t3 everywhere."""
        keys = {(p.region, p.instance_type) for p in price_table()}
        for region in ("us-east-1", "us-west-2", "eu-west-1"):
            for itype in ("t3.small", "t3.large", "g4dn.xlarge", "g5.xlarge", "g5.12xlarge"):
                assert (region, itype) in keys
        for region in ("us-east-1", "us-west-2"):
            for itype in ("g6.xlarge", "g6e.xlarge", "g6e.48xlarge"):
                assert (region, itype) in keys
        assert ("us-east-1", "alb") in keys and ("us-east-1", "alb_lcu") in keys

    def test_accelerator_and_cpu_rows(self) -> None:
        """p4d, inf2 and the CPU types are priced in all three regions; p5 and trn1 only in the US regions,
        because the catalog has no eu-west-1 row for them (a lookup there says how to add one)."""
        keys = {(p.region, p.instance_type) for p in price_table()}
        everywhere = ("p4d.24xlarge", "inf2.xlarge", "inf2.8xlarge", "inf2.24xlarge", "inf2.48xlarge",
                      "t3.medium", "t4g.small", "t4g.medium", "c6i.large", "c6i.xlarge", "c7i.large",
                      "c7i.xlarge", "m7i.large", "m7i.xlarge")  # fmt: skip
        us_only = ("p5.4xlarge", "p5.48xlarge", "trn1.2xlarge", "trn1.32xlarge")
        for region in ("us-east-1", "us-west-2", "eu-west-1"):
            for itype in everywhere:
                assert (region, itype) in keys, (region, itype)
        for itype in us_only:
            assert ("us-east-1", itype) in keys and ("us-west-2", itype) in keys
            assert ("eu-west-1", itype) not in keys
        assert hourly_price("p5.48xlarge", "us-east-1") == 55.04
        assert hourly_price("p4d.24xlarge", "eu-west-1") == 23.71569
        assert hourly_price("inf2.xlarge", "us-west-2") == 0.7582
        with pytest.raises(SpecError, match="register_price"):
            hourly_price("p5.48xlarge", "eu-west-1")

    def test_spot_rows_are_a_snapshot_not_on_demand(self) -> None:
        """Spot rows never answer an on-demand lookup; they are cheaper than on-demand for the same type."""
        snap = spot_snapshot()
        assert snap and all(p.market == "spot" for p in snap)
        for p in snap:
            assert p.usd_per_hour < hourly_price(p.instance_type, p.region)

    def test_lookup(self) -> None:
        """Known prices come back as floats; eu-west-1 is dearer than us-east-1 for the same type."""
        assert hourly_price("t3.small", "us-east-1") == 0.0208
        assert hourly_price("g5.xlarge", "us-east-1") == 1.006
        assert hourly_price("t3.small", "eu-west-1") > hourly_price("t3.small", "us-east-1")

    def test_unknown_type_names_the_fix(self) -> None:
        """An unknown type raises SpecError that lists known types and says how to add one."""
        with pytest.raises(SpecError) as exc:
            hourly_price("p4de.24xlarge", "us-east-1")
        assert exc.value.field == "instance_type"
        assert "register_price('p4de.24xlarge', 'us-east-1'" in str(exc.value)
        assert "t3.small" in str(exc.value)

    def test_unknown_region_lists_regions(self) -> None:
        """An unknown region lists the regions the table has."""
        with pytest.raises(SpecError, match="known regions: eu-west-1, us-east-1, us-west-2"):
            hourly_price("t3.small", "mars-north-1")

    def test_register_price_wins(self) -> None:
        """A registered price is used for lookups and validated."""
        register_price("p4de.24xlarge", "us-east-1", 98.32, as_of="2026-12-01", source="invoice")
        assert hourly_price("p4de.24xlarge", "us-east-1") == 98.32
        with pytest.raises(SpecError):
            register_price("p4de.24xlarge", "us-east-1", -1)


class TestLcu:
    def test_dimensions(self) -> None:
        """1000 rps: new connections 10/s -> 0.4 LCU; active 600/min -> 0.2; 7.2 GB/h -> 7.2; max is 7.2."""
        assert estimate_lcu(1000) == pytest.approx(7.2)
        assert estimate_lcu(1000, bytes_per_request=100, requests_per_connection=1) == pytest.approx(40.0)
        assert estimate_lcu(0) == 0.0

    def test_alb_hourly(self) -> None:
        """ALB hour + LCU-hours: 0.0225 + 7.2 x 0.008 = 0.0801 USD/h in us-east-1."""
        assert alb_hourly_cost(1000, "us-east-1") == pytest.approx(0.0801)


def _price_item(usd: str, unit: str = "Hrs") -> str:
    return json.dumps(
        {
            "product": {"attributes": {"instanceType": "t3.small", "location": "US East (N. Virginia)"}},
            "terms": {
                "OnDemand": {
                    "SKU.JRTCKXETXF": {
                        "priceDimensions": {
                            "SKU.JRTCKXETXF.6YS6EN2CT7": {"unit": unit, "pricePerUnit": {"USD": usd}}
                        }
                    }
                }
            },
        }
    )


def _expected(itype: str, location: str, token: str | None = None) -> dict[str, object]:
    params: dict[str, object] = {
        "ServiceCode": "AmazonEC2",
        "Filters": [
            {"Type": "TERM_MATCH", "Field": k, "Value": v}
            for k, v in (
                ("instanceType", itype),
                ("location", location),
                ("operatingSystem", "Linux"),
                ("tenancy", "Shared"),
                ("preInstalledSw", "NA"),
                ("capacitystatus", "Used"),
            )
        ],
        "FormatVersion": "aws_v1",
        "MaxResults": 100,
    }
    if token:
        params["NextToken"] = token
    return params


class TestRefresh:
    def _client(self):  # type: ignore[no-untyped-def]
        return boto3.client(
            "pricing", region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
        )

    def test_refresh_with_pagination(self) -> None:
        """GetProducts is called with the EC2 filters, follows NextToken, and the price is registered."""
        client = self._client()
        with Stubber(client) as stub:
            stub.add_response(
                "get_products",
                {"PriceList": [_price_item("0.0000000000")], "NextToken": "p2"},
                _expected("t3.small", "US East (N. Virginia)"),
            )
            stub.add_response(
                "get_products",
                {"PriceList": [_price_item("0.0210000000")]},
                _expected("t3.small", "US East (N. Virginia)", "p2"),
            )
            stub.add_response(
                "get_products",
                {"PriceList": [_price_item("0.0230000000")]},
                _expected("t3.small", "EU (Ireland)"),
            )
            found = refresh_prices_from_aws(
                ["t3.small"], ["us-east-1", "eu-west-1"], client=client, as_of="2025-02-01"
            )
            stub.assert_no_pending_responses()
        assert [(p.region, p.usd_per_hour) for p in found] == [("us-east-1", 0.021), ("eu-west-1", 0.023)]
        assert hourly_price("t3.small", "us-east-1") == 0.021
        assert any(p.as_of == "2025-02-01" for p in price_table())

    def test_no_match_is_skipped(self) -> None:
        """A type with no on-demand hourly price is skipped, not registered."""
        client = self._client()
        with Stubber(client) as stub:
            stub.add_response(
                "get_products", {"PriceList": []}, _expected("x1.tiny", "US East (N. Virginia)")
            )
            assert refresh_prices_from_aws(["x1.tiny"], client=client) == []

    def test_client_error_is_translated(self) -> None:
        """An AccessDenied from AWS becomes MetricsError with the code and a hint, the original on __cause__."""
        client = self._client()
        with Stubber(client) as stub:
            stub.add_client_error(
                "get_products",
                service_error_code="AccessDeniedException",
                service_message="no",
                http_status_code=403,
            )
            with pytest.raises(MetricsError) as exc:
                refresh_prices_from_aws(["t3.small"], client=client)
        assert exc.value.code == "AccessDeniedException" and "pricing:GetProducts" in str(exc.value)
        assert exc.value.__cause__ is not None

    def test_unknown_region(self) -> None:
        """A region without a Pricing API location name is a SpecError."""
        with pytest.raises(SpecError, match="regions"):
            refresh_prices_from_aws(["t3.small"], ["mars-north-1"], client=object())


# DescribeSpotPriceHistory response shape, as documented:
# https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_DescribeSpotPriceHistory.html
# (SpotPriceHistory: AvailabilityZone, InstanceType, ProductDescription, SpotPrice (string), Timestamp; NextToken).
def _spot(zone: str, usd: str, ts: str, itype: str = "g5.xlarge") -> dict[str, object]:
    import datetime as dt

    return {
        "AvailabilityZone": zone,
        "InstanceType": itype,
        "ProductDescription": "Linux/UNIX",
        "SpotPrice": usd,
        "Timestamp": dt.datetime.fromisoformat(ts),
    }


class TestSpotRefresh:
    def _client(self):  # type: ignore[no-untyped-def]
        return boto3.client(
            "ec2", region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
        )

    def test_newest_price_per_zone_across_pages(self) -> None:
        """Pages are followed; the newest price per zone wins; source and timestamp are kept."""
        from botocore.stub import ANY

        client = self._client()
        with Stubber(client) as stub:
            params = {"InstanceTypes": ["g5.xlarge"], "ProductDescriptions": ["Linux/UNIX"], "StartTime": ANY}
            stub.add_response(
                "describe_spot_price_history",
                {
                    "SpotPriceHistory": [
                        _spot("us-east-1a", "0.4100", "2026-12-06T10:00:00+00:00"),
                        _spot("us-east-1a", "0.4507", "2026-12-06T11:00:00+00:00"),
                    ],
                    "NextToken": "t2",
                },
                params,
            )
            stub.add_response(
                "describe_spot_price_history",
                {"SpotPriceHistory": [_spot("us-east-1b", "0.4246", "2026-12-06T09:00:00+00:00")]},
                {**params, "NextToken": "t2"},
            )
            got = pricing.refresh_spot_prices_from_aws(["g5.xlarge"], "us-east-1", client=client)
            stub.assert_no_pending_responses()
        assert [(p.zone, p.usd_per_hour, p.market) for p in got] == [
            ("us-east-1a", 0.4507, "spot"),
            ("us-east-1b", 0.4246, "spot"),
        ]
        assert got[0].as_of.startswith("2026-12-06T11") and "DescribeSpotPriceHistory" in got[0].source
        # a spot figure never becomes the on-demand price
        assert hourly_price("g5.xlarge", "us-east-1") == 1.006

    def test_error_translated(self) -> None:
        """UnauthorizedOperation becomes MetricsError naming the permission."""
        client = self._client()
        with Stubber(client) as stub:
            stub.add_client_error("describe_spot_price_history", service_error_code="UnauthorizedOperation")
            with pytest.raises(MetricsError) as exc:
                pricing.refresh_spot_prices_from_aws(["g5.xlarge"], client=client)
        assert "ec2:DescribeSpotPriceHistory" in str(exc.value)


class TestPrices:
    def test_offline_table_says_source(self) -> None:
        """refresh=False: shipped on-demand and spot rows, each with its URL and date."""
        df = pricing.prices(["g5.xlarge"], ["us-east-1"], spot=True, refresh=False)
        assert set(df["market"]) == {"on_demand", "spot"}
        assert df["source"].str.startswith("https://").all() and df["as_of"].str.len().min() >= 10

    def test_refresh_marks_api_rows_and_falls_back(self) -> None:
        """An API price replaces the table row (source = the API); a type the API lacks keeps the cited row."""
        client = boto3.client(
            "pricing", region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
        )
        with Stubber(client) as stub:
            stub.add_response(
                "get_products",
                {"PriceList": [_price_item("1.0100000000")]},
                _expected("g5.xlarge", "US East (N. Virginia)"),
            )
            stub.add_response(
                "get_products", {"PriceList": []}, _expected("g6.xlarge", "US East (N. Virginia)")
            )
            df = pricing.prices(
                ["g5.xlarge", "g6.xlarge"], ["us-east-1"], pricing_client=client, as_of="2026-12-07"
            )
        by = df.set_index("instance_type")
        assert by.loc["g5.xlarge", "usd_per_hour"] == 1.01 and "GetProducts" in by.loc["g5.xlarge", "source"]
        assert by.loc["g6.xlarge", "usd_per_hour"] == 0.8048 and by.loc["g6.xlarge", "source"].startswith(
            "https://"
        )
