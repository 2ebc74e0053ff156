# Tests of gateway/config.py: the YAML key contract, defaults, every error's exact text.
"""Configuration loading: contract file, defaults, errors as ``file: key: reason``."""

from __future__ import annotations

import dataclasses
import textwrap
from datetime import timedelta
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.config import (
    DEFAULT_CONFIG_PATH,
    Config,
    DeliveryConfig,
    Numbering,
    SipConfig,
    SipListener,
    SmppConfig,
    SmppListener,
    TlsFiles,
    format_duration,
    iter_settings,
    load_config,
    parse_config,
    parse_duration,
)
from gateway.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]

CONTRACT = """\
env: env1
database: sqlite:///gateway.db          # or postgresql+psycopg://user@127.0.0.1/test
numbering: {country_code: "964", national_prefix: "0"}
smpp:
  system_id: GW-ENV1
  listen:
    - {host: 127.0.0.1, port: 2775}
    - {host: 127.0.0.1, port: 3550, tls: {cert: tls/cert.pem, key: tls/key.pem}}
sip:
  domain: env1.example.net
  listen:
    - {transport: udp, host: 127.0.0.1, port: 5060}
    - {transport: tcp, host: 127.0.0.1, port: 5060}
    - {transport: tls, host: 127.0.0.1, port: 5061, cert: tls/cert.pem, key: tls/key.pem}
management: {host: 127.0.0.1, port: 8080}
delivery: {validity: 48h, retry: [5s, 30s, 2m, 10m, 1h]}
"""


def write(tmp_path: Path, text: str, name: str = "gateway.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def error_of(data: Any) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(data, "conf/gateway.yaml")
    return str(caught.value)


# --- the contract and the defaults -----------------------------------------------------------


def test_contract_file_loads(tmp_path: Path) -> None:
    path = write(tmp_path, CONTRACT)
    config = load_config(path)
    assert config.source == str(path)
    assert config.env == "env1"
    assert config.database == "sqlite:///gateway.db"
    assert config.numbering == Numbering(country_code="964", national_prefix="0")
    assert config.smpp == SmppConfig(
        system_id="GW-ENV1",
        listen=(
            SmppListener("127.0.0.1", 2775),
            SmppListener("127.0.0.1", 3550, TlsFiles("tls/cert.pem", "tls/key.pem")),
        ),
    )
    assert config.sip == SipConfig(
        domain="env1.example.net",
        listen=(
            SipListener("udp", "127.0.0.1", 5060),
            SipListener("tcp", "127.0.0.1", 5060),
            SipListener("tls", "127.0.0.1", 5061, cert="tls/cert.pem", key="tls/key.pem"),
        ),
    )
    assert (config.management.host, config.management.port) == ("127.0.0.1", 8080)
    assert config.delivery == DeliveryConfig(
        validity=timedelta(hours=48),
        retry=tuple(timedelta(seconds=s) for s in (5, 30, 120, 600, 3600)),
    )
    assert config.secret_key_file == "gateway.key"
    assert config.log.level == "INFO"


def test_empty_mapping_gives_defaults() -> None:
    config = parse_config({}, "x.yaml")
    assert config == Config(source="x.yaml")
    assert config.env == "gateway"
    assert config.database == "sqlite:///gateway.db"
    assert (config.numbering.country_code, config.numbering.national_prefix) == ("964", "0")
    assert config.numbering.international_prefix == "00"
    assert config.smpp.system_id == "GATEWAY"
    assert config.smpp.listen == (SmppListener("127.0.0.1", 2775),)
    assert [(x.transport, x.host, x.port) for x in config.sip.listen] == [
        ("udp", "127.0.0.1", 5060),
        ("tcp", "127.0.0.1", 5060),
    ]
    assert config.sip.domain == "localhost"
    assert (config.management.host, config.management.port) == ("127.0.0.1", 8080)
    assert config.delivery.validity == timedelta(hours=48)
    assert [format_duration(d) for d in config.delivery.retry] == ["5s", "30s", "2m", "10m", "1h"]
    assert config.secret_key_file == "gateway.key"
    assert config.log.level == "INFO"


def test_empty_section_gives_its_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "smpp:\nsip:\n"))
    assert config.smpp == SmppConfig()
    assert config.sip == SipConfig()


