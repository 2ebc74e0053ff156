# gatewayctl: the admin command line (click); maps options onto the gateway's packages.
"""Provision, inspect and run the SMPP/SIP messaging gateway.

Every command reads the config (``--config``, else ``$GATEWAY_CONFIG``, else
``conf/gateway.yaml``) and, except ``init`` and ``check-config``, needs a database that
``gatewayctl init`` created or upgraded. Every change is one transaction and is written to
the audit log with who made it (``--actor``, else ``$GATEWAY_ACTOR``, else user@host).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from billing import commands as billing_commands
from gateway import __version__, admin, render, status_view, trace
from gateway.config import Config, load_config
from gateway.errors import GatewayError
from gateway.password_input import optional_password_options, password_options
from gateway.provisioning import apply as declarative
from gateway.provisioning import audit, service, unblock
from gateway.provisioning import fields as F
from gateway.provisioning.base import Kind
from gateway.provisioning.edits import ListEdit
from gateway.yamlfile import read_yaml
from routing.numbers import normalise

# Columns of each kind's list table (--json always has every field).
COLUMNS = {
    "customer": ("name",),
    "product": ("name", "messaging"),
    "account": ("id", "customer", "product", "dids", "enabled"),
    "did": ("did", "account", "assigned_at"),
    "carrier": (
        "name",
        "system_id",
        "allow_ip",
        "max_binds",
        "throughput",
        "receipt_id",
        "timezone",
        "billable",
        "enabled",
    ),
    "connection": (
        "name",
        "host",
        "port",
        "system_id",
        "bind",
        "window",
        "throughput",
        "tls",
        "enabled",
    ),
    "policy": ("id", "pattern", "connection", "carrier", "priority"),
    "tariff": ("id", "carrier", "direction", "prefix", "price", "currency", "unit", "from", "to"),
    "fee": ("id", "carrier", "name", "kind", "tiers", "currency", "unit", "from", "to"),
}


class Obj:
    """What the top-level options give every command."""

    def __init__(self, config_path: str | None, actor: str | None) -> None:
        self.config_path = config_path
        self.actor = actor or admin.default_actor()
        self._config: Config | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(self.config_path)
        return self._config


pass_obj = click.make_pass_decorator(Obj)


def a(noun: str) -> str:
    """``noun`` with its indefinite article, for help texts."""
    return f"an {noun}" if noun[0] in "aeiou" else f"a {noun}"


def fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


class Group(click.Group):
    """A group whose commands answer a GatewayError with one ``error:`` line and exit 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except GatewayError as exc:
            fail(str(exc))


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    metavar="PATH",
    help="Config file (default: $GATEWAY_CONFIG, else conf/gateway.yaml).",
)
@click.option(
    "--actor",
    metavar="WHO",
    help="Name recorded in the audit log (default: $GATEWAY_ACTOR, else user@host).",
)
@click.version_option(__version__, prog_name="gatewayctl")
@click.pass_context
def main(ctx: click.Context, config_path: str | None, actor: str | None) -> None:
    """Provision, inspect and run the SMPP/SIP messaging gateway."""
    # Files gatewayctl creates (the SQLite store and its side files, the key file, exports)
    # are owner-only: the store holds digest hashes, message texts and the audit log.
    previous = os.umask(0o077)
    ctx.call_on_close(lambda: os.umask(previous))
    ctx.obj = Obj(config_path, actor)


def emit_change(
    record: dict[str, Any], verb: str, k: Kind, as_json: bool, notices: list[str]
) -> None:
    for notice in notices:
        click.echo(f"note: {notice}")
    if as_json:
        click.echo(render.to_json(record))
    else:
        click.echo(f"{verb} {k.name} {k.key(record)!r}")


def run_change(
    obj: Obj, k: Kind, verb: str, as_json: bool, action: Callable[[Any], dict[str, Any]]
) -> None:
    with admin.session(obj.config, obj.actor) as ctx:
        record = action(ctx)
        notices = list(ctx.notices)
    emit_change(record, verb, k, as_json, notices)


json_option = render.json_option


# -- server and database -----------------------------------------------------------------
@main.command()
@pass_obj
def init(obj: Obj) -> None:
    """Create or upgrade the database, and create the secret key file if missing.

    The store and its side files are made owner-only (0600), as the key file is."""
    from gateway.secrets import SecretBox
    from gateway.store.engine import display_url, make_engine, migrate, restrict_sqlite_files

    config = obj.config
    engine = make_engine(config.database)
    try:
        before, after = migrate(engine)
    finally:
        engine.dispose()
    for name in restrict_sqlite_files(config.database):
        click.echo(f"note: {name} could be read by group or others: now owner-only (0600)")
    created = not Path(config.secret_key_file).exists()
    SecretBox.from_key_file(config.secret_key_file, create=True)
    where = display_url(config.database)
    if before is None:
        click.echo(f"database {where} initialised at schema revision {after}")
    elif before != after:
        click.echo(f"database {where} upgraded from schema revision {before} to {after}")
    else:
        click.echo(f"database {where} already at schema revision {after}")
    if created:
        click.echo(f"secret key file {config.secret_key_file} created (mode 0600); back it up")


