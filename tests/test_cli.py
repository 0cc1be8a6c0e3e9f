"""The command line's shape: its explicit list of command modules and the commands the rules and users rely on."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

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


def threads_options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if a.dest == "threads"]


def test_every_command_takes_the_one_threads_option():
    helps = set()
    for name, command in subcommands(build_parser()).items():
        option = next((a for a in threads_options(command) if "--threads" in a.option_strings), None)
        assert option is not None, f"{name} has no --threads"
        helps.add(option.help)
    assert len(helps) == 1, "one help text for --threads"


def test_threads_default_is_torchs_unless_a_command_pins_it():
    from diffact.models.train import DemoTrainSettings

    pinned = {"build-demo-model": DemoTrainSettings().num_threads, "demo-heldout-loss": DemoTrainSettings().num_threads,
              "train-control-unet": 1}
    for name, command in subcommands(build_parser()).items():
        assert command.get_default("threads") == pinned.get(name), name


def test_threads_is_applied_around_the_command_and_restored(monkeypatch, tmp_path, cli):
    import torch

    import diffact.commands

    seen = []
    monkeypatch.setattr(diffact.commands, "handle_usage_report", lambda args: seen.append(torch.get_num_threads()))
    before = torch.get_num_threads()
    assert cli("usage-report", "--logs", tmp_path, "--threads", before + 1).returncode == 0
    assert seen == [before + 1]
    assert torch.get_num_threads() == before


def test_torch_threads_is_an_alias_of_threads():
    args = build_parser().parse_args(["extract-merge", "--model", "m", "--family", "sd15", "--layers", "x",
                                      "--dataset-kind", "folder", "--dataset-root", "r", "--out", "o",
                                      "--torch-threads", "2"])
    assert args.threads == 2


def test_bad_threads_is_one_line_naming_the_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["scarce-compare", "--simple", "a", "--complex", "b", "--out", "c", "--threads", "0"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error == "diffact scarce-compare: error: argument --threads: must be ≥ 1, got 0"


def protocol_defaults() -> list[tuple[str, str, type, str]]:
    """(command, option dest, settings dataclass, field) of every option that sets a settings field."""
    from diffact.data.demo_ade import DemoAdeConfig
    from diffact.data.demo_seg import DemoSegConfig
    from diffact.extract.pipeline import ExtractionSettings
    from diffact.models.control_unet import ControlConfig
    from diffact.models.train import DemoTrainSettings
    from diffact.tasks.correspondence.aggregation import AggregationTrainSettings
    from diffact.tasks.scarce.ensemble import EnsembleTrainSettings
    from diffact.tasks.scarce.pipeline import ScarceConfig

    def same(names):
        return [(name, name) for name in names]

    groups = [
        (["scarce", "scarce-screen"], ScarceConfig,
         same(["splits", "seed", "size", "pixel_rate", "buffer_mb", "upsample"]) + [("absent_classes", "absent")]),
        (["scarce", "scarce-screen"], EnsembleTrainSettings,
         [("models", "members"), ("epochs", "max_epochs")] + same(["batch_size", "lr", "device"])),
        (["corr-train"], AggregationTrainSettings,
         same(["epochs", "pairs_per_epoch", "eval_every", "lr", "weight_decay", "seed", "feature_size", "eval_size"])),
        (["corr-evaluate"], AggregationTrainSettings, same(["feature_size", "eval_size"])),
        (["build-demo-model"], DemoTrainSettings,
         same(["image_size", "batch_size", "vae_steps", "unet_steps", "lr", "lr_schedule", "warmup_steps", "seed",
               "prompt"])
         + [("threads", "num_threads")]),
        (["demo-heldout-loss"], DemoTrainSettings, same(["image_size", "seed"])),
        (["extract", "extract-merge", "noise-share"], ExtractionSettings,
         same(["t", "prompt", "image_size", "noise_seed", "ensemble", "vae_mode", "dtype", "resize", "inversion",
               "inversion_steps"])),
        (["control-features"], ExtractionSettings, same(["t"])),
        (["make-demo-seg"], DemoSegConfig, same(["seed", "size"]) + [("train", "n_train"), ("test", "n_test")]),
        (["make-demo-ade"], DemoAdeConfig, same(["seed", "size"]) + [("train", "n_train"), ("val", "n_val")]),
        (["train-control-unet"], ControlConfig, same(["image_size", "steps", "seed"])),
    ]
    return [(command, dest, settings, name) for commands, settings, pairs in groups for command in commands
            for dest, name in pairs]


def test_argparse_defaults_are_the_dataclass_defaults():
    from diffact.utils.args import default_of

    commands = subcommands(build_parser())
    differ = [f"{command} {dest}: {commands[command].get_default(dest)!r} vs {settings.__name__}.{name} "
              f"{default_of(settings, name)!r}" for command, dest, settings, name in protocol_defaults()
              if commands[command].get_default(dest) != default_of(settings, name)]
    assert not differ


def changed(value):
    return value + "-changed" if isinstance(value, str) else value * 2 + 1


def test_argparse_defaults_follow_the_dataclasses(monkeypatch):
    """The number is written once: change a dataclass's default and the option's default changes with it."""
    import dataclasses

    fields = {(settings, name) for _, _, settings, name in protocol_defaults()}
    for settings, name in fields:
        field = next(f for f in dataclasses.fields(settings) if f.name == name)
        monkeypatch.setattr(field, "default", changed(field.default))
    from diffact.utils.args import default_of

    commands = subcommands(build_parser())
    stale = [f"{command} {dest}" for command, dest, settings, name in protocol_defaults()
             if commands[command].get_default(dest) != default_of(settings, name)]
    assert not stale, "options that repeat their dataclass default instead of reading it"
