"""The command line's shape: its explicit list of command modules and the commands the rules and users rely on."""

from __future__ import annotations

import argparse
from pathlib import Path

import diffact
from diffact.cli import COMMAND_MODULES, build_parser

PACKAGE = Path(diffact.__file__).parent
# `diffact --help`'s commands when the list became explicit (issue #18); more may come, none may go.
KNOWN_COMMANDS = Path(__file__).with_name("cli_commands.txt")


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_cli_keeps_every_known_command():
    known = KNOWN_COMMANDS.read_text().split()
    missing = sorted(set(known) - set(subcommands(build_parser())))
    assert known == sorted(known), f"{KNOWN_COMMANDS.name} must stay sorted"
    assert not missing, f"commands gone from `diffact --help`: {missing}"


def test_cli_names_every_command_module():
    found = {".".join(("diffact", *path.relative_to(PACKAGE).with_suffix("").parts))
             for path in PACKAGE.rglob("*commands.py")}
    assert found == set(COMMAND_MODULES), "every *commands.py must be listed in cli.COMMAND_MODULES, and only those"
    assert len(COMMAND_MODULES) == len(set(COMMAND_MODULES))


def test_one_command_module_per_package():
    packages = [name.rsplit(".", 1)[0] for name in COMMAND_MODULES]
    assert len(packages) == len(set(packages))
    assert all(name.endswith(".commands") or name == "diffact.commands" for name in COMMAND_MODULES)