@main.command("check-config")
@pass_obj
def check_config(obj: Obj) -> None:
    """Validate the config file and what it points at (TLS files, database, key file)."""
    from gateway.app import preflight

    problems = preflight(obj.config)
    for problem in problems:
        click.echo(f"error: {problem}", err=True)
    if problems:
        sys.exit(1)
    click.echo(f"{obj.config.source}: ok (env {obj.config.env})")


@main.command()
@click.option("--dry-run", is_flag=True, help="Count what would go; change nothing.")
@pass_obj
def purge(obj: Obj, dry_run: bool) -> None:
    """Apply the retention periods now (a running gateway does it every retention.interval):
    erase the text of messages ended longer than retention.message_text ago, delete ended
    message records older than retention.messages and CDRs older than retention.cdrs."""
    from gateway import retention

    engine = admin.open_store(obj.config)
    try:
        done = retention.purge(engine, obj.config.retention, datetime.now(UTC), dry_run=dry_run)
    finally:
        engine.dispose()
    click.echo(f"dry run: would have {done}" if dry_run else str(done))


@main.command()
@pass_obj
def serve(obj: Obj) -> None:
    """Run the gateway in the foreground until SIGINT or SIGTERM."""
    from gateway.app import serve as run

    run(obj.config)


# -- generic list / show / remove for every kind ----------------------------------------
def add_common_commands(group: click.Group, k: Kind) -> None:
    @group.command("list")
    @json_option
    @pass_obj
    def list_cmd(obj: Obj, as_json: bool) -> None:
        with admin.session(obj.config, obj.actor) as ctx:
            records = service.list_records(ctx, k)
        if as_json:
            click.echo(render.to_json(records))
        else:
            render.table(records, COLUMNS[k.name])

    list_cmd.help = f"List every {k.name}."

    @group.command("show")
    @click.argument("ref", metavar=k.ref_help)
    @json_option
    @pass_obj
    def show_cmd(obj: Obj, ref: str, as_json: bool) -> None:
        with admin.session(obj.config, obj.actor) as ctx:
            _, record = service.resolve(ctx, k, ref)
        if as_json:
            click.echo(render.to_json(record))
        else:
            render.details(record)

    show_cmd.help = f"Show one {k.name}."

    @group.command("remove")
    @click.argument("ref", metavar=k.ref_help)
    @pass_obj
    def remove_cmd(obj: Obj, ref: str) -> None:
        run_change(obj, k, "removed", False, lambda ctx: service.remove(ctx, k, ref))

    remove_cmd.help = f"Remove one {k.name} (refused while something depends on it)."


def kind_group(name: str, help_text: str) -> click.Group:
    k = service.kind(name)
    group = click.Group(name, help=help_text)
    add_common_commands(group, k)
    main.add_command(group)
    return group


def add_enable_commands(group: click.Group, k: Kind) -> None:
    for verb, value in (("enable", True), ("disable", False)):

        def command(obj: Obj, ref: str, value: bool = value, verb: str = verb) -> None:
            run_change(
                obj,
                k,
                f"{verb}d",
                False,
                lambda ctx: service.change(ctx, k, ref, {"enabled": value}),
            )

        group.command(verb, help=f"{verb.capitalize()} {a(k.name)}.")(
            click.argument("ref", metavar=k.ref_help)(pass_obj(command))
        )


def add_passwd_command(group: click.Group, k: Kind) -> None:
    @group.command("passwd")
    @click.argument("ref", metavar=k.ref_help)
    @password_options("New password")
    @pass_obj
    def passwd(obj: Obj, ref: str, password: str) -> None:
        run_change(
            obj,
            k,
            "changed password of",
            False,
            lambda ctx: service.change(ctx, k, ref, {"password": password}),
        )

    passwd.help = f"Set a new password for {a(k.name)}."


def run_set(
    obj: Obj,
    k: Kind,
    ref: str,
    given: dict[str, Any],
    as_json: bool,
    lists: tuple[tuple[ListEdit, Callable[[Any], Callable[[str, str], Any]]], ...] = (),
) -> None:
    """Change the fields given (None: not given) of one object, validated as ``add`` does.

    ``lists``: list fields edited against the stored list, each with the function that
    gives, for the admin transaction, the canonical form of one entry."""
    changes = {name: value for name, value in given.items() if value is not None}
    if not changes and not any(edit.given for edit, _ in lists):
        command = click.get_current_context().command
        options = [
            opt for param in command.params if isinstance(param, click.Option)
            for opt in param.opts if opt not in ("--json", "-h", "--help")
        ]  # fmt: skip
        fail(f"nothing to change: give one of {', '.join(options)}")

    def action(ctx: Any) -> dict[str, Any]:
        wanted = dict(changes)
        if lists:
            stored = k.editable(service.resolve(ctx, k, ref)[1])
            for edit, canonical in lists:
                if edit.given:
                    wanted[edit.field] = edit.apply(stored[edit.field], canonical(ctx))
        return service.change(ctx, k, ref, wanted)

    run_change(obj, k, "changed", as_json, action)


