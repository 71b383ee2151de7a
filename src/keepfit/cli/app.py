"""The typer application. Command groups live in sibling modules, each with ``register(app)``."""

from __future__ import annotations

import importlib
import os
import sys

import typer

from keepfit.cli._console import err_console
from keepfit.errors import KeepfitError

app = typer.Typer(
    name="keepfit",
    help="Fine-tune models and keep them current: clean data, honest validation, regression-safe updates.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Each module defines ``register(app: typer.Typer) -> None``. Order is the order of --help.
COMMAND_MODULES = ["init", "data", "fit", "evaluate", "predict", "registry", "update", "demo"]

_state = {"debug": False}


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks for errors.")) -> None:
    _state["debug"] = debug or os.environ.get("KEEPFIT_DEBUG") == "1"


def _register_all() -> None:
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"keepfit.cli.{name}")
        except ModuleNotFoundError as err:
            if err.name == f"keepfit.cli.{name}":
                continue  # that stage has no commands yet
            raise
        module.register(app)


_register_all()


def main() -> None:
    """Entry point: run the app; a KeepfitError becomes one clear message and a non-zero exit."""
    debug = "--debug" in sys.argv or os.environ.get("KEEPFIT_DEBUG") == "1"
    try:
        app(standalone_mode=False)
    except KeepfitError as err:
        if debug:
            raise
        err_console.print(f"[bold red]{type(err).__name__}:[/] {err}", markup=True)
        sys.exit(err.exit_code)
    except typer.Abort:
        err_console.print("Aborted.")
        sys.exit(130)
    except KeyboardInterrupt:
        err_console.print("Interrupted; nothing half-written was kept.")
        sys.exit(130)
    except Exception as err:  # a click usage error, or a bug
        import click

        if isinstance(err, click.exceptions.Exit):
            sys.exit(err.exit_code)
        if isinstance(err, click.ClickException):
            err.show()
            sys.exit(err.exit_code)
        if debug:
            raise
        err_console.print(
            f"[bold red]Internal error ({type(err).__name__}):[/] {err}\n"
            "This is a bug in keepfit, not in your input. Re-run with --debug for the traceback and report it.",
            markup=True,
        )
        sys.exit(70)
