"""`python manage.py omoi <subcommand>`: Omoi from the command line.

Each subcommand lives in its own module of specs/cli/ with a `register(subparsers)` function that
adds its parser and sets `handler=handle(command, options)` as a default; this file only wires
them together, so a new subcommand is a new module.
"""

import importlib
import pkgutil

from django.core.management.base import BaseCommand, CommandParser

import specs.cli


def subcommand_modules():
    for module in sorted(pkgutil.iter_modules(specs.cli.__path__), key=lambda m: m.name):
        if not module.name.startswith("_"):
            yield importlib.import_module(f"specs.cli.{module.name}")


class Command(BaseCommand):
    help = "Omoi from the command line: `launch` an idea and follow its planning, run the `demo`."

    def add_arguments(self, parser: CommandParser) -> None:
        subparsers = parser.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", required=True)
        for module in subcommand_modules():
            register = getattr(module, "register", None)
            if register is not None:
                register(subparsers)

    def handle(self, *args, **options) -> None:
        options["handler"](self, options)