def enable_option(noun: str) -> Callable[[Any], Any]:
    return click.option(
        "--enable/--disable", "enabled", default=None, help=f"Enable or disable the {noun}."
    )


def limit_value(text: str | None) -> str | int | None:
    """A --throughput of ``set``: a number, or ``none`` for no limit ("" to the parser)."""
    if text is None:
        return None
    return "" if text.strip().lower() in ("none", "no", "off") else text


password_option = password_options("Password")
set_password_option = optional_password_options("New password")

# -- customers, products, accounts, DIDs ----------------------------------------------------
customer = kind_group("customer", "Customers (owners of accounts).")


@customer.command("add")
@click.argument("name")
@json_option
@pass_obj
def customer_add(obj: Obj, name: str, as_json: bool) -> None:
    """Add a customer."""
    k = service.kind("customer")
    run_change(obj, k, "added", as_json, lambda ctx: service.create(ctx, k, {"name": name}))


product = kind_group("product", "Products; only accounts with a messaging product get SMS.")


@product.command("add")
@click.argument("name")
@click.option(
    "--messaging/--no-messaging",
    default=True,
    show_default=True,
    help="Whether the product includes messaging.",
)
@json_option
@pass_obj
def product_add(obj: Obj, name: str, messaging: bool, as_json: bool) -> None:
    """Add a product."""
    k = service.kind("product")
    run_change(
        obj,
        k,
        "added",
        as_json,
        lambda ctx: service.create(ctx, k, {"name": name, "messaging": messaging}),
    )


@product.command("set")
@click.argument("name")
@click.option(
    "--messaging/--no-messaging", default=None, help="Whether the product includes messaging."
)
@json_option
@pass_obj
def product_set(obj: Obj, name: str, messaging: bool | None, as_json: bool) -> None:
    """Change a product (only the options given)."""
    run_set(obj, service.kind("product"), name, {"messaging": messaging}, as_json)


account = kind_group("account", "App users' accounts: SIP credentials, product and DIDs.")
add_enable_commands(account, service.kind("account"))
add_passwd_command(account, service.kind("account"))


@account.command("add")
@click.argument("account_id", metavar="ID")
@click.option("--customer", required=True, help="Owning customer's name.")
@click.option("--product", required=True, help="Product name.")
@click.option(
    "--did",
    "dids",
    multiple=True,
    metavar="DID",
    help="DID in national or international form (repeatable).",
)
@password_option
@click.option("--disabled", is_flag=True, help="Create the account disabled.")
@json_option
@pass_obj
def account_add(
    obj: Obj,
    account_id: str,
    customer: str,
    product: str,
    dids: tuple[str, ...],
    password: str,
    disabled: bool,
    as_json: bool,
) -> None:
    """Add an account; its SIP password is kept only as digest HA1 values."""
    k = service.kind("account")
    raw = {
        "id": account_id,
        "customer": customer,
        "product": product,
        "dids": list(dids),
        "password": password,
        "enabled": not disabled,
    }
    run_change(obj, k, "added", as_json, lambda ctx: service.create(ctx, k, raw))


def did_entry(ctx: Any) -> Callable[[str, str], str]:
    """One DID as ``+E164`` (the form account records take as input)."""
    return lambda value, field: "+" + normalise(value, ctx.plan, field=field)


@account.command("set")
@click.argument("account_id", metavar="ID")
@click.option("--customer", help="Owning customer's name.")
@click.option("--product", help="Product name.")
@click.option(
    "--did",
    "dids",
    multiple=True,
    metavar="DID",
    help="The account's DIDs: the whole new list (repeatable; others are released).",
)
@click.option("--add-did", "add_dids", multiple=True, metavar="DID", help="Add a DID (repeatable).")
@click.option(
    "--remove-did",
    "remove_dids",
    multiple=True,
    metavar="DID",
    help="Release a DID to the pool (repeatable).",
)
@enable_option("account")
@set_password_option
@json_option
@pass_obj
def account_set(
    obj: Obj,
    account_id: str,
    customer: str | None,
    product: str | None,
    dids: tuple[str, ...],
    add_dids: tuple[str, ...],
    remove_dids: tuple[str, ...],
    enabled: bool | None,
    password: str | None,
    as_json: bool,
) -> None:
    """Change an account (only the options given); a new password replaces its HA1 values."""
    k = service.kind("account")
    given = {"customer": customer, "product": product, "enabled": enabled, "password": password}
    edit = ListEdit("dids", "--did", dids, add_dids, remove_dids)
    run_set(obj, k, account_id, given, as_json, ((edit, did_entry),))


