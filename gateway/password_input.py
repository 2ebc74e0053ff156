# Where gatewayctl reads a password: --password, --password-file, --password-stdin or a prompt.
"""A password on the command line (``--password``) is visible to every local user in ``ps``
and lands in shell histories, so every command that takes one also accepts
``--password-file PATH`` (the file's first line) and ``--password-stdin`` (the first line of
standard input, for pipes and secret managers), and prompts (hidden, twice) when none is
given. Exactly one source is allowed; a second one is refused in one line.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, BinaryIO

import click

from gateway.errors import InvalidInput

MAX_BYTES = 4096  # far above any password the gateway accepts (SIP: 128 characters)
SOURCES = "--password, --password-file or --password-stdin"


def _first_line(data: bytes, field: str, where: str) -> str:
    if len(data) > MAX_BYTES:
        raise InvalidInput(field, f"{where} is longer than {MAX_BYTES} bytes: not a password")
    line = data.split(b"\n", 1)[0].removesuffix(b"\r")
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput(field, f"{where} is not UTF-8 text") from None
    if not text:
        raise InvalidInput(field, f"{where} is empty: the password is its first line")
    return text


def from_file(path: str) -> str:
    """The first line of ``path`` (its line ending removed; spaces kept)."""
    try:
        with open(path, "rb") as source:
            data = source.read(MAX_BYTES + 1)
    except OSError as error:
        raise InvalidInput("--password-file", f"cannot read {path}: {error.strerror}") from None
    return _first_line(data, "--password-file", path)


def from_stdin(stream: BinaryIO | None = None) -> str:
    """The first line of standard input."""
    stream = stream if stream is not None else sys.stdin.buffer
    data = stream.readline(MAX_BYTES + 1)
    return _first_line(data, "--password-stdin", "standard input")


def resolve(
    password: str | None,
    password_file: str | None,
    password_stdin: bool,
    *,
    prompt: bool | None = None,
) -> str | None:
    """The password from the one source given, else asked for (hidden, twice).

    ``prompt`` None (``add``, ``passwd``): a password is needed, so it is asked for when no
    source is given. True/False (``set``, whose password is optional): asked for only when
    ``--password-prompt`` was given; no source at all is None (keep the stored one)."""
    given = [
        name
        for name, value in (
            ("--password", password is not None),
            ("--password-file", password_file is not None),
            ("--password-stdin", password_stdin),
            ("--password-prompt", bool(prompt)),
        )
        if value
    ]
    if len(given) > 1:
        raise InvalidInput(
            given[1], f"give the password once, by one of {SOURCES} (got {' and '.join(given)})"
        )
    if password is not None:
        return password
    if password_file is not None:
        return from_file(password_file)
    if password_stdin:
        return from_stdin()
    if prompt is False:
        return None
    return str(click.prompt("Password", hide_input=True, confirmation_prompt=True))


def password_options(what: str = "Password") -> Callable[[Callable[..., Any]], Any]:
    """``--password`` / ``--password-file`` / ``--password-stdin`` on a click command; the
    command receives the resolved ``password``."""

    def decorate(command: Callable[..., Any]) -> Any:
        @functools.wraps(command)
        def wrapper(
            *args: Any,
            password: str | None,
            password_file: str | None,
            password_stdin: bool,
            **kwargs: Any,
        ) -> Any:
            chosen = resolve(password, password_file, password_stdin)
            return command(*args, password=chosen, **kwargs)

        return _with_options(wrapper, what)

    return decorate


def optional_password_options(what: str = "New password") -> Callable[[Callable[..., Any]], Any]:
    """The same sources for a command where the password is optional (``set``): the command
    receives ``password`` None unless one of --password, --password-file, --password-stdin
    or --password-prompt (asked for, hidden, twice) was given."""

    def decorate(command: Callable[..., Any]) -> Any:
        @functools.wraps(command)
        def wrapper(
            *args: Any,
            password: str | None,
            password_file: str | None,
            password_stdin: bool,
            password_prompt: bool,
            **kwargs: Any,
        ) -> Any:
            chosen = resolve(password, password_file, password_stdin, prompt=password_prompt)
            return command(*args, password=chosen, **kwargs)

        wrapper = click.option(
            "--password-prompt",
            is_flag=True,
            help=f"Ask for the {what.lower()} (hidden, twice).",
        )(wrapper)
        return _with_options(wrapper, what, "unchanged if no source is given")

    return decorate


def _with_options(wrapper: Any, what: str, absent: str = "asked for if no source is given") -> Any:
    """``wrapper`` with the --password, --password-file and --password-stdin options."""
    options = (
        click.option(
            "--password",
            default=None,
            help=f"{what} (visible to local users in ps and kept in shell history:"
            f" prefer --password-file or --password-stdin; {absent}).",
        ),
        click.option(
            "--password-file",
            metavar="PATH",
            default=None,
            help=f"Read the {what.lower()} from the first line of this file.",
        ),
        click.option(
            "--password-stdin",
            is_flag=True,
            help=f"Read the {what.lower()} from the first line of standard input.",
        ),
    )
    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper
