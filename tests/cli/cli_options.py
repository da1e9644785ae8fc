"""Every command's options as data: what ``python -m cxrxai`` accepts, for comparing the
command line before and after a change of its code (tests/cli/test_options.py). Run this
file to print the record."""

from __future__ import annotations

import argparse
from typing import Any


def _action(action: argparse.Action, group: str) -> dict[str, Any]:
    kind = type(action).__name__
    return {
        "flags": list(action.option_strings) or [action.dest],
        "dest": action.dest,
        "kind": kind,
        "default": repr(action.default),
        "type": getattr(action.type, "__name__", repr(action.type)),
        "choices": list(action.choices) if action.choices and kind != "_SubParsersAction" else None,
        "nargs": action.nargs,
        "required": action.required,
        "help": action.help,
        "metavar": action.metavar,
        "group": group,
    }


def option_table(parser: argparse.ArgumentParser) -> dict[str, Any]:
    """{"": the top-level parser, command: its description, help and options}."""
    out: dict[str, Any] = {}

    def walk(name: str, current: argparse.ArgumentParser, help_text: str | None) -> None:
        groups = {id(a): g.title for g in current._action_groups for a in g._group_actions}
        entry = {
            "prog": current.prog,
            "description": current.description,
            "help": help_text,
            "options": [],
        }
        for action in current._actions:
            if isinstance(action, argparse._SubParsersAction):
                helps = {c.dest: c.help for c in action._choices_actions}
                entry["commands"] = list(action.choices)
                entry["subparsers"] = {
                    "dest": action.dest, "required": action.required
                }  # fmt: skip
                for command, sub in action.choices.items():
                    walk(command, sub, helps.get(command))
            else:
                entry["options"].append(_action(action, groups.get(id(action), "")))
        out[name] = entry

    walk("", parser, None)
    return out


if __name__ == "__main__":
    import json

    from cxrxai.cli import build_parser

    print(json.dumps(option_table(build_parser()), indent=1, sort_keys=True))
