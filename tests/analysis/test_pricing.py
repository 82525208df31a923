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
    def test_covers_families_and_regions(self) -> None:
        """t3/t4g small..2xlarge and c7i/m7i/c6i large..2xlarge exist in us-east-1 and eu-west-1, plus ALB rows."""
        keys = {(p.region, p.instance_type) for p in price_table()}
        for region in ("us-east-1", "eu-west-1"):
            for fam in ("t3", "t4g"):
                for size in ("small", "medium", "large", "xlarge", "2xlarge"):
                    assert (region, f"{fam}.{size}") in keys
            for fam in ("c7i", "m7i", "c6i"):
                for size in ("large", "xlarge", "2xlarge"):
                    assert (region, f"{fam}.{size}") in keys
            assert (region, "alb") in keys and (region, "alb_lcu") in keys
        assert all(p.as_of and p.usd_per_hour > 0 for p in price_table())

    def test_lookup(self) -> None:
        """Known prices come back as floats; eu-west-1 is dearer than us-east-1 for the same type."""
        assert hourly_price("t3.small", "us-east-1") == 0.0208
        assert hourly_price("t3.small", "eu-west-1") > hourly_price("t3.small", "us-east-1")

    def test_unknown_type_names_the_fix(self) -> None:
        """An unknown type raises SpecError that lists known types and says how to add one."""
        with pytest.raises(SpecError) as exc:
            hourly_price("g5.xlarge", "us-east-1")
        assert exc.value.field == "instance_type"
        assert "register_price('g5.xlarge', 'us-east-1'" in str(exc.value) and "t3.small" in str(exc.value)

    def test_unknown_region_lists_regions(self) -> None:
        """An unknown region lists the regions the table has."""
        with pytest.raises(SpecError, match="known regions: eu-west-1, us-east-1"):
            hourly_price("t3.small", "mars-north-1")

    def test_register_price_wins(self) -> None:
        """A registered price is used for lookups and validated."""
        register_price("g5.xlarge", "us-east-1", 1.006, as_of="2025-01-15")
        assert hourly_price("g5.xlarge", "us-east-1") == 1.006
        with pytest.raises(SpecError):
            register_price("g5.xlarge", "us-east-1", -1)


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
