# Credentials never in clear (rule 11): scrypt (RFC 7914), SIP digest HA1 (RFC 7616), Fernet.
"""How the gateway keeps credentials.

* Carriers' SMPP passwords: one-way, :func:`hash_password` / :func:`verify_password` (scrypt).
* App users' SIP passwords: only the digest HA1 values are stored (:func:`sip_ha1_pair`),
  which is all RFC 7616 / 2617 verification needs.
* Passwords the gateway itself presents (an outbound SMPP bind): encrypted with a local key
  file, :class:`SecretBox` (Fernet: AES-128-CBC + HMAC-SHA256).
* Logs and audit records show :func:`redact` instead of any of these.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import stat
import unicodedata
from typing import Literal

from cryptography.fernet import Fernet, InvalidToken

from gateway.errors import InvalidInput

REDACTED = "***"

# scrypt parameters for new hashes (RFC 7914 §2; n=2**14, r=8 is the interactive-login setting).
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
SCRYPT_SALT_BYTES = 16
SCRYPT_KEY_BYTES = 32
# Bounds on parameters read back from the store, so a damaged row cannot stall a bind.
_SCRYPT_MAXMEM = 64 * 1024 * 1024
_SCRYPT_MAX_P = 16

DigestAlgorithm = Literal["MD5", "SHA-256"]
_DIGEST_HASHES: dict[str, str] = {"MD5": "md5", "SHA-256": "sha256"}

SMPP_PASSWORD_MAX = 8  # SMPP 3.4 §5.2 / §4.1.1: C-Octet String of at most 9 octets with the NUL
SMPP_SYSTEM_ID_MAX = 15  # SMPP 3.4 §4.1.1: C-Octet String of at most 16 octets with the NUL
SIP_PASSWORD_MIN = 8
SIP_PASSWORD_MAX = 128


def redact(value: object) -> str:
    """What logs and audit records show in place of a credential: always ``***``."""
    return REDACTED


# --- SMPP passwords: scrypt -----------------------------------------------------------------


def hash_password(pw: str) -> str:
    """A new salted scrypt hash: ``scrypt$16384$8$1$<salt b64>$<hash b64>``."""
    salt = os.urandom(SCRYPT_SALT_BYTES)
    key = hashlib.scrypt(
        pw.encode("utf-8"), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=SCRYPT_KEY_BYTES
    )
    return "$".join(("scrypt", str(SCRYPT_N), str(SCRYPT_R), str(SCRYPT_P), _b64(salt), _b64(key)))


def verify_password(pw: str, stored: str) -> bool:
    """Whether ``pw`` matches ``stored`` (constant-time); False for a malformed ``stored``."""
    try:
        scheme, n_text, r_text, p_text, salt_text, key_text = stored.split("$")
        if scheme != "scrypt" or not all(t.isdigit() for t in (n_text, r_text, p_text)):
            return False
        n, r, p = int(n_text), int(r_text), int(p_text)
        if n < 2 or n & (n - 1) or not 1 <= r <= 64 or not 1 <= p <= _SCRYPT_MAX_P:
            return False
        salt = base64.b64decode(salt_text, validate=True)
        expected = base64.b64decode(key_text, validate=True)
        if not salt or not 1 <= len(expected) <= 64:
            return False
        key = hashlib.scrypt(
            pw.encode("utf-8"),
            salt=salt,
            n=n,
            r=r,
            p=p,
            maxmem=_SCRYPT_MAXMEM,
            dklen=len(expected),
        )
    except (ValueError, TypeError, AttributeError, binascii.Error):
        return False
    return hmac.compare_digest(key, expected)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# --- SIP digest: HA1 (RFC 7616 §3.4.2, RFC 2617 §3.2.2.2) ------------------------------------


def ha1(username: str, realm: str, password: str, algorithm: DigestAlgorithm) -> str:
    """Lowercase hex of H(username:realm:password) for the digest ``algorithm``."""
    name = _DIGEST_HASHES.get(algorithm)
    if name is None:
        raise InvalidInput(
            "algorithm", f"{algorithm!r} is not a digest algorithm: use MD5 or SHA-256"
        )
    data = f"{username}:{realm}:{password}".encode()
    return hashlib.new(name, data, usedforsecurity=False).hexdigest()


def sip_ha1_pair(username: str, realm: str, password: str) -> dict[str, str]:
    """The HA1 values stored for a SIP user: ``{"MD5": ..., "SHA-256": ...}``."""
    return {alg: ha1(username, realm, password, alg) for alg in ("MD5", "SHA-256")}


# --- files that hold secrets: owner-only ----------------------------------------------------


def require_private_file(name: str, field: str, what: str) -> None:
    """Refuse ``name`` (a key file, a TLS private key, the SQLite store) when group or others
    can read or change it, in one line naming the file and the fix. A missing file is left to
    the caller (each says what creates it); ``what`` names the file in the message."""
    try:
        mode = os.stat(name).st_mode
    except FileNotFoundError:
        return
    except OSError as error:
        raise InvalidInput(field, f"cannot read {what} {name}: {error.strerror}") from None
    if stat.S_ISREG(mode) and mode & 0o077:
        raise InvalidInput(
            field,
            f"{what} {name} can be read or changed by group or others "
            f"(mode {stat.S_IMODE(mode):04o}): run 'chmod 600 {name}'",
        )


# --- secrets the gateway presents to peers: Fernet with a local key file ----------------------


class SecretBox:
    """Encrypts and decrypts secrets with the gateway's key file (Fernet)."""

    def __init__(self, key: bytes, source: str = "the secret key") -> None:
        """``key``: a Fernet key (32 url-safe base64 bytes); ``source`` names it in errors."""
        self._fernet = Fernet(key)
        self._key = key
        self._source = source

    def __repr__(self) -> str:
        return f"SecretBox(source={self._source!r})"

    @classmethod
    def from_key_file(
        cls,
        path: str | os.PathLike[str],
        create: bool = False,
        field: str = "secret_key_file",
    ) -> SecretBox:
        """The box for the key in ``path``; with ``create``, a new key file (mode 0600) if absent.

        Refuses a key file that group or others can access, and a missing one when not creating.
        """
        name = os.fspath(path)
        if create:
            try:
                fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass
            except OSError as error:
                raise InvalidInput(
                    field, f"cannot create key file {name}: {error.strerror}"
                ) from None
            else:
                with os.fdopen(fd, "wb") as out:
                    os.fchmod(out.fileno(), 0o600)
                    out.write(Fernet.generate_key() + b"\n")
        try:
            mode = os.stat(name).st_mode
        except FileNotFoundError:
            raise InvalidInput(
                field, f"key file {name} does not exist: run 'gatewayctl init' to create it"
            ) from None
        except OSError as error:
            raise InvalidInput(field, f"cannot read key file {name}: {error.strerror}") from None
        if not stat.S_ISREG(mode):
            raise InvalidInput(field, f"key file {name} is not a regular file")
        require_private_file(name, field, "key file")
        try:
            with open(name, "rb") as key_file:
                key = key_file.read(1024).strip()
        except OSError as error:
            raise InvalidInput(field, f"cannot read key file {name}: {error.strerror}") from None
        try:
            return cls(key, source=f"key file {name}")
        except (ValueError, binascii.Error):
            raise InvalidInput(
                field,
                f"key file {name} does not hold a Fernet key (32 url-safe base64-encoded bytes): "
                "restore it from backup or run 'gatewayctl init' on a fresh install",
            ) from None

    def derive(self, purpose: str) -> bytes:
        """A 32-byte key for ``purpose`` (HMAC-SHA256 of it under the key file's key): the
        same on every node sharing the key file and across restarts, and useless for
        decrypting anything."""
        return hmac.new(self._key, purpose.encode("utf-8"), hashlib.sha256).digest()

    def encrypt(self, plain: str) -> str:
        """A token (url-safe base64 text) that only this key decrypts."""
        return self._fernet.encrypt(plain.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str, field: str = "secret") -> str:
        """The text sealed in ``token``; InvalidInput if it was sealed with another key."""
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeError):
            raise InvalidInput(
                field,
                f"the stored secret cannot be decrypted: {self._source} does not match the "
                "one the secret was stored with (or the stored value is damaged)",
            ) from None


