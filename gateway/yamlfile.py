# Reading operator-written YAML (config and provisioning files) safely and literally.
"""A bounded, strict YAML reader shared by the config loader and ``gatewayctl apply``.

Strict: duplicate keys are errors. Literal: ``011`` or ``0111222333`` stay text (YAML 1.1
would read octal numbers, turning an international prefix or a national DID into something
else), ``1:30`` stays text, and, for provisioning files, ``0.01`` becomes ``Decimal("0.01")``
exactly as written rather than a binary float.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import yaml

from gateway.errors import GatewayError

MAX_FILE_BYTES = 16 << 20


class YamlFileError(GatewayError):
    """A file that cannot be read as YAML: answered as ``file: reason``."""

    def __init__(self, source: str, reason: str) -> None:
        self.source = source
        self.reason = reason
        super().__init__(f"{source}: {reason}")


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys and reads 00, 011 or 1:30 as text."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[str] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag.endswith(":merge"):
                continue
            if isinstance(key_node, yaml.ScalarNode):
                if key_node.value in seen:
                    raise yaml.constructor.ConstructorError(
                        "while reading a mapping",
                        node.start_mark,
                        f"found duplicate key {key_node.value!r}",
                        key_node.start_mark,
                    )
                seen.add(key_node.value)
        return super().construct_mapping(node, deep=deep)


_INT_TAG = "tag:yaml.org,2002:int"
_Loader.yaml_implicit_resolvers = {
    first: [(tag, regex) for tag, regex in resolvers if tag != _INT_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    _INT_TAG, re.compile(r"^[-+]?(?:0|[1-9][0-9]*)$"), list("-+0123456789")
)


class _DecimalLoader(_Loader):
    """Also reads decimal numbers as exact ``Decimal`` values (money in provisioning files)."""

    def construct_yaml_float(self, node: yaml.ScalarNode) -> Any:
        text = str(self.construct_scalar(node)).replace("_", "")
        if text.lower().lstrip("+-") in {".inf", ".nan"}:
            return text  # left as text, so the field's own check refuses it
        return Decimal(text)


_DecimalLoader.add_constructor("tag:yaml.org,2002:float", _DecimalLoader.construct_yaml_float)


def read_yaml(source: str, *, max_bytes: int = MAX_FILE_BYTES, decimals: bool = False) -> Any:
    """The document in file ``source``; YamlFileError says why when it cannot be had."""
    try:
        with open(source, "rb") as file:
            raw = file.read(max_bytes + 1)
    except FileNotFoundError:
        raise YamlFileError(source, "file not found") from None
    except OSError as exc:
        raise YamlFileError(source, f"cannot read: {exc.strerror or exc}") from None
    if len(raw) > max_bytes:
        raise YamlFileError(source, f"larger than {max_bytes} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise YamlFileError(source, f"not UTF-8 text (byte {exc.start})") from None
    loader = (_DecimalLoader if decimals else _Loader)(text)
    try:
        return loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise YamlFileError(source, f"YAML error{where}: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise YamlFileError(source, f"YAML error: {exc}") from None
    except RecursionError:  # [[[[...]]]] a hundred thousand deep
        raise YamlFileError(source, "YAML error: nested too deeply") from None
    finally:
        loader.dispose()
