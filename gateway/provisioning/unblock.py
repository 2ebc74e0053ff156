# Lifting failed-bind blocks on running nodes: requests written by gatewayctl, read by nodes.
"""``gatewayctl carrier unblock ADDRESS`` cannot reach into a running node, so it writes a
request row (bind_unblocks) and an audit entry in one transaction; every node reads the rows
newer than the last it saw on its provisioning reload (every 2 s) and lifts the blocks of
those addresses in its bind guard (gateway/smpp/guard.py BindGuard.unblock).

Rows older than :data:`KEEP` are deleted when a new request is written (a node that was down
longer starts with no blocks anyway).
"""

from __future__ import annotations

import ipaddress
from datetime import timedelta

from sqlalchemy import Connection, delete, func, insert, select

from gateway.errors import InvalidInput
from gateway.provisioning import audit
from gateway.provisioning.base import Context
from gateway.store.schema import bind_unblocks

KEEP = timedelta(days=1)
READ_AT_MOST = 1000  # rows read per reload; the rest on the next one


def normalise(address: str) -> str:
    """The address as the node names a peer (an IPv4-mapped IPv6 address as IPv4)."""
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        raise InvalidInput("address", f"must be an IPv4 or IPv6 address, got {address!r}") from None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return str(ip)


def request(ctx: Context, address: str) -> str:
    """Ask every node to lift the blocks of ``address``; audited. Returns the address."""
    address = normalise(address)
    ctx.conn.execute(delete(bind_unblocks).where(bind_unblocks.c.at < ctx.now - KEEP))
    ctx.conn.execute(insert(bind_unblocks).values(at=ctx.now, actor=ctx.actor, address=address))
    audit.record(ctx, "unblock", "carrier", address, None, {"address": address})
    return address


def last_id(conn: Connection) -> int:
    """The newest request's id (0 when there is none): a node starts after it."""
    return int(conn.execute(select(func.max(bind_unblocks.c.id))).scalar() or 0)


def since(conn: Connection, after: int) -> list[tuple[int, str]]:
    """(id, address) of the requests newer than ``after``, oldest first."""
    query = (
        select(bind_unblocks.c.id, bind_unblocks.c.address)
        .where(bind_unblocks.c.id > after)
        .order_by(bind_unblocks.c.id)
        .limit(READ_AT_MOST)
    )
    return [(int(row.id), str(row.address)) for row in conn.execute(query)]
