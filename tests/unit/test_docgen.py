# Generated documentation is what the code says: regenerate with `python3 -m gateway.docgen`.
from __future__ import annotations

import pytest

from gateway.config import iter_settings
from gateway.docgen import GENERATED, ROOT
from gateway.lifecycle import TABLE


@pytest.mark.parametrize("name", sorted(GENERATED))
def test_committed_file_is_what_the_code_generates(name):
    committed = (ROOT / name).read_text(encoding="utf-8")
    assert committed == GENERATED[name](), f"{name} is stale: run python3 -m gateway.docgen"


def test_the_reference_has_every_key_and_the_diagram_every_transition():
    reference = GENERATED["docs/configuration.md"]()
    for key, _default, _doc in iter_settings():
        assert f"| `{key}` |" in reference
    diagram = GENERATED["docs/lifecycle.md"]()
    for (state, event), target in TABLE.items():
        assert f"| `{state.value}` | {event.value} | `{target.value}` |" in diagram
