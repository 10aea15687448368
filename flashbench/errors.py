"""Errors in one line: how a failed unit, a rejected setting or a bad option names what went wrong."""

from __future__ import annotations


def one_line(err: BaseException) -> str:
    """``Type: first line of the message`` (messages of wrapped libraries can run to pages)."""
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"
