# The store's tables (SQLAlchemy Core): provisioning, audit log, messages, CDRs, SIP registrations.
"""Table definitions shared by the gateway, gatewayctl and the alembic migrations.

Identifiers admins type (account ids, DIDs, carrier names) are unique columns beside an
integer primary key, so a rename never rewrites references. Numbers are E.164 digits without
'+', times are UTC (``UTCDateTime``), money is exact (``DecimalText``). Secrets appear only
as hashes (``password_hash``, ``sip_ha1_*``) or as ciphertext (``password_enc``).
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from gateway.store.types import DecimalText, UTCDateTime

# Named constraints, so alembic can alter them on SQLite (batch mode) and PostgreSQL alike.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING)

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit one.
BigId = BigInteger().with_variant(Integer(), "sqlite")

customers = Table(
    "customers",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("created_at", UTCDateTime, nullable=False),
)

products = Table(
    "products",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("messaging", Boolean, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

accounts = Table(
    "accounts",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("account_id", String(64), nullable=False, unique=True),
    Column("customer_id", ForeignKey("customers.id"), nullable=False, index=True),
    Column("product_id", ForeignKey("products.id"), nullable=False, index=True),
    Column("enabled", Boolean, nullable=False),
    # Digest HA1 = H(username:realm:password) for each algorithm; the password is not kept.
    Column("sip_realm", String(255), nullable=False),
    Column("sip_ha1_md5", String(32), nullable=False),
    Column("sip_ha1_sha256", String(64), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

dids = Table(
    "dids",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("e164", String(15), nullable=False, unique=True),
    Column("account_id", ForeignKey("accounts.id"), nullable=True, index=True),
    Column("assigned_at", UTCDateTime, nullable=True),
)

carriers = Table(
    "carriers",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("system_id", String(15), nullable=False, unique=True),
    Column("password_hash", String(200), nullable=False),
    Column("allowed_networks", JSON, nullable=False),
    Column("max_binds", Integer, nullable=False),
    Column("throughput", Integer, nullable=True),
    Column("receipt_id_format", String(3), nullable=False),
    Column("data_coding_default", String(8), nullable=False),
    # Billing: the IANA zone of the carrier's months and tariff days; what it pays for.
    Column("billing_timezone", String(64), nullable=False, server_default="UTC"),
    Column("billable", String(9), nullable=False, server_default="accepted"),  # | delivered
    # How messages we deliver to it (deliver_sm, MO) carry concatenation: udh | sar
    Column("concat", String(3), nullable=False, server_default="udh"),
    Column("enabled", Boolean, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

connections = Table(
    "connections",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("host", String(255), nullable=False),
    Column("port", Integer, nullable=False),
    Column("system_id", String(15), nullable=False),
    Column("password_enc", Text, nullable=False),
    Column("bind_type", String(3), nullable=False),
    Column("window", Integer, nullable=False),
    Column("throughput", Integer, nullable=True),
    Column("tls", Boolean, nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

policies = Table(
    "policies",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("pattern", String(32), nullable=False),
    # the target: an outbound connection, or a carrier that binds to us (deliver_sm on its
    # receiver binds); exactly one of the two is set
    Column("connection_id", ForeignKey("connections.id"), nullable=True, index=True),
    Column("carrier_id", ForeignKey("carriers.id"), nullable=True, index=True),
    Column("priority", Integer, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("pattern", "connection_id"),
    UniqueConstraint("pattern", "carrier_id"),
)

tariffs = Table(
    "tariffs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("carrier_id", ForeignKey("carriers.id"), nullable=False),
    Column("prefix", String(15), nullable=False),
    Column("price", DecimalText, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("unit", String(7), nullable=False, server_default="message"),  # | segment
    # in: what the carrier pays us for what it sends; out: what we pay it (cost) for the
    # messages we deliver to it (leg out)
    Column("direction", String(3), nullable=False, server_default="in"),
    # Effective from 00:00 of effective_from through the whole day effective_to, both in the
    # carrier's billing time zone.
    Column("effective_from", Date, nullable=False),
    Column("effective_to", Date, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("carrier_id", "direction", "prefix", "effective_from"),
)

# Monthly charges by volume: a fixed fee, a fee by volume band, graduated or band unit prices.
# tiers: [[from_units, price], ...] ascending from 0, prices as text (exact).
fees = Table(
    "fees",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("carrier_id", ForeignKey("carriers.id"), nullable=False),
    Column("name", String(64), nullable=False),
    Column("kind", String(12), nullable=False),  # monthly | volume-fee | graduated | volume-price
    Column("unit", String(7), nullable=False),  # message | segment: what the volume counts
    Column("currency", String(3), nullable=False),
    Column("tiers", JSON, nullable=False),
    Column("effective_from", Date, nullable=False),  # first day of the first month
    Column("effective_to", Date, nullable=True),  # first day of the last month
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("carrier_id", "name", "effective_from"),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", BigId, primary_key=True),
    Column("at", UTCDateTime, nullable=False, index=True),
    Column("actor", String(128), nullable=False),
    Column("action", String(16), nullable=False),
    Column("entity", String(32), nullable=False),
    Column("key", String(255), nullable=False),
    Column("before", JSON, nullable=True),
    Column("after", JSON, nullable=True),
)

# Requests to lift failed-bind blocks of an address (gatewayctl carrier unblock): every node
# applies the rows newer than the last it saw on its provisioning reload.
bind_unblocks = Table(
    "bind_unblocks",
    metadata,
    Column("id", BigId, primary_key=True),
    Column("at", UTCDateTime, nullable=False, index=True),
    Column("actor", String(128), nullable=False),
    Column("address", String(64), nullable=False),
)

# One row per message the gateway accepted; its id is the message id given to the sender.
messages = Table(
    "messages",
    metadata,
    Column("id", BigId, primary_key=True),
    Column("origin", String(10), nullable=False),  # carrier | account | connection
    Column("carrier_id", ForeignKey("carriers.id"), nullable=True),
    Column("account_id", ForeignKey("accounts.id"), nullable=True),
    Column("connection_id", ForeignKey("connections.id"), nullable=True),
    Column("source", String(21), nullable=False),  # E.164 digits, or an alphanumeric sender
    Column("source_ton", SmallInteger, nullable=False),
    Column("destination", String(15), nullable=False),  # E.164 digits
    Column("data_coding", SmallInteger, nullable=False),
    Column("esm_class", SmallInteger, nullable=False),
    Column("body_text", Text, nullable=True),  # decoded text; purged after the privacy period
    Column("body_bytes", LargeBinary, nullable=True),  # binary payloads (data_coding 2/4)
    Column("parts", SmallInteger, nullable=False),
    Column("registered_delivery", SmallInteger, nullable=False),
    Column("priority", SmallInteger, nullable=False),
    Column("lane", String(12), nullable=False),
    Column("state", String(12), nullable=False),
    Column("reason", String(255), nullable=True),
    Column("error_code", Integer, nullable=True),  # SIP status / SMPP command_status of a failure
    Column("attempts", Integer, nullable=False),
    Column("route", String(64), nullable=True),
    Column("peer_message_id", String(65), nullable=True),
    Column("path", String(255), nullable=True),  # envs the message came through (loop guard)
    Column("upstream_id", String(65), nullable=True),  # its id in the env it came from
    Column("accepted_at", UTCDateTime, nullable=False),
    Column("next_attempt_at", UTCDateTime, nullable=True),
    Column("validity_until", UTCDateTime, nullable=False),
    Column("final_at", UTCDateTime, nullable=True),
    Index(None, "state", "next_attempt_at"),
    Index(None, "destination", "state"),
    Index(None, "carrier_id", "accepted_at"),
    Index(None, "final_at"),  # retention: text and records of ended messages
)

# The life of each message, one row per step (an attempt's end, parking, forwarding, receipts,
# the outcome), for `gatewayctl messages show`; dropped with the message (retention). An
# attempt's start is not a row (the message's state says `sending` while it is in flight),
# which keeps the common life to one row: the outcome.
message_events = Table(
    "message_events",
    metadata,
    Column("id", BigId, primary_key=True),
    Column("message_id", BigInteger, nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("event", String(16), nullable=False),  # a state, receipt, receipt-sent, peer-receipt
    Column("detail", String(255), nullable=True),
    Column("route", String(64), nullable=True),
    Column("error_code", Integer, nullable=True),
    Column("attempt", Integer, nullable=True),  # the attempt this step ended (None: no attempt)
    Index(None, "message_id", "id"),
)

# Parts of concatenated messages (UDH or SAR), each acknowledged with its own id once stored;
# when the last part arrives the whole message is written and the parts point at it.
fragments = Table(
    "fragments",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),  # the id the sender got
    Column("carrier_id", ForeignKey("carriers.id"), nullable=True),
    Column("group_key", String(128), nullable=False, index=True),
    Column("total", SmallInteger, nullable=False),
    Column("seq", SmallInteger, nullable=False),
    Column("payload", LargeBinary, nullable=False),  # the part's octets, UDH removed
    Column("registered_delivery", SmallInteger, nullable=False),
    Column("meta", JSON, nullable=False),  # the message's fields, to assemble after a restart
    Column("accepted_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("message_id", BigInteger, nullable=True, index=True),  # the whole message, once complete
)

# PDUs waiting for a carrier's receiver bind (delivery receipts, MO messages), oldest first.
outbox = Table(
    "outbox",
    metadata,
    Column("id", BigId, primary_key=True),
    Column("carrier_id", ForeignKey("carriers.id"), nullable=False),
    Column("message_id", BigInteger, nullable=True),
    Column("pdu", LargeBinary, nullable=False),  # encoded, sequence rewritten when sent
    Column("created_at", UTCDateTime, nullable=False),
    Column("attempts", Integer, nullable=False),
    # a message delivered to the carrier (policy --carrier): the segment this PDU carries
    # (None: a receipt or a connection's MO); its answer settles the message's attempt
    Column("part", SmallInteger, nullable=True),
    Index(None, "carrier_id", "id"),
)

# Messages forwarded over an outbound SMPP connection: the peer's id of each part, so its
# receipts find our message; a message is final once every part has its final receipt.
forwards = Table(
    "forwards",
    metadata,
    Column("id", BigId, primary_key=True),
    Column("message_id", BigInteger, nullable=False, index=True),
    Column("connection_id", ForeignKey("connections.id"), nullable=False),
    Column("peer_message_id", String(65), nullable=False),
    Column("part", SmallInteger, nullable=False),
    Column("parts", SmallInteger, nullable=False),
    Column("stat", String(7), nullable=True),  # the part's final receipt state, once known
    Column("err", Integer, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("connection_id", "peer_message_id"),
)

# Blocks of ids handed to a gateway process (hi/lo), so ids are known before the insert and
# several processes on one database never collide.
id_blocks = Table(
    "id_blocks",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("next_id", BigInteger, nullable=False),
)

# SIP registrations (RFC 3261 §10.3): where each account's apps are reachable, kept so a
# restart does not forget them; the registrar holds them in memory and writes each change.
registrations = Table(
    "registrations",
    metadata,
    Column("id", BigId, primary_key=True),
    Column("account_id", ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("contact", String(512), nullable=False),  # Contact URI, wire form
    Column("expires_at", UTCDateTime, nullable=False, index=True),
    Column("call_id", String(255), nullable=False),
    Column("cseq", Integer, nullable=False),
    Column("q", Float, nullable=True),
    Column("transport", String(3), nullable=False),  # udp | tcp | tls
    Column("source_host", String(64), nullable=False),  # where the REGISTER came from
    Column("source_port", Integer, nullable=False),
    Column("user_agent", String(255), nullable=True),
    Column("updated_at", UTCDateTime, nullable=False),
    UniqueConstraint("account_id", "contact"),
)

# Call detail records: immutable once final, kept for years, no message text.
cdrs = Table(
    "cdrs",
    metadata,
    Column("id", BigId, primary_key=True),
    Column("message_id", BigInteger, nullable=False),
    Column("leg", String(8), nullable=False),  # in | out
    Column("carrier_id", ForeignKey("carriers.id"), nullable=True),
    Column("account_id", ForeignKey("accounts.id"), nullable=True),
    Column("connection_id", ForeignKey("connections.id"), nullable=True),
    Column("source", String(21), nullable=False),
    Column("destination", String(15), nullable=False),
    Column("parts", SmallInteger, nullable=False),
    Column("data_coding", SmallInteger, nullable=False),
    Column("route", String(64), nullable=True),
    Column("state", String(12), nullable=False),
    Column("reason", String(255), nullable=True),
    Column("accepted_at", UTCDateTime, nullable=False),
    Column("final_at", UTCDateTime, nullable=True),
    # a concatenated message from a carrier: the ids its parts were acknowledged with, in part
    # order, space-separated (the first part's first): the ids the carrier knows it by
    Column("part_ids", Text, nullable=True),
    UniqueConstraint("message_id", "leg"),
    Index(None, "carrier_id", "accepted_at"),
)

# CDRs are never updated: the migration adds a trigger refusing UPDATE on both backends.
CDR_IMMUTABLE_MESSAGE = "CDRs are immutable once written"

# A carrier's settlement of one month: draft while being (re)built, then final and frozen.
settlements = Table(
    "settlements",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("carrier_id", ForeignKey("carriers.id"), nullable=False),
    Column("period", String(7), nullable=False),  # YYYY-MM in the carrier's time zone
    Column("state", String(5), nullable=False),  # draft | final
    Column("timezone", String(64), nullable=False),
    Column("period_start", UTCDateTime, nullable=False),
    Column("period_end", UTCDateTime, nullable=False),  # exclusive
    Column("billable", String(9), nullable=False),
    Column("key_length", SmallInteger, nullable=False),  # destination digits grouped on
    Column("boundaries", JSON, nullable=False),  # tariff change instants inside the period
    Column("cdr_count", BigInteger, nullable=False),
    Column("cdr_checksum", String(64), nullable=False),
    Column("pending", BigInteger, nullable=False),  # accepted in the period, not final yet
    Column("built_at", UTCDateTime, nullable=False),
    Column("built_by", String(128), nullable=False),
    Column("finalised_at", UTCDateTime, nullable=True),
    Column("finalised_by", String(128), nullable=True),
    UniqueConstraint("carrier_id", "period"),
)

# The CDR counts a settlement was built from, by destination key, tariff bucket and state;
# kept so a later run can find exactly the CDRs that arrived after a month was finalised.
settlement_groups = Table(
    "settlement_groups",
    metadata,
    Column("id", BigId, primary_key=True),
    Column(
        "settlement_id",
        ForeignKey("settlements.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("source_period", String(7), nullable=False),  # the month the CDRs belong to
    Column("dest_key", String(15), nullable=False),
    Column("bucket", SmallInteger, nullable=False),
    Column("state", String(12), nullable=False),
    Column("messages", BigInteger, nullable=False),
    Column("parts", BigInteger, nullable=False),
)

# The invoice lines of a settlement, in order: usage by tariff, adjustments, volume fees.
settlement_lines = Table(
    "settlement_lines",
    metadata,
    Column("id", BigId, primary_key=True),
    Column(
        "settlement_id",
        ForeignKey("settlements.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("seq", Integer, nullable=False),
    Column("kind", String(10), nullable=False),  # usage | adjustment | fee | unrated
    Column("source_period", String(7), nullable=False),
    Column("prefix", String(15), nullable=True),
    Column("description", String(255), nullable=False),
    Column("tariff_id", Integer, nullable=True),
    Column("currency", String(3), nullable=True),
    Column("unit", String(7), nullable=True),
    Column("unit_price", DecimalText, nullable=True),
    Column("messages", BigInteger, nullable=False),
    Column("parts", BigInteger, nullable=False),
    Column("units", BigInteger, nullable=False),
    Column("amount", DecimalText, nullable=True),
)
