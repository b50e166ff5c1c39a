"""The outbound address policy: which addresses a connection a user chose may reach.

Every connector and webhook that opens a connection to a user-chosen host asks this
module first, with the addresses the host name resolves to *now* (``check_host``), so
a name that resolves inward is judged by where it points, not by how it is spelled.
HTTP clients get the check on every connection they open, redirects included, from
``reflow.connectors.outbound_http.outbound_client``.

Default rules (``decide``), in order, for each resolved address:

1. an address or host name in ``REFLOW_OUTBOUND_DENY`` is refused;
2. one in ``REFLOW_OUTBOUND_ALLOW`` is allowed;
3. cloud metadata endpoints (169.254.169.254, fd00:ec2::254, metadata.google.internal...)
   and link-local addresses (169.254.0.0/16, fe80::/10) are refused;
4. loopback (and the unspecified address, which Linux routes to loopback) is refused
   unless the policy allows it: the embedded default does, production does not;
5. everything else, private ranges included, is allowed: that is where self-hosters'
   warehouses live.

An IPv6 address that embeds an IPv4 one (``::ffff:a.b.c.d``, NAT64, 6to4, Teredo,
IPv4-compatible) is judged by the IPv4 address. A host is refused when any of its
addresses is: a resolver that answers with one public and one internal address must
not get the internal one through.

This module is a leaf: standard library only, no service imports. The process installs
its policy once at startup (``install``); until then the embedded default applies.
"""

from __future__ import annotations

import contextvars
import ipaddress
import socket
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from reflow.connectors.errors import TerminalError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Sequence[str]]

ALLOW_SETTING = "REFLOW_OUTBOUND_ALLOW"
DENY_SETTING = "REFLOW_OUTBOUND_DENY"

