# The app accounts the SIP side serves, cached in memory and reloaded from the store.
"""Account data the registrar and MESSAGE handling need on every request, without a query.

``AccountDirectory.load`` reads accounts, their product and their DIDs (blocking: run it in
a thread); the node reloads it every few seconds, so an account provisioned, disabled or
given a new password with gatewayctl is served without a restart. Only HA1 values are held,
never a password.

A reload replaces one immutable snapshot (:class:`AccountIndex`) in one assignment, and each
lookup reads the snapshot once: a request handled while a reload runs sees the old accounts
or the new ones, never a mix. Accounts are compared by their id (:meth:`names`), never by
identity: the object a request authenticated with may come from the snapshot before.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import Engine, select

from gateway.store.schema import accounts, dids, products


@dataclass(frozen=True, slots=True)
class SipAccount:
    id: int  # accounts.id
    account_id: str  # what the app registers as (digest username, AOR user part)
    enabled: bool
    messaging: bool  # its product carries SMS
    dids: tuple[str, ...]  # E.164 digits without '+', lowest first
    realm: str
    ha1_md5: str
    ha1_sha256: str

    @property
    def did(self) -> str | None:
        """The number its messages come from (the first DID when it has several)."""
        return self.dids[0] if self.dids else None

    @property
    def serviceable(self) -> bool:
        """Whether it may register and exchange messages."""
        return self.enabled and self.messaging

    def ha1(self, algorithm: str) -> str:
        return self.ha1_sha256 if algorithm == "SHA-256" else self.ha1_md5


@dataclass(frozen=True, slots=True)
class AccountIndex:
    """One reload's accounts by account id, by DID and by key (never changed once built)."""

    by_name: Mapping[str, SipAccount]
    by_did: Mapping[str, SipAccount]
    by_id: Mapping[int, SipAccount]

    @classmethod
    def of(cls, loaded: list[SipAccount]) -> AccountIndex:
        return cls(
            {a.account_id: a for a in loaded},
            {did: a for a in loaded for did in a.dids},
            {a.id: a for a in loaded},
        )


class AccountDirectory:
    """account_id -> SipAccount and DID -> SipAccount, replaced whole on every reload."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._index = AccountIndex({}, {}, {})

    def load(self) -> None:
        query = select(
            accounts.c.id,
            accounts.c.account_id,
            accounts.c.enabled,
            accounts.c.sip_realm,
            accounts.c.sip_ha1_md5,
            accounts.c.sip_ha1_sha256,
            products.c.messaging,
        ).join(products, products.c.id == accounts.c.product_id)
        with self._engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
            numbers = conn.execute(
                select(dids.c.account_id, dids.c.e164)
                .where(dids.c.account_id.is_not(None))
                .order_by(dids.c.e164)
            ).all()
        by_account: dict[int, list[str]] = {}
        for account, e164 in numbers:
            by_account.setdefault(account, []).append(e164)
        loaded = [
            SipAccount(
                id=row["id"],
                account_id=row["account_id"],
                enabled=bool(row["enabled"]),
                messaging=bool(row["messaging"]),
                dids=tuple(by_account.get(row["id"], ())),
                realm=row["sip_realm"],
                ha1_md5=row["sip_ha1_md5"],
                ha1_sha256=row["sip_ha1_sha256"],
            )
            for row in rows
        ]
        self._index = AccountIndex.of(loaded)  # one assignment: lookups never see a mix

    def by_name(self, account_id: str) -> SipAccount | None:
        return self._index.by_name.get(account_id)

    def by_did(self, e164: str) -> SipAccount | None:
        return self._index.by_did.get(e164)

    def by_id(self, key: int) -> SipAccount | None:
        return self._index.by_id.get(key)

    def by_user(self, user: str) -> SipAccount | None:
        """The account a URI user part names: its account id, or one of its DIDs (with or
        without '+')."""
        index = self._index  # one snapshot for both lookups
        found = index.by_name.get(user)
        if found is None:
            found = index.by_did.get(user.removeprefix("+"))
        return found

    def names(self, user: str, account: SipAccount) -> bool:
        """Whether the URI user part ``user`` names ``account`` (by id: ``account`` may come
        from the snapshot before the last reload)."""
        found = self.by_user(user)
        return found is not None and found.id == account.id

    def __len__(self) -> int:
        return len(self._index.by_id)
