# Tests of gateway/secrets.py: scrypt hashes, RFC 7616 digest vectors, key file, format checks.
"""Credentials are never in clear, and every refusal says what to do."""

from __future__ import annotations

import base64
import hashlib
import os
import stat
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import InvalidInput
from gateway.secrets import (
    REDACTED,
    SecretBox,
    check_sip_password,
    check_smpp_password,
    check_smpp_system_id,
    ha1,
    hash_password,
    redact,
    sip_ha1_pair,
    verify_password,
)

# --- scrypt ----------------------------------------------------------------------------------


def test_hash_format_and_verify() -> None:
    stored = hash_password("secret1")
    scheme, n, r, p, salt, key = stored.split("$")
    assert (scheme, n, r, p) == ("scrypt", "16384", "8", "1")
    assert len(base64.b64decode(salt)) == 16
    assert len(base64.b64decode(key)) == 32
    assert "secret1" not in stored
    assert verify_password("secret1", stored)
    assert not verify_password("secret2", stored)
    assert not verify_password("", stored)


def test_salt_is_random() -> None:
    assert hash_password("same") != hash_password("same")


def test_hash_matches_stdlib_scrypt() -> None:
    stored = hash_password("pw")
    _, _, _, _, salt, key = stored.split("$")
    expected = hashlib.scrypt(b"pw", salt=base64.b64decode(salt), n=2**14, r=8, p=1, dklen=32)
    assert base64.b64decode(key) == expected


def test_non_ascii_password() -> None:
    stored = hash_password("mot de passe é")
    assert verify_password("mot de passe é", stored)
    assert not verify_password("mot de passe e", stored)


@pytest.mark.parametrize(
    "stored",
    [
        "",
        "garbage",
        "scrypt$16384$8$1$AAAA",
        "bcrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAA",
        "scrypt$x$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAA",
        "scrypt$1000$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAA",  # n not a power of 2
        "scrypt$16384$8$1$not base64!$AAAA",
        "scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA==$",
        "scrypt$16384$8$1$$AAAA",
        "scrypt$1048576$64$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAA",  # needs 8 GiB
        "scrypt$16384$8$999$AAAAAAAAAAAAAAAAAAAAAA==$AAAA",  # p beyond bound
        "scrypt$-16384$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAA",
    ],
)
def test_malformed_stored_value_verifies_false(stored: str) -> None:
    assert verify_password("pw", stored) is False


@settings(max_examples=50, deadline=None)
@given(st.text(max_size=80))
def test_arbitrary_stored_text_never_raises(stored: str) -> None:
    assert verify_password("pw", stored) in (False, True)


def test_other_parameters_are_honoured() -> None:
    salt = b"0123456789abcdef"
    key = hashlib.scrypt(b"pw", salt=salt, n=2**10, r=4, p=2, dklen=16)
    stored = f"scrypt$1024$4$2${base64.b64encode(salt).decode()}${base64.b64encode(key).decode()}"
    assert verify_password("pw", stored)
    assert not verify_password("px", stored)


# --- SIP digest (RFC 7616 §3.9.1) ---------------------------------------------------------------

RFC7616 = {
    "username": "Mufasa",
    "realm": "http-auth@example.org",
    "password": "Circle of Life",
    "method": "GET",
    "uri": "/dir/index.html",
    "nonce": "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
    "cnonce": "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
    "nc": "00000001",
    "qop": "auth",
}


def _response(ha1_hex: str, algorithm: str) -> str:
    """RFC 7616 §3.4.1 response for qop=auth, from the stored HA1."""
    name = {"MD5": "md5", "SHA-256": "sha256"}[algorithm]

    def h(text: str) -> str:
        return hashlib.new(name, text.encode()).hexdigest()

    v = RFC7616
    ha2 = h(f"{v['method']}:{v['uri']}")
    return h(f"{ha1_hex}:{v['nonce']}:{v['nc']}:{v['cnonce']}:{v['qop']}:{ha2}")


@pytest.mark.parametrize(
    ("algorithm", "expected_ha1", "expected_response"),
    [
        (
            "MD5",
            "3d78807defe7de2157e2b0b6573a855f",
            "8ca523f5e9506fed4657c9700eebdbec",
        ),
        (
            "SHA-256",
            "7987c64c30e25f1b74be53f966b49b90f2808aa92faf9a00262392d7b4794232",
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
        ),
    ],
)
def test_rfc7616_example(algorithm: str, expected_ha1: str, expected_response: str) -> None:
    value = ha1("Mufasa", "http-auth@example.org", "Circle of Life", algorithm)  # type: ignore[arg-type]
    assert value == expected_ha1
    # The response values printed in RFC 7616 §3.9.1 follow from the stored HA1 alone.
    assert _response(value, algorithm) == expected_response


def test_ha1_pair() -> None:
    pair = sip_ha1_pair("Mufasa", "http-auth@example.org", "Circle of Life")
    assert pair == {
        "MD5": "3d78807defe7de2157e2b0b6573a855f",
        "SHA-256": "7987c64c30e25f1b74be53f966b49b90f2808aa92faf9a00262392d7b4794232",
    }


def test_ha1_unknown_algorithm() -> None:
    with pytest.raises(InvalidInput) as caught:
        ha1("a", "b", "c", "SHA-512-256")  # type: ignore[arg-type]
    assert caught.value.field == "algorithm"
    assert caught.value.reason == "'SHA-512-256' is not a digest algorithm: use MD5 or SHA-256"


# --- SecretBox -------------------------------------------------------------------------------


def test_create_key_file_and_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "secret.key"
    box = SecretBox.from_key_file(path, create=True)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    token = box.encrypt("bind-pass")
    assert "bind-pass" not in token
    assert box.decrypt(token) == "bind-pass"
    # The same file opened again decrypts what was stored before.
    again = SecretBox.from_key_file(path)
    assert again.decrypt(token) == "bind-pass"
    # create=True on an existing file keeps its key.
    assert SecretBox.from_key_file(path, create=True).decrypt(token) == "bind-pass"
    assert path.read_bytes().strip().decode() not in repr(box)


def test_missing_key_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.key"
    with pytest.raises(InvalidInput) as caught:
        SecretBox.from_key_file(path)
    assert caught.value.field == "secret_key_file"
    assert caught.value.reason == (
        f"key file {path} does not exist: run 'gatewayctl init' to create it"
    )
    assert not path.exists()


def test_key_file_in_missing_directory(tmp_path: Path) -> None:
    path = tmp_path / "no-such-dir" / "secret.key"
    with pytest.raises(InvalidInput) as caught:
        SecretBox.from_key_file(path, create=True)
    assert caught.value.reason == f"cannot create key file {path}: No such file or directory"


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660, 0o602])
def test_key_file_open_to_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "secret.key"
    SecretBox.from_key_file(path, create=True)
    os.chmod(path, mode)
    with pytest.raises(InvalidInput) as caught:
        SecretBox.from_key_file(path)
    assert caught.value.reason == (
        f"key file {path} can be read or changed by group or others (mode {mode:04o}): "
        f"run 'chmod 600 {path}'"
    )


def test_key_file_with_garbage(tmp_path: Path) -> None:
    path = tmp_path / "secret.key"
    path.write_text("not a key\n")
    os.chmod(path, 0o600)
    with pytest.raises(InvalidInput) as caught:
        SecretBox.from_key_file(path)
    assert caught.value.reason.startswith(f"key file {path} does not hold a Fernet key")


def test_key_file_is_a_directory(tmp_path: Path) -> None:
    os.chmod(tmp_path, 0o700)
    with pytest.raises(InvalidInput) as caught:
        SecretBox.from_key_file(tmp_path)
    assert caught.value.reason == f"key file {tmp_path} is not a regular file"


def test_token_from_another_key(tmp_path: Path) -> None:
    first = SecretBox.from_key_file(tmp_path / "a.key", create=True)
    second = SecretBox.from_key_file(tmp_path / "b.key", create=True)
    token = first.encrypt("bind-pass")
    with pytest.raises(InvalidInput) as caught:
        second.decrypt(token, field="peers[0].password")
    assert caught.value.field == "peers[0].password"
    assert caught.value.reason == (
        f"the stored secret cannot be decrypted: key file {tmp_path / 'b.key'} does not match "
        "the one the secret was stored with (or the stored value is damaged)"
    )
    with pytest.raises(InvalidInput):
        second.decrypt("not a token")


def test_box_from_raw_key() -> None:
    box = SecretBox(Fernet.generate_key())
    assert box.decrypt(box.encrypt("ü")) == "ü"


def test_redact() -> None:
    assert redact("hunter2") == REDACTED == "***"
    assert redact(None) == "***"