did = kind_group("did", "DIDs (E.164 numbers) and the accounts they belong to.")


@did.command("assign")
@click.argument("number", metavar="DID")
@click.option(
    "--account", "account_id", required=True, metavar="ID", help="Account to assign the DID to."
)
@pass_obj
def did_assign(obj: Obj, number: str, account_id: str) -> None:
    """Assign a DID (new or in the pool) to an account."""
    k = service.kind("did")

    def action(ctx: Any) -> dict[str, Any]:
        e164 = k.ref(ctx, number)
        if e164 in k.records(ctx):
            return service.change(ctx, k, number, {"account": account_id})
        return service.create(ctx, k, {"did": number, "account": account_id})

    run_change(obj, k, "assigned", False, action)


@did.command("release")
@click.argument("number", metavar="DID")
@pass_obj
def did_release(obj: Obj, number: str) -> None:
    """Release a DID from its account back to the pool."""
    k = service.kind("did")
    run_change(
        obj, k, "released", False, lambda ctx: service.change(ctx, k, number, {"account": None})
    )


# -- carriers, connections, policies, tariffs ------------------------------------------------
def concat_option(default: str | None) -> Callable[[Any], Any]:
    return click.option(
        "--concat",
        type=click.Choice(["udh", "sar"]),
        default=default,
        show_default=default is not None,
        help="How long messages delivered to it (MO deliver_sm) are split: UDH or SAR TLVs.",
    )


carrier = kind_group("carrier", "Carriers that bind to the gateway over SMPP.")
add_enable_commands(carrier, service.kind("carrier"))
add_passwd_command(carrier, service.kind("carrier"))


@carrier.command("add")
@click.argument("name")
@click.option("--system-id", required=True, help="SMPP system_id the carrier binds with (max 15).")
@password_option
@click.option(
    "--allow-ip",
    "allow_ip",
    multiple=True,
    required=True,
    metavar="CIDR",
    help="Network the carrier may bind from (repeatable).",
)
@click.option(
    "--max-binds", type=int, default=4, show_default=True, help="Simultaneous binds allowed."
)
@click.option(
    "--throughput", type=int, default=None, help="Message segments per second (default: no limit)."
)
@click.option(
    "--receipt-id",
    type=click.Choice(["dec", "hex"]),
    default="dec",
    show_default=True,
    help="Message id format in responses and receipts.",
)
@click.option(
    "--data-coding",
    type=click.Choice(["gsm", "latin1"]),
    default="gsm",
    show_default=True,
    help="Meaning of data_coding 0 for this carrier.",
)
@click.option(
    "--timezone",
    default="UTC",
    show_default=True,
    help="IANA time zone of its billing months and tariff days (e.g. Asia/Kolkata).",
)
@click.option(
    "--billable",
    type=click.Choice(["accepted", "delivered"]),
    default="accepted",
    show_default=True,
    help="What it pays for: every accepted message, or delivered ones only.",
)
@concat_option("udh")
@json_option
@pass_obj
def carrier_add(
    obj: Obj,
    name: str,
    system_id: str,
    password: str,
    allow_ip: tuple[str, ...],
    max_binds: int,
    throughput: int | None,
    receipt_id: str,
    data_coding: str,
    timezone: str,
    billable: str,
    concat: str,
    as_json: bool,
) -> None:
    """Add a carrier; its password is kept only as a salted hash."""
    k = service.kind("carrier")
    raw = {
        "name": name,
        "system_id": system_id,
        "password": password,
        "allow_ip": list(allow_ip),
        "max_binds": max_binds,
        "throughput": throughput,
        "receipt_id": receipt_id,
        "data_coding": data_coding,
        "timezone": timezone,
        "billable": billable,
        "concat": concat,
    }
    run_change(obj, k, "added", as_json, lambda ctx: service.create(ctx, k, raw))


