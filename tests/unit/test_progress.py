# Tests of gateway/progress.py: a bar on a terminal, nothing elsewhere.
from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from gateway.progress import task

SITE = Path(__file__).resolve().parents[2] / "conf" / "site.example.yaml"


def test_nothing_is_drawn_off_a_terminal():
    out = io.StringIO()
    with task("Settling 2026-11", total=3, console=Console(file=out)) as shown:
        assert not shown.shown
        shown.note("TATA: grouping")
        shown.advance()
    assert out.getvalue() == ""


def test_a_terminal_sees_the_task_and_what_it_does():
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120)
    with task("Settling 2026-11", total=2, console=console) as shown:
        assert shown.shown
        shown.note("TATA: grouping and rating")
        shown.advance()
        console.file.flush()
        shown._bar.refresh()  # the bar draws on its own timer; draw now for the test
        drawn = out.getvalue()
    assert "Settling 2026-11" in drawn and "1/2" in drawn and "TATA: grouping and rating" in drawn


def test_gatewayctl_shows_long_operations_on_a_terminal_only(ctl, monkeypatch):
    """settlement run and apply draw on standard error when it is a terminal (here forced,
    as FORCE_COLOR does), and leave standard output as it is."""
    ctl.ok("carrier", "add", "TATA", "--system-id", "TATA", "--password", "tata1234",
           "--allow-ip", "127.0.0.1")  # fmt: skip
    plain = ctl.ok("settlement", "run", "--month", "2026-11")
    assert "Settling" not in plain.stderr and "TATA" in plain.stdout
    monkeypatch.setenv("FORCE_COLOR", "1")
    shown = ctl.ok("settlement", "run", "--month", "2026-11")
    assert "Settling 2026-11" in shown.stderr and "Settling" not in shown.stdout
    applied = ctl.ok("apply", "-f", str(SITE), "--dry-run")
    assert "Applying" in applied.stderr
