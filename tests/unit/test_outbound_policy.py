"""The outbound address policy on its own: decisions from injected resolver answers (no
DNS, no traffic), and the httpx client factory against a loopback server, with a
resolver that maps made-up names to loopback or to refused addresses."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from reflow.config import Settings
from reflow.connectors import outbound
from reflow.connectors.outbound import OutboundRefused, Policy, check_host, decide
from reflow.connectors.outbound_http import outbound_client
from reflow.runtime import install_outbound_policy

PRODUCTION = Policy(allow_loopback=False)
EMBEDDED = Policy(allow_loopback=True)


@pytest.mark.parametrize("address", [
    "169.254.169.254", "fd00:ec2::254", "100.100.100.200", "169.254.1.1", "fe80::1",
    "::ffff:169.254.169.254",  # IPv4-mapped
    "::ffff:0:a9fe:a9fe",  # IPv4-translated 169.254.169.254
    "64:ff9b::a9fe:a9fe",  # NAT64 169.254.169.254
    "2002:a9fe:a9fe::1",  # 6to4 169.254.169.254
    "::a9fe:a9fe",  # IPv4-compatible 169.254.169.254
])
def test_metadata_and_link_local_refused_even_on_the_embedded_default(address: str) -> None:
    decision = decide("h.example", [address], EMBEDDED)
    assert not decision.allowed
    assert decision.address == address and decision.setting == outbound.ALLOW_SETTING


@pytest.mark.parametrize("address", ["127.0.0.1", "127.9.9.9", "::1", "0.0.0.0", "::",
                                     "::ffff:127.0.0.1", "64:ff9b::7f00:1", "2002:7f00:1::"])
def test_loopback_refused_in_production_allowed_embedded(address: str) -> None:
    assert not decide("db", [address], PRODUCTION).allowed
    assert decide("db", [address], EMBEDDED).allowed


@pytest.mark.parametrize("address", ["10.1.2.3", "172.16.0.9", "192.168.1.1", "fd12::1",
                                     "::ffff:10.0.0.1", "8.8.8.8", "2606:4700::1111"])
def test_private_and_public_addresses_allowed_by_default(address: str) -> None:
    assert decide("warehouse", [address], PRODUCTION).allowed


def test_one_refused_address_refuses_the_host() -> None:
    decision = decide("both.example", ["93.184.216.34", "169.254.169.254"], PRODUCTION)
    assert not decision.allowed and decision.address == "169.254.169.254"


def test_metadata_host_names_refused_before_resolution() -> None:
    calls: list[str] = []

    def resolver(host: str, port: int) -> list[str]:
        calls.append(host)
        return ["10.0.0.1"]

    with pytest.raises(OutboundRefused, match="metadata"):
        check_host("metadata.google.internal", 80, policy=EMBEDDED, resolver=resolver)
    assert calls == []


def test_allow_widens_and_deny_narrows() -> None:
    policy = Policy.parse(allow="127.0.0.0/8, ::1, 169.254.169.254, .corp.example",
                          deny="10.9.0.0/16,evil.example", allow_loopback=False)
    assert decide("db", ["127.0.0.1"], policy).allowed
    assert decide("db", ["::ffff:127.0.0.1"], policy).allowed
    assert decide("md", ["169.254.169.254"], policy).allowed
    assert decide("x.corp.example", ["169.254.1.1"], policy).allowed  # allowed by name
    denied = decide("w", ["10.9.1.1"], policy)
    assert not denied.allowed and denied.setting == outbound.DENY_SETTING
    assert not decide("EVIL.example.", ["8.8.8.8"], policy).allowed
    assert decide("w", ["10.8.1.1"], policy).allowed


def test_bad_setting_entry_names_the_setting() -> None:
    with pytest.raises(ValueError, match="REFLOW_OUTBOUND_DENY: 'http://x/'"):
        Policy.parse(deny="10.0.0.0/8,http://x/", allow_loopback=True)


def test_refusal_message_names_the_address_and_the_setting() -> None:
    with pytest.raises(OutboundRefused) as info:
        check_host("sneaky.example", 443, policy=PRODUCTION,
                   resolver=lambda h, p: ["::ffff:10.0.0.1", "169.254.169.254"])
    message = str(info.value)
    assert "sneaky.example (169.254.169.254)" in message
    assert "REFLOW_OUTBOUND_ALLOW" in message


def test_runtime_installs_the_deployment_policy(tmp_path: Path) -> None:
    try:
        embedded = Settings(home=tmp_path, outbound_allow="", outbound_deny="")
        install_outbound_policy(embedded)
        assert outbound.active().allow_loopback
        install_outbound_policy(embedded, serving_host="0.0.0.0")
        assert not outbound.active().allow_loopback
        install_outbound_policy(embedded, serving_host="127.0.0.1")
        assert outbound.active().allow_loopback
        production = Settings(home=tmp_path, database_url="postgresql://db/x",
                              outbound_allow="", outbound_deny="10.0.0.0/8")
        install_outbound_policy(production)
        assert not outbound.active().allow_loopback
        assert not decide("w", ["10.1.1.1"], outbound.active()).allowed
    finally:
        outbound.install(None)


# --- the httpx client: each connection judged and pinned ---------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    seen: list[str] = []

    def do_GET(self) -> None:  # noqa: N802
        _Handler.seen.append(self.path)
        if self.path.startswith("/bounce"):
            self.send_response(302)
            self.send_header("Location", self.path.split("to=", 1)[1])
            self.end_headers()
            return
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


def _names(table: dict[str, list[str]]) -> outbound.Resolver:
    return lambda host, port: table[host]


def test_client_follows_redirects_only_to_allowed_addresses(port: int) -> None:
    resolver = _names({"public.example": ["127.0.0.1"], "inside.example": ["169.254.169.254"]})
    policy = Policy.parse(allow="127.0.0.0/8", allow_loopback=False)
    _Handler.seen.clear()
    with outbound_client(policy=policy, resolver=resolver, follow_redirects=True) as client:
        assert client.get(f"http://public.example:{port}/plain").text == "ok"
        target = f"http://inside.example:{port}/secret"
        with pytest.raises(OutboundRefused, match="169.254.169.254"):
            client.get(f"http://public.example:{port}/bounce?to={target}")
    assert "/secret" not in _Handler.seen  # the refused hop never reached any server


def test_client_refuses_before_sending_headers(port: int) -> None:
    _Handler.seen.clear()
    with outbound_client(policy=PRODUCTION, headers={"Authorization": "secret"}) as client, \
            pytest.raises(OutboundRefused, match="127.0.0.1"):
        client.get(f"http://127.0.0.1:{port}/nope")
    assert _Handler.seen == []


def test_client_connects_to_the_address_it_judged(port: int) -> None:
    """The socket goes to the address the policy judged (``rebind.example`` exists in no
    DNS: reaching the server proves nothing resolved it again), and every new connection
    is judged anew, so a rebinding answer on the next one is refused."""
    answers = iter([["127.0.0.1"], ["169.254.169.254"]])
    calls: list[str] = []

    def rebinding(host: str, p: int) -> list[str]:
        calls.append(host)
        return next(answers)

    _Handler.seen.clear()
    with outbound_client(policy=EMBEDDED, resolver=rebinding) as client:
        assert client.get(f"http://rebind.example:{port}/a").status_code == 200
        with pytest.raises(OutboundRefused):  # the test server closes each connection
            client.get(f"http://rebind.example:{port}/b")
    assert calls == ["rebind.example", "rebind.example"]
    assert _Handler.seen == ["/a"]


def test_unresolvable_name_is_a_transport_error_not_a_refusal() -> None:
    def nowhere(host: str, port: int) -> list[str]:
        raise OSError("Name or service not known")

    with outbound_client(policy=EMBEDDED, resolver=nowhere) as client, \
            pytest.raises(httpx.ConnectError):
        client.get("http://nowhere.example/")


def test_http_url_validator_refuses_other_schemes() -> None:
    from reflow.connectors.destinations.http_request import HttpRequestConfig
    from reflow.connectors.destinations.webhook import WebhookConfig

    for bad in ("gopher://127.0.0.1:70/_x", "file:///etc/passwd", "ftp://h/"):
        with pytest.raises(ValueError, match="must be an http:// or https:// URL"):
            HttpRequestConfig(base_url=bad)
        with pytest.raises(ValueError, match="must be an http:// or https:// URL"):
            WebhookConfig(url=bad)


# --- database drivers: judged, and pinned where the driver allows ------------------------


def test_postgres_connections_go_to_the_judged_address(monkeypatch: pytest.MonkeyPatch) -> None:
    """``warehouse.invalid`` exists in no DNS: both the psycopg and the ADBC connection
    reach the local PostgreSQL only because libpq was handed the judged address."""
    from reflow.connectors._postgres import PostgresConfig, adbc_connect, connect

    monkeypatch.setattr(outbound, "resolve", _names({"warehouse.invalid": ["127.0.0.1"],
                                                     "inward.invalid": ["169.254.169.254"]}))
    config = PostgresConfig(hostname="warehouse.invalid", port=5432, user="postgres",
                            database="postgres")
    with connect(config) as conn:
        assert conn.execute("SELECT 1").fetchall() == [(1,)]
    adbc = adbc_connect(config)
    try:
        cursor = adbc.cursor()
        cursor.execute("SELECT 1")
        assert cursor.fetchall() == [(1,)]
    finally:
        adbc.close()
    refused = config.model_copy(update={"hostname": "inward.invalid"})
    with pytest.raises(OutboundRefused, match="169.254.169.254"):
        connect(refused)
    with pytest.raises(OutboundRefused, match="169.254.169.254"):
        adbc_connect(refused)


def test_database_and_broker_hosts_are_judged(monkeypatch: pytest.MonkeyPatch) -> None:
    from reflow.connectors._mysql import connect_kwargs
    from reflow.connectors.destinations.mysql import MySQLConfig

    monkeypatch.setattr(outbound, "resolve", _names({"db.invalid": ["fe80::1"]}))
    with pytest.raises(OutboundRefused, match="fe80::1"):
        connect_kwargs(MySQLConfig(hostname="db.invalid", user="u", database="d"))
    outbound.install(PRODUCTION)
    try:
        with pytest.raises(OutboundRefused, match="loopback"):
            outbound.check_server("/var/run/postgresql", 5432)  # a Unix socket is local
    finally:
        outbound.install(None)