@carrier.command("set")
@click.argument("name")
@click.option("--system-id", help="SMPP system_id the carrier binds with (max 15).")
@set_password_option
@click.option(
    "--allow-ip",
    "allow_ip",
    multiple=True,
    metavar="CIDR",
    help="Networks it may bind from: the whole new list (repeatable).",
)
@click.option(
    "--add-allow-ip", multiple=True, metavar="CIDR", help="Allow one more network (repeatable)."
)
@click.option(
    "--remove-allow-ip", multiple=True, metavar="CIDR", help="Stop allowing a network (repeatable)."
)
@click.option("--max-binds", type=int, help="Simultaneous binds allowed.")
@click.option("--throughput", metavar="N|none", help="Message segments per second, or none.")
@click.option(
    "--receipt-id",
    type=click.Choice(["dec", "hex"]),
    help="Message id format in responses and receipts.",
)
@click.option(
    "--data-coding",
    type=click.Choice(["gsm", "latin1"]),
    help="Meaning of data_coding 0 for this carrier.",
)
@click.option("--timezone", help="IANA time zone of its billing months and tariff days.")
@click.option(
    "--billable",
    type=click.Choice(["accepted", "delivered"]),
    help="What it pays for: every accepted message, or delivered ones only.",
)
@concat_option(None)
@enable_option("carrier")
@json_option
@pass_obj
def carrier_set(
    obj: Obj,
    name: str,
    system_id: str | None,
    password: str | None,
    allow_ip: tuple[str, ...],
    add_allow_ip: tuple[str, ...],
    remove_allow_ip: tuple[str, ...],
    max_binds: int | None,
    throughput: str | None,
    receipt_id: str | None,
    data_coding: str | None,
    timezone: str | None,
    billable: str | None,
    concat: str | None,
    enabled: bool | None,
    as_json: bool,
) -> None:
    """Change a carrier (only the options given); running nodes apply it within seconds."""
    k = service.kind("carrier")
    given = {
        "system_id": system_id,
        "password": password,
        "max_binds": max_binds,
        "throughput": limit_value(throughput),
        "receipt_id": receipt_id,
        "data_coding": data_coding,
        "timezone": timezone,
        "billable": billable,
        "concat": concat,
        "enabled": enabled,
    }
    edit = ListEdit("allow_ip", "--allow-ip", allow_ip, add_allow_ip, remove_allow_ip)
    run_set(obj, k, name, given, as_json, ((edit, lambda ctx: F.network),))


@carrier.command("unblock")
@click.argument("address")
@pass_obj
def carrier_unblock(obj: Obj, address: str) -> None:
    """Lift the failed-bind blocks of an address on running nodes (within a few seconds)."""
    with admin.session(obj.config, obj.actor) as ctx:
        address = unblock.request(ctx, address)
    click.echo(f"unblock of {address} requested: running nodes lift its blocks within seconds")


connection = kind_group("connection", "Outbound SMPP connections to peer environments or vendors.")
add_enable_commands(connection, service.kind("connection"))
add_passwd_command(connection, service.kind("connection"))


@connection.command("add")
@click.argument("name")
@click.option("--host", required=True, help="Peer address.")
@click.option("--port", type=int, required=True, help="Peer SMPP port.")
@click.option("--system-id", required=True, help="system_id to bind with (max 15).")
@password_option
@click.option(
    "--bind",
    type=click.Choice(["trx", "tx", "rx"]),
    default="trx",
    show_default=True,
    help="Bind type.",
)
@click.option(
    "--window", type=int, default=10, show_default=True, help="Outstanding requests allowed."
)
@click.option(
    "--throughput", type=int, default=None, help="Message segments per second (default: no limit)."
)
@click.option("--tls", is_flag=True, help="Connect with TLS.")
@json_option
@pass_obj
def connection_add(
    obj: Obj,
    name: str,
    host: str,
    port: int,
    system_id: str,
    password: str,
    bind: str,
    window: int,
    throughput: int | None,
    tls: bool,
    as_json: bool,
) -> None:
    """Add an outbound connection; its password is kept encrypted with the secret key file."""
    k = service.kind("connection")
    raw = {
        "name": name,
        "host": host,
        "port": port,
        "system_id": system_id,
        "password": password,
        "bind": bind,
        "window": window,
        "throughput": throughput,
        "tls": tls,
    }
    run_change(obj, k, "added", as_json, lambda ctx: service.create(ctx, k, raw))


@connection.command("set")
@click.argument("name")
@click.option("--host", help="Peer address.")
@click.option("--port", type=int, help="Peer SMPP port.")
@click.option("--system-id", help="system_id to bind with (max 15).")
@set_password_option
@click.option("--bind", type=click.Choice(["trx", "tx", "rx"]), help="Bind type.")
@click.option("--window", type=int, help="Outstanding requests allowed.")
@click.option("--throughput", metavar="N|none", help="Message segments per second, or none.")
@click.option("--tls/--no-tls", default=None, help="Connect with TLS, or without.")
@enable_option("connection")
@json_option
@pass_obj
def connection_set(
    obj: Obj,
    name: str,
    host: str | None,
    port: int | None,
    system_id: str | None,
    password: str | None,
    bind: str | None,
    window: int | None,
    throughput: str | None,
    tls: bool | None,
    enabled: bool | None,
    as_json: bool,
) -> None:
    """Change an outbound connection (only the options given); running nodes bind again
    with the new settings within seconds."""
    given = {
        "host": host,
        "port": port,
        "system_id": system_id,
        "password": password,
        "bind": bind,
        "window": window,
        "throughput": limit_value(throughput),
        "tls": tls,
        "enabled": enabled,
    }
    run_set(obj, service.kind("connection"), name, given, as_json)


