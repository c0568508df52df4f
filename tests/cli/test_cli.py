"""The CLI shell: help reads well, user errors print one line and exit non-zero, --debug shows the traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from lmforge.cli import build_parser, main
from lmforge.errors import LmforgeError


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lmforge", *args], capture_output=True, text=True, timeout=120)


def test_help_lists_commands():
    res = run_cli("--help")
    assert res.returncode == 0
    assert "usage: lmforge" in res.stdout
    sub = build_parser()._subparsers._group_actions[0]
    for name in sub.choices:
        assert name in res.stdout


def test_every_command_has_help():
    sub = build_parser()._subparsers._group_actions[0]
    for name, parser in sub.choices.items():
        text = parser.format_help()
        assert f"lmforge {name}" in text


def test_user_error_is_one_message_without_traceback(monkeypatch, capsys):
    def boom(args):
        raise LmforgeError("data.txt: expected UTF-8 text")

    monkeypatch.setattr("lmforge.cli.build_parser", lambda: _with_command(_real_build_parser(), boom))
    assert main(["boom"]) == 1
    err = capsys.readouterr().err
    assert err.strip() == "lmforge: error: data.txt: expected UTF-8 text"
    with pytest.raises(LmforgeError):
        main(["--debug", "boom"])


_real_build_parser = build_parser


def _with_command(parser, func):
    sub = parser._subparsers._group_actions[0]
    p = sub.add_parser("boom", help="fails")
    p.set_defaults(func=func)
    return parser


def test_unknown_command_exits_nonzero():
    res = run_cli("no-such-command")
    assert res.returncode != 0
    assert "Traceback" not in res.stderr
