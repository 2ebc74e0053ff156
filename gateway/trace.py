# gatewayctl messages list|show: find messages, and the whole life of one, from the store.
"""``messages list`` filters by number (to or from), carrier, state and age, newest first.
``messages show ID`` tells one message's life: who handed it over (and under which id that
carrier knows it: for a concatenated message, the ids of its parts, any of which finds it, as
in ``messages list --id``), where it was routed, every attempt, retry, forwarding and receipt (the
``message_events`` rows, written in the same transactions as the steps), the receipts to
the carrier and the CDR. For a message that crossed environments it names the peer's id
(forwarded) or the upstream environment's id (received), so the trace can be followed
there with the same command. The text itself is shown only with ``--text``: it is the
subscriber's (verification codes, private messages).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import click
from sqlalchemy import Connection, or_, select

from gateway import admin, render
from gateway.config import parse_duration
from gateway.errors import InvalidInput, NotFound
from gateway.pipeline_store import FINAL_STATES, WAITING_STATES
from gateway.secrets import SecretBox
from gateway.smpp.receipt import format_message_id
from gateway.store.schema import (
    accounts,
    carriers,
    cdrs,
    connections,
    forwards,
    fragments,
    message_events,
    messages,
)
from gateway.store.textcrypt import TextCipher, TextUnreadable, is_sealed, open_message
from gateway.words import count
from routing.numbers import normalise

STATES = (*WAITING_STATES, "forwarded", *FINAL_STATES)
LIST_COLUMNS = (
    "id", "accepted_at", "from", "source", "destination", "state", "route", "attempts",
)  # fmt: skip
MAX_LIST = 10_000


def _since(text: str, now: datetime) -> datetime:
    """``1h``, ``2d`` (that long ago) or an ISO date/time (UTC unless it says otherwise)."""
    try:
        return now - parse_duration(text)
    except ValueError:
        pass
    except OverflowError:  # 9999999d: before the year 1
        raise InvalidInput(
            "--since", f"{text!r} reaches back before the year 1: give a shorter duration"
        ) from None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(
            "--since", f"{text!r} is neither a duration (30m, 2h, 7d) nor a date (2026-12-01)"
        ) from None
    try:
        return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    except OverflowError:  # 0001-01-01T00:00+05:00 is before the year 1 in UTC
        raise InvalidInput("--since", f"{text!r} is out of range in UTC") from None


class Names:
    """Carrier, account and connection names by id (for people; ids stay in --json)."""

    def __init__(self, conn: Connection) -> None:
        self.carriers = dict(conn.execute(select(carriers.c.id, carriers.c.name)).all())
        self.styles = dict(conn.execute(select(carriers.c.id, carriers.c.receipt_id_format)).all())
        self.accounts = dict(conn.execute(select(accounts.c.id, accounts.c.account_id)).all())
        self.connections = dict(conn.execute(select(connections.c.id, connections.c.name)).all())

    def origin(self, row: dict[str, Any]) -> str:
        if row["origin"] == "carrier":
            return f"carrier {self.carriers.get(row['carrier_id'], row['carrier_id'])}"
        if row["origin"] == "account":
            return f"account {self.accounts.get(row['account_id'], row['account_id'])}"
        return f"connection {self.connections.get(row['connection_id'], row['connection_id'])}"

    def words(self, text: str | None) -> str | None:
        """``carrier 3`` / ``connection 2`` in a detail, with their names."""
        if text is None:
            return None
        text = re.sub(
            r"\bcarrier (\d+)\b",
            lambda m: f"carrier {self.carriers.get(int(m[1]), m[1])}",
            text,
        )
        return re.sub(
            r"\bconnection (\d+)\b",
            lambda m: f"connection {self.connections.get(int(m[1]), m[1])!r}",
            text,
        )


def list_messages(
    conn: Connection,
    plan: Any,
    *,
    did: str | None,
    carrier: str | None,
    state: str | None,
    since: str | None,
    limit: int,
    now: datetime,
    message_id: str | None = None,
    hex_id: bool = False,
) -> list[dict[str, Any]]:
    names = Names(conn)
    query = select(messages).order_by(messages.c.id.desc()).limit(limit)
    if message_id is not None:  # a message's id, or any of its parts' (as _find resolves)
        try:
            found = _find(conn, message_id, hex_id, name="--id")
        except NotFound:
            return []
        query = query.where(messages.c.id == found["id"])
    if did is not None:
        number = normalise(did, plan, field="--did")
        query = query.where(or_(messages.c.destination == number, messages.c.source == number))
    if carrier is not None:
        ids = [pk for pk, name in names.carriers.items() if name == carrier]
        if not ids:
            raise NotFound(f"carrier {carrier!r} does not exist")
        query = query.where(messages.c.carrier_id == ids[0])
    if state is not None:
        if state not in STATES:
            raise InvalidInput("--state", f"{state!r} is not one of {', '.join(STATES)}")
        query = query.where(messages.c.state == state)
    if since is not None:
        query = query.where(messages.c.accepted_at >= _since(since, now))
    found = []
    for row in conn.execute(query).mappings():
        found.append(
            {
                "id": row["id"],
                "accepted_at": row["accepted_at"],
                "from": names.origin(row),
                "source": row["source"],
                "destination": row["destination"],
                "state": row["state"],
                "route": row["route"],
                "attempts": row["attempts"],
                "final_at": row["final_at"],
                "reason": row["reason"],
            }
        )
    return found


def _find(conn: Connection, text: str, hex_id: bool, name: str = "ID") -> dict[str, Any]:
    """The message ``text`` names: its id in decimal, or in hex (``hex_id``, or letters in
    it: the id a carrier with hex receipts was given). Never both: "10" is message 10. The
    id a carrier got for any part of a concatenated message names the whole message."""
    text = text.strip()
    if hex_id or not text.isdigit():
        if re.fullmatch(r"[0-9a-fA-F]{1,16}", text) is None:
            raise InvalidInput(name, f"{text!r} is not a message id (decimal, or hex with --hex)")
        number = int(text, 16)
    else:
        number = int(text)
    row = None
    if number < 1 << 63:
        row = conn.execute(select(messages).where(messages.c.id == number)).mappings().first()
        if row is None:
            part = conn.execute(
                select(fragments.c.message_id, fragments.c.seq, fragments.c.total).where(
                    fragments.c.id == number
                )
            ).first()
            if part is not None and part.message_id is None:
                raise NotFound(
                    f"{text!r} is part {part.seq} of {part.total} of a message still waiting"
                    " for its other parts"
                )
            if part is not None:
                row = (
                    conn.execute(select(messages).where(messages.c.id == part.message_id))
                    .mappings()
                    .first()
                )
    if row is None:
        raise NotFound(f"no message with id {text!r} in this environment")
    return dict(row)


def show_message(conn: Connection, text: str, hex_id: bool = False) -> dict[str, Any]:
    """Everything the store knows of one message, for ``messages show``."""
    row = _find(conn, text, hex_id)
    names = Names(conn)
    mid = row["id"]
    events = [
        dict(e)
        for e in conn.execute(
            select(message_events)
            .where(message_events.c.message_id == mid)
            .order_by(message_events.c.id)
        ).mappings()
    ]
    peer = [
        {
            "connection": names.connections.get(f["connection_id"], f["connection_id"]),
            "peer_message_id": f["peer_message_id"],
            "part": f["part"],
            "parts": f["parts"],
            "stat": f["stat"],
        }
        for f in conn.execute(
            select(forwards).where(forwards.c.message_id == mid).order_by(forwards.c.part)
        ).mappings()
    ]
    records = [
        dict(c) for c in conn.execute(select(cdrs).where(cdrs.c.message_id == mid)).mappings()
    ]
    carrier_id = row["carrier_id"]
    style = names.styles.get(carrier_id) if carrier_id is not None else None
    # a concatenated message: the carrier knows it by the ids its parts were answered with
    part_ids = list(
        conn.execute(
            select(fragments.c.id)
            .where(fragments.c.message_id == mid)
            .order_by(fragments.c.seq, fragments.c.id)
        ).scalars()
    )
    return {
        "message": row,
        "from": names.origin(row),
        "id_for_carrier": format_message_id(mid, style) if style and not part_ids else None,
        "part_ids_for_carrier": [format_message_id(i, style) for i in part_ids] if style else [],
        "events": [{**e, "detail": names.words(e["detail"])} for e in events],
        "forwards": peer,
        "cdrs": records,
    }


def _opened(
    row: dict[str, Any], box: Callable[[], SecretBox]
) -> tuple[str | None, bytes | None, str | None]:
    """The message's plain text and body (the key file is read only for a sealed one), or
    why they cannot be read."""
    if not (is_sealed(row["body_text"]) or is_sealed(row["body_bytes"])):
        return row["body_text"], row["body_bytes"], None
    try:
        text, body = open_message(row, TextCipher.from_box(box()))
    except InvalidInput as exc:  # the key file is missing or unusable
        return None, None, f"cannot be decrypted: {exc}"
    except TextUnreadable as exc:
        return None, None, f"cannot be decrypted: it {exc.reason}"
    return text, body, None


def _when(moment: datetime | None) -> str:
    if moment is None:
        return "-"
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def render_show(found: dict[str, Any], env: str, with_text: bool) -> str:
    m = found["message"]
    lines = [f"message {m['id']} in {env}"]

    def field(name: str, value: Any) -> None:
        lines.append(f"  {name:<12} {value}")

    carrier_id = found["id_for_carrier"]
    origin = found["from"] + (f" (its id for it: {carrier_id})" if carrier_id else "")
    if found["part_ids_for_carrier"]:
        origin += f" (its ids for the parts: {', '.join(found['part_ids_for_carrier'])})"
    field("from", origin)
    field("source", f"{m['source']} (ton {m['source_ton']})")
    field("destination", f"+{m['destination']}")
    length = found["text_length"]
    if found.get("text_unreadable"):
        field("text", f"(encrypted; {found['text_unreadable']})")
    elif length is None:
        field("text", "(erased, or binary content)")
    elif with_text:
        field("text", repr(m["body_text"]))
    else:
        field("text", f"({length} characters; --text shows them)")
    field("parts", f"{m['parts']}, data_coding {m['data_coding']}, lane {m['lane']}")
    field("receipt", "requested" if m["registered_delivery"] & 3 else "not requested")
    field("accepted", _when(m["accepted_at"]))
    field("valid until", _when(m["validity_until"]))
    field("state", f"{m['state']}" + (f" since {_when(m['final_at'])}" if m["final_at"] else ""))
    if m["reason"]:
        field("reason", m["reason"] + (f" (code {m['error_code']})" if m["error_code"] else ""))
    field("route", f"{m['route'] or '-'} after {count(m['attempts'], 'attempt')}")
    if m["path"]:
        came = " > ".join(m["path"].split(","))
        upstream = m["upstream_id"]
        hint = (
            f"; its id there: {upstream} (gatewayctl messages show {upstream} in that env)"
            if upstream
            else ""
        )
        field("came via", came + hint)
    for f in found["forwards"]:
        field(
            "forwarded",
            f"over {f['connection']!r}, part {f['part']}/{f['parts']}, peer id"
            f" {f['peer_message_id']} (gatewayctl messages show {f['peer_message_id']} in the"
            f" peer env), receipt {f['stat'] or 'not yet'}",
        )
    lines.append("life:")
    lines.append(f"  {_when(m['accepted_at'])}  {'accepted':<13} from {found['from']}")
    route = None
    for e in found["events"]:
        where = f" [{e['route']}]" if e["route"] and e["route"] != route else ""
        route = e["route"] or route
        attempt = f"attempt {e['attempt']}:" if e["attempt"] else ""
        text = " ".join(part for part in (attempt, e["detail"] or "", where.strip()) if part)
        lines.append(f"  {_when(e['at'])}  {e['event']:<13} {text}".rstrip())
    for c in found["cdrs"]:
        # CDR ids come from the message ids' allocator: label them, they are not message ids
        lines.append(
            f"cdr {c['id']} (a CDR id, not a message id; leg {c['leg']}): {c['state']},"
            f" {count(c['parts'], 'part')}, route {c['route'] or '-'},"
            f" final at {_when(c['final_at'])}"
        )
    if not found["cdrs"]:
        lines.append("cdr: none yet (written when the message ends)")
    return "\n".join(lines)


# -- commands ---------------------------------------------------------------------------------
@click.group("messages")
def messages_group() -> None:
    """Messages in the store: find them, and follow one through its whole life."""


@messages_group.command("list")
@click.option(
    "--id", "message_id",
    help="Only this message: its id, or the id a carrier got for any of its parts.",
)  # fmt: skip
@click.option(
    "--hex", "hex_id", is_flag=True, help="--id is hex (as a carrier with hex receipts has it)."
)
@click.option("--did", help="Only messages to or from this number.")
@click.option("--carrier", help="Only messages this carrier handed over (its name).")
@click.option("--state", type=click.Choice(STATES), help="Only messages in this state.")
@click.option("--since", help="Only messages accepted since: 30m, 2h, 7d or a date/time.")
@click.option(
    "--limit", type=click.IntRange(1, MAX_LIST), default=50, show_default=True,
    help="At most this many, newest first.",
)  # fmt: skip
@render.json_option
@click.pass_obj
def messages_list(
    obj: Any,
    message_id: str | None,
    hex_id: bool,
    did: str | None,
    carrier: str | None,
    state: str | None,
    since: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """List messages, newest first."""
    with admin.session(obj.config, obj.actor) as ctx:
        rows = list_messages(
            ctx.conn, obj.config.numbering, did=did, carrier=carrier, state=state, since=since,
            limit=limit, now=ctx.now, message_id=message_id, hex_id=hex_id,
        )  # fmt: skip
    if as_json:
        click.echo(render.to_json(rows))
    else:
        render.table(rows, LIST_COLUMNS)


@messages_group.command("show")
@click.argument("message_id", metavar="ID")
@click.option("--text", "with_text", is_flag=True, help="Show the message text as well.")
@click.option(
    "--hex", "hex_id", is_flag=True, help="ID is hex (as a carrier with hex receipts has it)."
)
@render.json_option
@click.pass_obj
def messages_show(obj: Any, message_id: str, with_text: bool, hex_id: bool, as_json: bool) -> None:
    """The whole life of one message: SMPP, routing, attempts, receipts, CDR.

    ID is the message id in decimal, or in hex as a carrier with hex receipts was given it
    (--hex, or implied when it has letters); the id of any part of a concatenated message
    shows the whole message."""
    with admin.session(obj.config, obj.actor) as ctx:
        found = show_message(ctx.conn, message_id, hex_id)
        text, body, unreadable = _opened(found["message"], ctx.secret_box)
    found["message"].pop("body_bytes")
    found["message"].pop("body_text")
    found["text_length"] = None if text is None else len(text)
    if unreadable is not None:
        found["text_unreadable"] = unreadable
    if with_text:
        found["message"]["body_text"] = text
        found["message"]["body_hex"] = None if body is None else body.hex()
    if as_json:
        click.echo(render.to_json(found))
    else:
        click.echo(render_show(found, obj.config.env, with_text))