policy = kind_group(
    "policy", "Service policies: recipient pattern -> outbound connection or bound carrier."
)


@policy.command("add")
@click.option(
    "--pattern", required=True, help="SQL-LIKE pattern over E.164 digits: 222%, 9647_%, %."
)
@click.option("--connection", "connection_name", help="Outbound connection name (submit_sm).")
@click.option(
    "--carrier",
    "carrier_name",
    help="Carrier name: delivered as MO deliver_sm on its receiver/transceiver binds.",
)
@click.option(
    "--priority",
    type=int,
    default=0,
    show_default=True,
    help="Among equally specific patterns, lower is tried first (failover order).",
)
@json_option
@pass_obj
def policy_add(
    obj: Obj,
    pattern: str,
    connection_name: str | None,
    carrier_name: str | None,
    priority: int,
    as_json: bool,
) -> None:
    """Add a service policy: to a connection, or to a carrier (give one of the two)."""
    if (connection_name is None) == (carrier_name is None):
        fail("give one of --connection or --carrier")
    k = service.kind("policy")
    raw = {
        "pattern": pattern,
        "connection": connection_name,
        "carrier": carrier_name,
        "priority": priority,
    }
    run_change(obj, k, "added", as_json, lambda ctx: service.create(ctx, k, raw))


@policy.command("set")
@click.argument("ref", metavar="ID")
@click.option("--priority", type=int, help="Among equally specific patterns, lower is tried first.")
@json_option
@pass_obj
def policy_set(obj: Obj, ref: str, priority: int | None, as_json: bool) -> None:
    """Change a service policy's priority (a new pattern or target is a new policy)."""
    run_set(obj, service.kind("policy"), ref, {"priority": priority}, as_json)


def per_option(help_text: str) -> Callable[[Any], Any]:
    return click.option(
        "--per",
        "unit",
        type=click.Choice(["message", "segment"]),
        default="message",
        show_default=True,
        help=help_text,
    )


tariff = kind_group(
    "tariff", "Carrier tariffs: price per message or segment by E.164 prefix, with dates."
)


@tariff.command("add")
@click.option("--carrier", "carrier_name", required=True, help="Carrier name.")
@click.option("--prefix", required=True, help="E.164 prefix, e.g. 964.")
@click.option("--price", required=True, help="Price per message (or segment, --per), e.g. 0.01.")
@click.option("--currency", required=True, help="ISO 4217 code, e.g. USD.")
@click.option(
    "--from",
    "start",
    metavar="YYYY-MM-DD",
    help="First day it applies, in the carrier's time zone (default: today).",
)
@click.option(
    "--to", "end", metavar="YYYY-MM-DD", help="Last day it applies (default: open-ended)."
)
@per_option("Price each message, or each segment (part) of it.")
@click.option(
    "--direction",
    type=click.Choice(["in", "out"]),
    default="in",
    show_default=True,
    help="in: what the carrier pays us for what it sends; out: what we pay it (our cost) for"
    " what we deliver to it through a --carrier policy.",
)
@json_option
@pass_obj
def tariff_add(
    obj: Obj,
    carrier_name: str,
    prefix: str,
    price: str,
    currency: str,
    start: str | None,
    end: str | None,
    unit: str,
    direction: str,
    as_json: bool,
) -> None:
    """Add a tariff; an open-ended earlier tariff of the same prefix ends the day before."""
    k = service.kind("tariff")
    raw: dict[str, Any] = {
        "carrier": carrier_name,
        "prefix": prefix,
        "price": price,
        "currency": currency,
        "to": end,
        "unit": unit,
        "direction": direction,
    }
    if start is not None:
        raw["from"] = start

    def action(ctx: Any) -> dict[str, Any]:
        record = k.parse(raw, ctx)
        k.close_open_ended(ctx, record)  # type: ignore[attr-defined]
        return service.create(ctx, k, raw)

    run_change(obj, k, "added", as_json, action)


fee = kind_group("fee", "Monthly volume fees of carriers: fixed, by volume band, or tiered.")


def _tier(text: str) -> list[str | int]:
    units, sep, price = text.partition("=")
    if not sep or not units.strip().isdigit():
        fail(f"--tier: {text!r} is not FROM=PRICE (e.g. 100000=0.008)")
    return [int(units), price.strip()]