# --- format checks ---------------------------------------------------------------------------

SMPP_PW_RULE = (
    "an SMPP password is 1 to 8 printable ASCII characters "
    "(SMPP 3.4 §5.2: C-Octet String of at most 9 octets including the NUL)"
)
SYSTEM_ID_RULE = (
    "a system_id is 1 to 15 printable ASCII characters without spaces "
    "(SMPP 3.4 §4.1.1: C-Octet String of at most 16 octets including the NUL)"
)
SIP_PW_RULE = "a SIP password has 8 to 128 characters and no control characters"


@pytest.mark.parametrize("pw", ["a", "secret12", "p@ss w0r", "~!#$%^&*"])
def test_smpp_password_accepted(pw: str) -> None:
    assert check_smpp_password(pw) == pw


@pytest.mark.parametrize(
    ("pw", "reason"),
    [
        ("", f"is empty: {SMPP_PW_RULE}"),
        ("secret123", f"has 9 characters: {SMPP_PW_RULE}"),
        ("pass\x00", f"character 5 is not printable ASCII: {SMPP_PW_RULE}"),
        ("pässwd", f"character 2 is not printable ASCII: {SMPP_PW_RULE}"),
        ("tab\there", f"character 4 is not printable ASCII: {SMPP_PW_RULE}"),
    ],
)
def test_smpp_password_refused_without_echo(pw: str, reason: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        check_smpp_password(pw, field="carriers[1].password")
    assert caught.value.field == "carriers[1].password"
    assert caught.value.reason == reason
    if pw:
        assert pw not in str(caught.value)


@pytest.mark.parametrize("sid", ["a", "carrier_1", "A" * 15, "x-y.z!"])
def test_system_id_accepted(sid: str) -> None:
    assert check_smpp_system_id(sid) == sid


@pytest.mark.parametrize(
    ("sid", "reason"),
    [
        ("", f"'' is empty: {SYSTEM_ID_RULE}"),
        ("A" * 16, f"'{'A' * 16}' has 16 characters: {SYSTEM_ID_RULE}"),
        ("my carrier", f"'my carrier' character 3 is a space: {SYSTEM_ID_RULE}"),
        ("opérateur", f"'opérateur' character 3 is not printable ASCII: {SYSTEM_ID_RULE}"),
    ],
)
def test_system_id_refused(sid: str, reason: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        check_smpp_system_id(sid)
    assert caught.value.field == "system_id"
    assert caught.value.reason == reason


@pytest.mark.parametrize("pw", ["12345678", "correct horse battery", "é" * 128, "päss wörd 🙂"])
def test_sip_password_accepted(pw: str) -> None:
    assert check_sip_password(pw) == pw


@pytest.mark.parametrize(
    ("pw", "reason"),
    [
        ("", f"has 0 characters: {SIP_PW_RULE}"),
        ("1234567", f"has 7 characters: {SIP_PW_RULE}"),
        ("x" * 129, f"has 129 characters: {SIP_PW_RULE}"),
        ("password\n", f"character 9 is a control character: {SIP_PW_RULE}"),
        ("pass\x7fword", f"character 5 is a control character: {SIP_PW_RULE}"),
    ],
)
def test_sip_password_refused_without_echo(pw: str, reason: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        check_sip_password(pw)
    assert caught.value.field == "password"
    assert caught.value.reason == reason
    if pw:
        assert pw not in str(caught.value)


def test_checks_refuse_non_text() -> None:
    with pytest.raises(InvalidInput) as caught:
        check_smpp_password(12345)  # type: ignore[arg-type]
    assert caught.value.reason == f"is not text: {SMPP_PW_RULE}"
    with pytest.raises(InvalidInput) as caught:
        check_sip_password(None)  # type: ignore[arg-type]
    assert caught.value.reason == f"is not text: {SIP_PW_RULE}"


def test_derived_keys_are_stable_per_key_and_purpose():
    from cryptography.fernet import Fernet

    from gateway.secrets import SecretBox

    key = Fernet.generate_key()
    one, same = SecretBox(key), SecretBox(key)
    assert one.derive("sip nonces") == same.derive("sip nonces")  # another node, a restart
    assert len(one.derive("sip nonces")) == 32
    assert one.derive("sip nonces") != one.derive("something else")
    assert SecretBox(Fernet.generate_key()).derive("sip nonces") != one.derive("sip nonces")