# --- credential formats checked at provisioning ---------------------------------------------


def check_smpp_password(pw: str, field: str = "password") -> str:
    """``pw`` if it is 1-8 printable ASCII characters (never echoed in the reason)."""
    rule = (
        f"an SMPP password is 1 to {SMPP_PASSWORD_MAX} printable ASCII characters "
        "(SMPP 3.4 §5.2: C-Octet String of at most 9 octets including the NUL)"
    )
    _check_ascii(pw, field, rule, SMPP_PASSWORD_MAX, allow_space=True, secret=True)
    return pw


def check_smpp_system_id(sid: str, field: str = "system_id") -> str:
    """``sid`` if it is 1-15 printable ASCII characters without spaces."""
    rule = (
        f"a system_id is 1 to {SMPP_SYSTEM_ID_MAX} printable ASCII characters without spaces "
        "(SMPP 3.4 §4.1.1: C-Octet String of at most 16 octets including the NUL)"
    )
    _check_ascii(sid, field, rule, SMPP_SYSTEM_ID_MAX, allow_space=False, secret=False)
    return sid


def check_sip_password(pw: str, field: str = "password") -> str:
    """``pw`` if it has 8-128 characters and no control characters (never echoed)."""
    rule = (
        f"a SIP password has {SIP_PASSWORD_MIN} to {SIP_PASSWORD_MAX} characters "
        "and no control characters"
    )
    if not isinstance(pw, str):
        raise InvalidInput(field, f"is not text: {rule}")
    if not SIP_PASSWORD_MIN <= len(pw) <= SIP_PASSWORD_MAX:
        raise InvalidInput(field, f"has {len(pw)} characters: {rule}")
    for position, char in enumerate(pw, start=1):
        if unicodedata.category(char) == "Cc":
            raise InvalidInput(field, f"character {position} is a control character: {rule}")
    return pw


def _check_ascii(
    value: str, field: str, rule: str, longest: int, *, allow_space: bool, secret: bool
) -> None:
    shown = "" if secret else f"{value!r} "
    if not isinstance(value, str):
        raise InvalidInput(field, f"{shown}is not text: {rule}")
    if not value:
        raise InvalidInput(field, f"{shown}is empty: {rule}")
    if len(value) > longest:
        raise InvalidInput(field, f"{shown}has {len(value)} characters: {rule}")
    lowest = " " if allow_space else "!"
    for position, char in enumerate(value, start=1):
        if not lowest <= char <= "~":
            what = "a space" if char == " " else "not printable ASCII"
            raise InvalidInput(field, f"{shown}character {position} is {what}: {rule}")