@fee.command("add")
@click.option("--carrier", "carrier_name", required=True, help="Carrier name.")
@click.option("--name", required=True, help="Label on the invoice, e.g. 'platform fee'.")
@click.option(
    "--kind",
    type=click.Choice(["monthly", "volume-fee", "graduated", "volume-price"]),
    required=True,
    help="monthly: fixed amount; volume-fee: fixed amount by the month's volume band; "
    "graduated: unit price per tier; volume-price: all units at the band's unit price.",
)
@click.option("--amount", help="The amount of a monthly fee.")
@click.option(
    "--tier",
    "tiers",
    multiple=True,
    metavar="FROM=PRICE",
    help="A tier: from this volume on, this price (repeatable; the first from 0).",
)
@click.option("--currency", required=True, help="ISO 4217 code, e.g. USD.")
@per_option("What the volume counts: messages, or their segments.")
@click.option("--from", "start", metavar="YYYY-MM", help="First month (default: this month).")
@click.option("--to", "end", metavar="YYYY-MM", help="Last month (default: open-ended).")
@json_option
@pass_obj
def fee_add(
    obj: Obj,
    carrier_name: str,
    name: str,
    kind: str,
    amount: str | None,
    tiers: tuple[str, ...],
    currency: str,
    unit: str,
    start: str | None,
    end: str | None,
    as_json: bool,
) -> None:
    """Add a monthly volume fee to a carrier's settlements."""
    if kind == "monthly":
        if amount is None or tiers:
            fail("a monthly fee takes --amount (and no --tier)")
        tier_list: list[list[str | int]] = [[0, amount]]
    else:
        if amount is not None or not tiers:
            fail(f"a {kind} fee takes --tier FROM=PRICE (repeatable), not --amount")
        tier_list = [_tier(t) for t in tiers]
    k = service.kind("fee")
    raw: dict[str, Any] = {
        "carrier": carrier_name,
        "name": name,
        "kind": kind,
        "tiers": tier_list,
        "currency": currency,
        "unit": unit,
        "to": end,
    }
    if start is not None:
        raw["from"] = start
    run_change(obj, k, "added", as_json, lambda ctx: service.create(ctx, k, raw))


def open_end(text: str | None) -> str | None:
    """A --to of ``set``: a date, or ``none`` for open-ended ("" to the parser)."""
    if text is None:
        return None
    return "" if text.strip().lower() in ("none", "open") else text


@tariff.command("set")
@click.argument("ref", metavar="ID")
@click.option("--price", help="Price per message (or segment), e.g. 0.012.")
@click.option("--currency", help="ISO 4217 code, e.g. USD.")
@click.option(
    "--to", "end", metavar="YYYY-MM-DD|none", help="Last day it applies, or none (open-ended)."
)
@click.option(
    "--per",
    "unit",
    type=click.Choice(["message", "segment"]),
    help="Price each message, or each segment (part) of it.",
)
@json_option
@pass_obj
def tariff_set(
    obj: Obj,
    ref: str,
    price: str | None,
    currency: str | None,
    end: str | None,
    unit: str | None,
    as_json: bool,
) -> None:
    """Change a tariff (only the options given; carrier, prefix, direction and start are
    what it is: a new one of those is a new tariff). Refused for days of a final month."""
    given = {"price": price, "currency": currency, "to": open_end(end), "unit": unit}
    run_set(obj, service.kind("tariff"), ref, given, as_json)


@fee.command("set")
@click.argument("ref", metavar="ID")
@click.option(
    "--kind",
    type=click.Choice(["monthly", "volume-fee", "graduated", "volume-price"]),
    help="monthly, volume-fee, graduated or volume-price (give its --amount or --tier).",
)
@click.option("--amount", help="The amount of a monthly fee.")
@click.option(
    "--tier",
    "tiers",
    multiple=True,
    metavar="FROM=PRICE",
    help="The tiers, all of them (repeatable; the first from 0).",
)
@click.option("--currency", help="ISO 4217 code, e.g. USD.")
@click.option(
    "--per",
    "unit",
    type=click.Choice(["message", "segment"]),
    help="What the volume counts: messages, or their segments.",
)
@click.option("--to", "end", metavar="YYYY-MM|none", help="Last month, or none (open-ended).")
@json_option
@pass_obj
def fee_set(
    obj: Obj,
    ref: str,
    kind: str | None,
    amount: str | None,
    tiers: tuple[str, ...],
    currency: str | None,
    unit: str | None,
    end: str | None,
    as_json: bool,
) -> None:
    """Change a volume fee (only the options given). Refused for a final month."""
    if amount is not None and tiers:
        fail("give --amount (a monthly fee) or --tier (the others), not both")
    tier_list = [[0, amount]] if amount is not None else [_tier(t) for t in tiers] or None
    given = {"kind": kind, "tiers": tier_list, "currency": currency, "unit": unit,
             "to": open_end(end)}  # fmt: skip
    run_set(obj, service.kind("fee"), ref, given, as_json)


# -- billing: settlement, usage, CDRs ------------------------------------------------------
main.add_command(billing_commands.settlement)
main.add_command(billing_commands.usage_cmd)
main.add_command(billing_commands.cdrs_group)


