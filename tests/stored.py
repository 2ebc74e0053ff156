# Tests' view of a gateway's store: rows of a table with message content decrypted.
from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Table, select

from gateway.config import load_config
from gateway.secrets import SecretBox
from gateway.store.engine import make_engine
from gateway.store.schema import fragments, messages, outbox
from gateway.store.textcrypt import TextCipher, open_message, open_part, open_pdu


def cipher_of(config: Path) -> TextCipher:
    """The message text cipher of the gateway configured by ``config`` (no key: plain only)."""
    key_file = Path(load_config(config).secret_key_file)
    if not key_file.exists():
        return TextCipher(None)
    return TextCipher.from_box(SecretBox.from_key_file(key_file))


def plain_rows(config: Path, table: Table = messages) -> list[dict[str, Any]]:
    """Every row of ``table`` in id order, texts, parts and outbox PDUs decrypted."""
    cfg = load_config(config)
    cipher = cipher_of(config)
    engine = make_engine(cfg.database)
    try:
        with engine.connect() as conn:
            found = [dict(r) for r in conn.execute(select(table).order_by(table.c.id)).mappings()]
    finally:
        engine.dispose()
    for row in found:
        if table is messages:
            row["body_text"], row["body_bytes"] = open_message(row, cipher)
        elif table is fragments:
            row["payload"] = open_part(row["id"], row["payload"], cipher)
        elif table is outbox:
            row["pdu"] = open_pdu(row["id"], row["pdu"], cipher)
    return found
