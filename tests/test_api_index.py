"""The runs index, cursors and filters, and the webhook rules, without a server: keys that
encode the hour, cursors that round-trip and refuse garbage, filters, which URLs a webhook
may reach, and signatures that Standard Webhooks' own library verifies."""

from __future__ import annotations

import base64
import time

import pytest
from standardwebhooks.webhooks import Webhook

from api._index import (
    HourList,
    IndexEntry,
    RunFilter,
    decode_cursor,
    encode_cursor,
    hour_of,
    index_key,
    order_key,
    with_hour,
)
from api._records import RunRecord
from api._schema import RunStatus
from api._webhook_rules import WebhookConfig, check_url, headers, public_address, secret_key
from api.errors import BadRequestError, WebhookRefusedError

SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()


def _entry(run_id: str, at: float, **fields: object) -> IndexEntry:
    values: dict[str, object] = {"session": "s1", "user": "ann", "status": RunStatus.DONE,
                                 "created_at": at, **fields}
    return IndexEntry(run_id=run_id, **values)  # type: ignore[arg-type]


def test_a_run_is_indexed_under_its_utc_hour_and_session() -> None:
    record = RunRecord(run_id="a" * 32, session="s-1", user="ann", message="hi",
                       traceparent="", created_at=1795850393.3)
    assert hour_of(1795850393.3) == time.strftime("%Y%m%d%H", time.gmtime(1795850393))
    assert index_key(record) == f"idx.{hour_of(1795850393.3)}.s-1.{'a' * 32}"


def test_hours_are_kept_newest_first_and_expired_ones_dropped() -> None:
    hours = with_hour(HourList(hours=["2026120710", "2026110100"]), "2026120712",
                      oldest="2026110800")
    assert hours.hours == ["2026120712", "2026120710"]
    assert with_hour(hours, "2026120712", oldest="2026110800") == hours


def test_a_cursor_round_trips_and_garbage_is_refused() -> None:
    entry = _entry("b" * 32, 1795850393.25)
    assert decode_cursor(encode_cursor(entry)) == order_key(entry)
    assert encode_cursor(entry) == f"1795850393.25_{'b' * 32}"
    for bad in ("", "!!!", "1795850393.25", f"1e5_{'b' * 32}", f"12_{'B' * 32}",
                base64.urlsafe_b64encode(b'{"a": 1}').decode()):
        with pytest.raises(BadRequestError):
            decode_cursor(bad)


def test_filters_keep_what_they_name_and_runs_after_the_cursor() -> None:
    a = _entry("a" * 32, 100.0, tags=["x", "y"], role="python_coder", flow="sequential")
    b = _entry("b" * 32, 200.0, status=RunStatus.FAILED, user="bob", session="s2")
    assert RunFilter().keeps(a) and RunFilter().keeps(b)
    assert RunFilter(statuses=frozenset({RunStatus.FAILED})).keeps(b)
    assert not RunFilter(statuses=frozenset({RunStatus.FAILED})).keeps(a)
    assert RunFilter(tags=frozenset({"x", "y"})).keeps(a)
    assert not RunFilter(tags=frozenset({"x", "z"})).keeps(a)
    assert RunFilter(role="python_coder", flow="sequential").keeps(a)
    assert not RunFilter(user="ann").keeps(b) and not RunFilter(session="s1").keeps(b)
    assert RunFilter(since=150.0).keeps(b) and not RunFilter(since=150.0).keeps(a)
    assert not RunFilter(until=200.0).keeps(b)  # until is exclusive
    assert RunFilter(after=order_key(b)).keeps(a) and not RunFilter(after=order_key(b)).keeps(b)


def test_hours_visited_are_those_of_the_window() -> None:
    known = ["2026120712", "2026120711", "2026120709"]
    start = time.mktime(time.strptime("2026120711", "%Y%m%d%H")) - time.timezone
    assert hour_of(start) == "2026120711"
    assert RunFilter(since=start).hours(known) == ["2026120712", "2026120711"]
    assert RunFilter(until=start + 1).hours(known) == ["2026120711", "2026120709"]


def test_webhook_urls_must_be_http_and_public_unless_allowed() -> None:
    config = WebhookConfig(key=b"k", allow_hosts=frozenset({"127.0.0.1"}))
    assert check_url("https://hooks.example.com/x?y=1", config).host == "hooks.example.com"
    assert check_url("http://127.0.0.1:9/x", config).port == 9
    for url in ("ftp://example.com/x", "http://user:pw@example.com/", "http:///nohost",
                "http://10.1.2.3/", "http://169.254.169.254/latest/meta-data",
                "http://[::1]:80/", "http://100.64.0.1/", "http://[::ffff:192.168.0.1]/"):
        with pytest.raises(WebhookRefusedError):
            check_url(url, config)
    with pytest.raises(WebhookRefusedError):  # no secret: webhooks are off
        check_url("https://hooks.example.com/x", WebhookConfig())
    assert public_address("8.8.8.8") and not public_address("192.168.1.1")
    assert not public_address("fe80::1%eth0") and not public_address("not an address")


def test_signatures_verify_with_the_standard_webhooks_library() -> None:
    body = b'{"type":"run.done","data":{"run_id":"x"}}'
    fields = headers(secret_key(SECRET), "msg_x", int(time.time()), body)
    assert Webhook(SECRET).verify(body, fields) == {"type": "run.done", "data": {"run_id": "x"}}
    assert secret_key("plain text secret") == b"plain text secret"
    with pytest.raises(WebhookRefusedError):
        secret_key("whsec_not base64!")
    assert WebhookConfig(attempts=3, backoff_s=0.5).delays() == [0.0, 0.5, 1.0]