# -- audit and declarative provisioning ----------------------------------------------------
@main.group("audit")
def audit_group() -> None:
    """The audit log of admin changes."""


@audit_group.command("list")
@click.option("--entity", help="Only this kind (customer, account, carrier, ...).")
@click.option("--key", help="Only this object (as the log names it).")
@click.option("--since", metavar="YYYY-MM-DD", help="Only changes on or after this UTC day.")
@click.option(
    "--limit",
    type=click.IntRange(1, 100_000),
    default=100,
    show_default=True,
    help="Newest entries to show.",
)
@json_option
@pass_obj
def audit_list(
    obj: Obj, entity: str | None, key: str | None, since: str | None, limit: int, as_json: bool
) -> None:
    """List admin changes, oldest first."""
    start = None
    if since:
        try:
            start = datetime.fromisoformat(since).replace(tzinfo=UTC)
        except ValueError:
            fail(f"--since: {since!r} is not a date YYYY-MM-DD")
    with admin.session(obj.config, obj.actor) as ctx:
        rows = audit.entries(ctx.conn, entity=entity, key=key, since=start, limit=limit)
    if as_json:
        click.echo(render.to_json(rows))
    else:
        for row in rows:
            click.echo(audit.summary(row))
        if not rows:
            click.echo("(none)")


# -- operations: status of a running node, message traces -----------------------------------
main.add_command(status_view.status_cmd)
main.add_command(trace.messages_group)


@main.command("demo")
@click.option("--keep", is_flag=True, help="Keep the temporary folder (config, store) after.")
def demo_cmd(keep: bool) -> None:
    """Try it: a temporary gateway, a carrier and an app, one SMS end to end.

    Starts a gateway on free 127.0.0.1 ports with a temporary SQLite store, provisions John
    Doe (account 1111, DID +964 111222333) and carrier TATA with a tariff, then plays the app
    (built-in SIP test UA) and the carrier (smpplib): the SMS arrives as a SIP MESSAGE, the
    receipt goes back, and the message's trace and settlement line are shown. Touches nothing
    outside the temporary folder."""
    from click.testing import CliRunner
    from rich.console import Console

    from gateway import demo

    console = Console(highlight=False)

    def ctl_for(config: Path) -> Callable[[list[str]], str]:
        def ctl(args: list[str]) -> str:
            result = CliRunner().invoke(main, ["--config", str(config), "--actor", "demo", *args])
            if result.exit_code != 0:
                raise demo.DemoFailed(f"gatewayctl {' '.join(args[:2])}: {result.output.strip()}")
            return result.output

        return ctl

    def say(text: str) -> None:
        console.print(text, markup=True, soft_wrap=True)

    demo.run(ctl_for, say, keep=keep)


# -- SIP registrations ---------------------------------------------------------------------
REGISTRATION_COLUMNS = (
    "account",
    "did",
    "contact",
    "transport",
    "source",
    "expires_in",
    "user_agent",
)


@main.group("registrations")
def registrations_group() -> None:
    """SIP registrations: where apps of each account are reachable."""


@registrations_group.command("list")
@click.option("--account", "account_id", metavar="ID", help="Only this account's registrations.")
@json_option
@pass_obj
def registrations_list(obj: Obj, account_id: str | None, as_json: bool) -> None:
    """List the live SIP registrations in the store, by account then contact.

    Expired ones are not shown; expires_in is the seconds left, did the account's first DID."""
    from gateway.sip.regstore import registration_rows

    with admin.session(obj.config, obj.actor) as ctx:
        if account_id is not None:
            service.resolve(ctx, service.kind("account"), account_id)
        rows = registration_rows(ctx.conn, now=ctx.now, account=account_id)
    if as_json:
        click.echo(render.to_json(rows))
    else:
        render.table(rows, REGISTRATION_COLUMNS)


@main.command("apply")
@click.option(
    "-f",
    "--file",
    "path",
    required=True,
    type=click.Path(dir_okay=False),
    help="Provisioning YAML file.",
)
@click.option("--dry-run", is_flag=True, help="Show the changes without making them.")
@pass_obj
def apply_cmd(obj: Obj, path: str, dry_run: bool) -> None:
    """Make the store match a provisioning file (see docs/provisioning.md)."""
    document = read_yaml(path, decimals=True)
    with admin.session(obj.config, obj.actor, dry_run=dry_run) as ctx:
        changes = declarative.plan(ctx, document, path)
        declarative.execute(ctx, changes)
    for change in changes:
        click.echo(change.describe())
    summary = {a: sum(1 for c in changes if c.action == a) for a in ("create", "update", "delete")}
    counts = ", ".join(f"{n} to {a}" for a, n in summary.items())
    if not changes:
        click.echo("no changes")
    elif dry_run:
        click.echo(f"dry run: {counts}; nothing changed")
    else:
        click.echo(f"applied: {counts}")


if __name__ == "__main__":
    main()