def test_numbers_given_as_yaml_ints(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        numbering: {country_code: 44, national_prefix: 0, international_prefix: 00}
    """,
    )
    numbering = load_config(path).numbering
    assert numbering == Numbering("44", "0", "00")
    # the loader keeps leading zeros instead of reading 011 as octal 9
    path = write(
        tmp_path, "numbering: {country_code: 1, national_prefix: 1, international_prefix: 011}\n"
    )
    assert load_config(path).numbering == Numbering("1", "1", "011")


def test_empty_national_prefix_and_case_insensitive_choices() -> None:
    config = parse_config(
        {
            "numbering": {"national_prefix": ""},
            "log": {"level": "debug"},
            "sip": {"listen": [{"transport": "UDP", "host": "::1", "port": 0}]},
        },
        "x.yaml",
    )
    assert config.numbering.national_prefix == ""
    assert config.log.level == "DEBUG"
    assert config.sip.listen == (SipListener("udp", "::1", 0),)


def test_port_zero_listeners_never_clash() -> None:
    config = parse_config({"smpp": {"listen": [{"host": "127.0.0.1", "port": 0}] * 2}}, "x")
    assert [x.port for x in config.smpp.listen] == [0, 0]


def test_database_urls() -> None:
    def url(text: str) -> Config:
        return parse_config({"database": text}, "x")

    assert url("sqlite://").database == "sqlite://"
    assert url("sqlite+pysqlite:///a.db").database == "sqlite+pysqlite:///a.db"
    assert url("postgresql://u@h/db").database == "postgresql+psycopg://u@h/db"
    config = url("postgresql+psycopg://user:s3cret@127.0.0.1:5432/test")
    assert config.database == "postgresql+psycopg://user:s3cret@127.0.0.1:5432/test"
    assert config.database_display == "postgresql+psycopg://user:***@127.0.0.1:5432/test"
    assert "s3cret" not in config.database_display
    assert url("sqlite:///gateway.db").database_display == "sqlite:///gateway.db"


def test_config_is_frozen() -> None:
    config = Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.env = "other"  # type: ignore[misc]


def test_checks_also_hold_when_built_in_code() -> None:
    with pytest.raises(ValueError, match=r"^port: must be 1-65535, got 70000$"):
        SmppListener("127.0.0.1", 70000)
    with pytest.raises(ValueError, match=r"^cert: is required when transport is tls$"):
        SipListener("tls", "127.0.0.1", 5061)


# --- errors, exact text ----------------------------------------------------------------------

F = "conf/gateway.yaml"
SIP2 = [{"transport": "udp", "host": "127.0.0.1", "port": 5060}]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"sip": {"listen": [*SIP2, {"transport": "tcp", "host": "127.0.0.1", "port": 70000}]}},
            f"{F}: sip.listen[1].port: must be 1-65535, got 70000",
        ),
        (
            {"management": {"port": -1}},
            f"{F}: management.port: must be 1-65535, got -1",
        ),
        (
            {"smpp": {"system_id": "X", "lisen": []}},
            f"{F}: smpp.lisen: unknown key; expected one of: system_id, listen, window, enquire_link, inactivity_timeout, bind_timeout, response_timeout, max_pdu, reassembly_timeout, failed_bind_limit, failed_bind_block, failed_bind_spread, bind_check_threads, bind_check_queue, max_pending_messages, refuse_unknown_addresses, max_unbound_per_address, max_unbound",
        ),
        (
            {"colour": "blue"},
            f"{F}: colour: unknown key; expected one of: env, database, numbering, smpp, sip,"
            " management, delivery, secret_key_file, retention, log, plugins",
        ),
        (
            {"source": "x"},
            f"{F}: source: unknown key; expected one of: env, database, numbering,"
            " smpp, sip, management, delivery, secret_key_file, retention, log, plugins",
        ),
        (
            {"management": {"port": "abc"}},
            f"{F}: management.port: expected an integer, got 'abc'",
        ),
        ({"management": {"port": True}}, f"{F}: management.port: expected an integer, got true"),
        ({"management": {"port": 80.5}}, f"{F}: management.port: expected an integer, got 80.5"),
        ({"management": {"port": None}}, f"{F}: management.port: expected an integer, got nothing"),
        ({"smpp": "GW"}, f"{F}: smpp: expected a mapping, got 'GW'"),
        ({"smpp": {"listen": {"host": "a"}}}, f"{F}: smpp.listen: expected a list, got a mapping"),
        ({"smpp": {"listen": ["x"]}}, f"{F}: smpp.listen[0]: expected a mapping, got 'x'"),
        ({"env": ["a"]}, f"{F}: env: expected a string, got a list"),
        (
            {"smpp": {"listen": [{"host": "127.0.0.1"}]}},
            f"{F}: smpp.listen[0].port: is required",
        ),
        (
            {"delivery": {"validity": "5 minutes"}},
            f"{F}: delivery.validity: not a duration: '5 minutes'; use 5s, 30s, 2m, 1h, 1d,"
            " a combination such as 1h30m, or whole seconds (300)",
        ),
        (
            {"delivery": {"retry": ["5s", 1.5]}},
            f"{F}: delivery.retry[1]: expected a duration, got 1.5; use 5s, 30s, 2m, 1h, 1d,"
            " a combination such as 1h30m, or whole seconds (300)",
        ),
        (
            {"delivery": {"retry": ["5s", 0]}},
            f"{F}: delivery.retry[1]: must be more than 0s, got 0s",
        ),
        ({"delivery": {"retry": []}}, f"{F}: delivery.retry: must list 1-32 waits, got 0"),
        (
            {"delivery": {"validity": "31d"}},
            f"{F}: delivery.validity: must be more than 0s and at most 30d, got 31d",
        ),
        (
            {"delivery": {"validity": 0}},
            f"{F}: delivery.validity: must be more than 0s and at most 30d, got 0s",
        ),
        (
            {"smpp": {"listen": [{"host": "127.0.0.1", "port": 3550, "tls": {"cert": "c.pem"}}]}},
            f"{F}: smpp.listen[0].tls.key: is required",
        ),
        (
            {
                "sip": {
                    "listen": [
                        {"transport": "tls", "host": "127.0.0.1", "port": 5061, "key": "k.pem"}
                    ]
                }
            },
            f"{F}: sip.listen[0].cert: is required when transport is tls",
        ),
        (
            {
                "sip": {
                    "listen": [
                        {"transport": "udp", "host": "127.0.0.1", "port": 5060, "cert": "c.pem"}
                    ]
                }
            },
            f"{F}: sip.listen[0].cert: is only allowed with transport tls, not udp",
        ),
        (
            {"sip": {"listen": [{"transport": "sctp", "host": "127.0.0.1", "port": 5060}]}},
            f"{F}: sip.listen[0].transport: must be one of udp, tcp, tls, got 'sctp'",
        ),
        (
            {
                "sip": {
                    "listen": [
                        *SIP2,
                        {"transport": "tcp", "host": "127.0.0.1", "port": 5060},
                        {"transport": "udp", "host": "127.0.0.1", "port": 5060},
                    ]
                }
            },
            f"{F}: sip.listen[2]: duplicate of entry [0]: both use UDP 127.0.0.1:5060",
        ),
        (
            {
                "sip": {
                    "listen": [
                        {"transport": "tcp", "host": "127.0.0.1", "port": 5060},
                        {
                            "transport": "tls",
                            "host": "127.0.0.1",
                            "port": 5060,
                            "cert": "c",
                            "key": "k",
                        },
                    ]
                }
            },
            f"{F}: sip.listen[1]: duplicate of entry [0]: both use TCP 127.0.0.1:5060",
        ),
        (
            {
                "smpp": {
                    "listen": [
                        {"host": "127.0.0.1", "port": 2775},
                        {"host": "127.0.0.1", "port": 2775, "tls": {"cert": "c", "key": "k"}},
                    ]
                }
            },
            f"{F}: smpp.listen[1]: duplicate of entry [0]: both use TCP 127.0.0.1:2775",
        ),
        (
            {"smpp": {"listen": [{"host": "bad host", "port": 2775}]}},
            f"{F}: smpp.listen[0].host: must be an IP address (IPv6 without brackets) or a"
            " hostname, got 'bad host'",
        ),
        (
            {"numbering": {"country_code": "999"}},
            f"{F}: numbering.country_code: must be a country calling code such as 964 or 44,"
            " got '999'",
        ),
        (
            {"numbering": {"country_code": "0964"}},
            f"{F}: numbering.country_code: must be a country calling code such as 964 or 44,"
            " got '0964'",
        ),
        (
            {"numbering": {"national_prefix": "O"}},
            f"{F}: numbering.national_prefix: must be 0-5 digits, got 'O'",
        ),
        (
            {"smpp": {"system_id": "GATEWAY-ENV1-LONG"}},
            f"{F}: smpp.system_id: must be 1-15 printable ASCII characters without spaces,"
            " got 'GATEWAY-ENV1-LONG' (17 characters)",
        ),
        (
            {"smpp": {"system_id": ""}},
            f"{F}: smpp.system_id: must be 1-15 printable ASCII characters without spaces,"
            " got '' (0 characters)",
        ),
        (
            {"database": "mysql://u@h/db"},
            f"{F}: database: unsupported database 'mysql'; use sqlite:///FILE or"
            " postgresql+psycopg://USER@HOST/DB",
        ),
        (
            {"database": "postgresql+psycopg2://u@h/db"},
            f"{F}: database: unsupported database 'postgresql+psycopg2'; use sqlite:///FILE or"
            " postgresql+psycopg://USER@HOST/DB",
        ),
        ({"database": "gateway.db"}, f"{F}: database: not a database URL: 'gateway.db'"),
        (
            {"env": "env 1"},
            f"{F}: env: must be 1-32 characters of A-Z a-z 0-9 _ -, got 'env 1'",
        ),
        ({"sip": {"domain": "-bad-"}}, f"{F}: sip.domain: must be a hostname, got '-bad-'"),
        (
            {"log": {"level": "TRACE"}},
            f"{F}: log.level: must be one of DEBUG, INFO, WARNING, ERROR, got 'TRACE'",
        ),
        ({"secret_key_file": ""}, f"{F}: secret_key_file: must not be empty"),
        (["env"], f"{F}: expected a mapping of settings, got a list"),
    ],
)
def test_error_messages(data: Any, message: str) -> None:
    assert error_of(data) == message


def test_error_carries_file_key_and_reason() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"management": {"port": 70000}}, "a.yaml")
    assert (caught.value.file, caught.value.key, caught.value.reason) == (
        "a.yaml",
        "management.port",
        "must be 1-65535, got 70000",
    )


def test_yaml_syntax_error_gives_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "env: env1\nsmpp:\n  listen: [\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == (
        f"{path}: YAML error at line 4, column 1:"
        " expected the node content, but found '<stream end>'"
    )


def test_yaml_duplicate_key_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "management:\n  port: 8080\n  port: 8081\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    reason = "YAML error at line 3, column 3: found duplicate key 'port'"
    assert str(caught.value) == f"{path}: {reason}"


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == f"{path}: file not found; give a path or set $GATEWAY_CONFIG"


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path)  # a directory
    assert str(caught.value).startswith(f"{tmp_path}: cannot read: ")


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"env: caf\xe9\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == f"{path}: not UTF-8 text (byte 8)"


@pytest.mark.parametrize(
    ("text", "got"), [("", "an empty file"), ("- a\n- b\n", "a list"), ("hello\n", "'hello'")]
)
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str, got: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    reason = f"expected a mapping of settings at the top level, got {got}"
    assert str(caught.value) == f"{path}: {reason}"


def test_error_key_path_from_file(tmp_path: Path) -> None:
    bad = "{transport: tcp, host: 127.0.0.1, port: 70000}"
    path = write(tmp_path, CONTRACT.replace("{transport: tcp, host: 127.0.0.1, port: 5060}", bad))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == f"{path}: sip.listen[1].port: must be 1-65535, got 70000"


# --- where the file comes from ---------------------------------------------------------------


def test_gateway_config_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "env: from-env\n", "other.yaml")
    monkeypatch.setenv("GATEWAY_CONFIG", str(path))
    config = load_config()
    assert (config.env, config.source) == ("from-env", str(path))
    # an explicit path wins over the variable
    explicit = write(tmp_path, "env: explicit\n", "explicit.yaml")
    assert load_config(explicit).env == "explicit"


def test_default_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GATEWAY_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "conf").mkdir()
    write(tmp_path / "conf", "env: default\n")
    config = load_config()
    assert (config.env, config.source) == ("default", DEFAULT_CONFIG_PATH)
    monkeypatch.setenv("GATEWAY_CONFIG", "")  # empty means unset
    assert load_config().env == "default"


@pytest.mark.parametrize("name", ["gateway.yaml", "env1.yaml", "env4.yaml"])
def test_shipped_examples_load(name: str) -> None:
    config = load_config(REPO / "conf" / name)
    assert config.source.endswith(name)


def test_env_pair_does_not_share_ports_or_stores() -> None:
    env1 = load_config(REPO / "conf" / "env1.yaml")
    env4 = load_config(REPO / "conf" / "env4.yaml")
    assert (env1.env, env4.env) == ("env1", "env4")
    assert env1.database == "sqlite:///env1.db"
    assert env4.database == "postgresql+psycopg://postgres@127.0.0.1:5432/test"

    def ports(config: Config) -> set[tuple[str, int]]:
        tcp = {("tcp", x.port) for x in config.smpp.listen}
        tcp |= {("tcp", config.management.port)}
        sip = {("udp" if x.transport == "udp" else "tcp", x.port) for x in config.sip.listen}
        return tcp | sip

    assert not ports(env1) & ports(env4)
    assert env1.secret_key_file != env4.secret_key_file


# --- durations -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("5s", 5),
        ("30s", 30),
        ("2m", 120),
        ("10m", 600),
        ("1h", 3600),
        ("48h", 172800),
        ("1d", 86400),
        ("1h30m", 5400),
        ("1d2h3m4s", 93784),
        ("300", 300),
        (" 5s ", 5),
        (7, 7),
    ],
)
def test_parse_duration(text: str | int, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["5x", "1m1h", "-5s", "1.5h", "5 s", "h", "5S", "1:30"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_duration(text)
    assert str(caught.value) == (
        f"not a duration: {text!r}; use 5s, 30s, 2m, 1h, 1d, a combination such as 1h30m,"
        " or whole seconds (300)"
    )


def test_parse_duration_refuses_empty_and_huge() -> None:
    with pytest.raises(ValueError, match=r"^not a duration: ''"):
        parse_duration("")
    with pytest.raises(ValueError, match=r"^duration too long: '9999999999d'$"):
        parse_duration("9999999999d")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (5, "5s"),
        (120, "2m"),
        (5400, "1h30m"),
        (3661, "1h1m1s"),
        (86400, "1d"),
        (172800, "2d"),
        (90000, "25h"),
    ],
)
def test_format_duration(seconds: int, text: str) -> None:
    assert format_duration(timedelta(seconds=seconds)) == text


def test_format_duration_refuses_fractions_and_negatives() -> None:
    with pytest.raises(ValueError, match="whole, non-negative seconds"):
        format_duration(timedelta(milliseconds=1500))
    with pytest.raises(ValueError, match="whole, non-negative seconds"):
        format_duration(timedelta(seconds=-1))


@given(st.integers(min_value=0, max_value=10**9))
def test_duration_round_trip(seconds: int) -> None:
    value = timedelta(seconds=seconds)
    assert parse_duration(format_duration(value)) == value


# --- the generated reference -----------------------------------------------------------------


def _all_keys(cls: type, prefix: str = "") -> set[str]:
    """Every YAML key below ``cls``, walked independently of iter_settings."""
    keys = set()
    hints = get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if field.name == "source":
            continue
        key = prefix + field.name
        keys.add(key)
        hint = hints[field.name]
        inner = [arg for arg in get_args(hint) if dataclasses.is_dataclass(arg)]
        if dataclasses.is_dataclass(hint):
            keys |= _all_keys(hint, key + ".")
        elif inner:
            keys |= _all_keys(inner[0], key + ("[]." if get_origin(hint) is tuple else "."))
    return keys


def test_iter_settings_covers_every_field_with_a_doc() -> None:
    rows = list(iter_settings())
    keys = [key for key, _default, _doc in rows]
    assert len(keys) == len(set(keys))
    assert set(keys) == _all_keys(Config)
    assert all(doc.strip() for _key, _default, doc in rows)
    assert "source" not in keys
    for cls in (
        Config,
        Numbering,
        SmppConfig,
        SmppListener,
        TlsFiles,
        SipConfig,
        SipListener,
        DeliveryConfig,
    ):
        assert all(f.metadata["doc"].strip() for f in dataclasses.fields(cls))


def test_iter_settings_defaults() -> None:
    rows = {key: default for key, default, _doc in iter_settings()}
    assert rows["env"] == "gateway"
    assert rows["smpp"] == ""
    assert rows["sip.listen[].port"] == "(required)"
    assert rows["sip.listen[].cert"] == "(none)"
    assert rows["smpp.listen[].tls"] == "(none)"
    assert rows["smpp.listen"] == "[{host: 127.0.0.1, port: 2775}]"
    assert rows["delivery.validity"] == "2d"
    assert rows["delivery.retry"] == "[5s, 30s, 2m, 10m, 1h]"
    assert rows["management.port"] == "8080"
    assert rows["log.level"] == "INFO"