#: Instance metadata services: AWS/GCP/Azure/OpenStack (v4 and AWS's v6), Alibaba, Oracle.
METADATA_NETWORKS: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(n)
    for n in ("169.254.169.254/32", "169.254.170.2/32", "fd00:ec2::254/128",
              "100.100.100.200/32", "192.0.0.192/32")
)
METADATA_HOSTS = frozenset({
    "metadata", "metadata.google.internal", "metadata.goog", "metadata.azure.internal",
    "instance-data", "instance-data.ec2.internal",
})
LINK_LOCAL: tuple[IPNetwork, ...] = (
    ipaddress.ip_network("169.254.0.0/16"), ipaddress.ip_network("fe80::/10"),
)
LOOPBACK: tuple[IPNetwork, ...] = (
    ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"),
    ipaddress.ip_network("0.0.0.0/8"), ipaddress.ip_network("::/128"),
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
_IPV4_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")


@dataclass(frozen=True)
class Policy:
    """What outbound connections may reach. ``allow_loopback`` is the deployment's
    default for 127.0.0.0/8 and ::1; the lists come from the two settings."""

    allow_loopback: bool = True
    allow_networks: tuple[IPNetwork, ...] = ()
    allow_hosts: tuple[str, ...] = ()
    deny_networks: tuple[IPNetwork, ...] = ()
    deny_hosts: tuple[str, ...] = ()

    @classmethod
    def parse(cls, *, allow: str = "", deny: str = "", allow_loopback: bool) -> Policy:
        """From the settings' comma-separated CIDRs, addresses and host names (a host
        name starting with a dot matches every name under it). Raises ``ValueError``
        naming the setting and the entry that is neither."""
        allow_nets, allow_hosts = _entries(allow, ALLOW_SETTING)
        deny_nets, deny_hosts = _entries(deny, DENY_SETTING)
        return cls(allow_loopback, allow_nets, allow_hosts, deny_nets, deny_hosts)


def _entries(value: str, setting: str) -> tuple[tuple[IPNetwork, ...], tuple[str, ...]]:
    networks: list[IPNetwork] = []
    hosts: list[str] = []
    for raw in (part.strip() for part in (value or "").split(",")):
        if not raw:
            continue
        try:
            networks.append(ipaddress.ip_network(raw.strip("[]"), strict=False))
            continue
        except ValueError:
            pass
        name = raw.lower().rstrip(".")
        if not name.lstrip(".") or any(c in name for c in "/ :@"):
            raise ValueError(f"{setting}: {raw!r} is neither a CIDR, an address nor a host name")
        hosts.append(name)
    return tuple(networks), tuple(hosts)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    #: The address (or host name) the decision is about; the refused one when refused.
    address: str
    reason: str = ""
    #: The setting that changes this decision.
    setting: str = ALLOW_SETTING
    #: The addresses a connection may use, in resolver order (empty when refused).
    addresses: tuple[str, ...] = field(default=())


class OutboundRefused(TerminalError):
    """A connection a user chose points where the policy forbids. Terminal: retrying
    reaches the same address."""

    def __init__(self, host: str, decision: Decision) -> None:
        self.host, self.decision = host, decision
        where = decision.address if decision.address == host else (
            f"{host} ({decision.address})"
        )
        if decision.setting == DENY_SETTING:
            advice = f"it is listed in {DENY_SETTING}"
        else:
            advice = f"add it to {ALLOW_SETTING} to allow it"
        super().__init__(
            f"address {where} is refused by the outbound address policy: "
            f"{decision.reason}; {advice}"
        )


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (mapped, translated, NAT64, 6to4, Teredo,
    IPv4-compatible), if any: that is where a packet to it ends up."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64 or address in _IPV4_TRANSLATED:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address in _IPV4_COMPATIBLE and int(address) > 1:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _host_matches(host: str, names: tuple[str, ...]) -> bool:
    host = host.lower().rstrip(".")
    return any(host == n or (n.startswith(".") and host.endswith(n)) for n in names)


def _in(address: IPAddress, networks: Sequence[IPNetwork]) -> bool:
    return any(address.version == n.version and address in n for n in networks)


def decide(host: str, addresses: Sequence[str], policy: Policy) -> Decision:
    """The verdict on connecting to ``host`` resolved to ``addresses``; pure (no DNS)."""
    by_name = _name_verdict(host, policy)
    if by_name is not None:
        return Decision(by_name.allowed, host, by_name.reason, by_name.setting,
                        tuple(addresses) if by_name.allowed else ())
    if not addresses:
        return Decision(False, host, "the host name resolves to no address")
    for raw in addresses:
        refusal = _refusal(raw, policy)
        if refusal is not None:
            return refusal
    return Decision(True, addresses[0], addresses=tuple(addresses))


def _name_verdict(host: str, policy: Policy) -> Decision | None:
    """The verdict the host name alone decides (the lists, metadata names), if any."""
    name = host.lower().strip("[]").rstrip(".")
    if _host_matches(name, policy.deny_hosts):
        return Decision(False, host, "the host name is denied", DENY_SETTING)
    if _host_matches(name, policy.allow_hosts):
        return Decision(True, host)
    if name in METADATA_HOSTS:
        return Decision(False, host, "a cloud metadata service")
    return None


def _refusal(raw: str, policy: Policy) -> Decision | None:
    try:
        address = ipaddress.ip_address(raw.split("%", 1)[0])  # drop an IPv6 zone id
    except ValueError:
        return Decision(False, raw, "not an IP address")
    forms = [address]
    inner = embedded_ipv4(address)
    if inner is not None:
        forms.append(inner)
    if any(_in(a, policy.deny_networks) for a in forms):
        return Decision(False, raw, "the address is denied", DENY_SETTING)
    if any(_in(a, policy.allow_networks) for a in forms):
        return None
    judged = inner or address
    if _in(judged, METADATA_NETWORKS):
        return Decision(False, raw, "a cloud metadata address")
    if _in(judged, LINK_LOCAL):
        return Decision(False, raw, "a link-local address")
    if _in(judged, LOOPBACK) and not policy.allow_loopback:
        return Decision(False, raw, "loopback is refused in a production deployment")
    return None


# --- resolution and the process's policy ----------------------------------------------


def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to for a TCP connection, in resolver order.
    Raises ``OSError`` (``socket.gaierror``) when it does not resolve."""
    infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)
    out: list[str] = []
    for info in infos:
        address = str(info[4][0])
        if address not in out:
            out.append(address)
    return out


_active = Policy()
_refusals: contextvars.ContextVar[list[OutboundRefused] | None] = contextvars.ContextVar(
    "reflow_outbound_refusals", default=None
)


def install(policy: Policy | None) -> None:
    """Make ``policy`` the process's policy (``None``: back to the embedded default)."""
    global _active
    _active = policy or Policy()


def active() -> Policy:
    return _active


def check_host(host: str, port: int, *, policy: Policy | None = None,
               resolver: Resolver | None = None) -> list[str]:
    """The addresses of ``host`` a connection may use (connect to one of these to pin
    the check); raises ``OutboundRefused``. A name that does not resolve raises the
    resolver's ``OSError``: the connection attempt would fail the same way."""
    policy = policy or _active
    resolver = resolver or resolve
    name = host.strip("[]")
    by_name = _name_verdict(name, policy)  # decided before any DNS query
    if by_name is not None and not by_name.allowed:
        _refuse(host, by_name)
    if by_name is not None:
        return list(resolver(name, port))
    decision = decide(name, list(resolver(name, port)), policy)
    if not decision.allowed:
        _refuse(host, decision)
    return list(decision.addresses)


def check_server(host: str, port: int | None, *, default_port: int = 0,
                 resolver: Resolver | None = None) -> list[str]:
    """``check_host`` for a database or broker driver about to connect: returns the
    judged addresses (pin the connection to them where the driver allows), or an empty
    list when the name does not resolve (the driver then reports that itself). A Unix
    socket path is this machine: judged as loopback."""
    if host.startswith("/"):
        decision = decide("localhost", ["127.0.0.1"], _active)
        if not decision.allowed:
            _refuse(host, decision)
        return []
    try:
        return check_host(host, port or default_port, resolver=resolver)
    except OSError:
        return []


def _refuse(host: str, decision: Decision) -> None:
    error = OutboundRefused(host, decision)
    seen = _refusals.get()
    if seen is not None:
        seen.append(error)
    raise error


@contextmanager
def watching() -> Iterator[list[OutboundRefused]]:
    """Collects every refusal raised in this context (on this thread), even one a
    connector caught and turned into a failed test step, so the API can answer 400."""
    seen: list[OutboundRefused] = []
    token = _refusals.set(seen)
    try:
        yield seen
    finally:
        _refusals.reset(token)


# --- URLs -------------------------------------------------------------------------------

HTTP_SCHEMES = ("http", "https")


def http_url(value: Any) -> Any:
    """Pydantic validator of a URL a connector sends HTTP requests to: http or https
    with a host. Another scheme raises an ``outbound_url`` error, which the API answers
    with a 400 naming the field (not a saved connection with a failed test)."""
    from urllib.parse import urlsplit

    from pydantic_core import PydanticCustomError

    if not isinstance(value, str):
        return value
    try:
        parts = urlsplit(value.strip())
        host, scheme = parts.hostname, parts.scheme.lower()
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        raise PydanticCustomError("outbound_url", "is not a valid URL") from None
    if scheme and scheme not in HTTP_SCHEMES:  # gopher://, file://...: never stored
        raise PydanticCustomError(
            "outbound_url", "must be an http:// or https:// URL (got {scheme})",
            {"scheme": f"{scheme}://"},
        )
    if not scheme or not host:  # malformed: saved with a failed test, like other typos
        raise ValueError("must be an http:// or https:// URL")
    return value.strip()
