"""The typer application. Command groups live in sibling modules, each with ``register(app)``."""

from __future__ import annotations

import importlib
import os
import sys

import typer
from rich.markup import escape

from keepfit.cli._common import INTERNAL_ERROR, INTERRUPTED, exit_codes_epilog
from keepfit.cli._console import err_console
from keepfit.errors import KeepfitError

# Typer >= 0.20 carries its own copy of click (``typer._click``); older ones use click itself. The usage errors
# come from whichever copy built the app, so the classes are taken from where typer's BadParameter lives:
# ``import click`` here would name classes the app never raises, and every typo would look like a bug.
_click_errors = importlib.import_module(typer.BadParameter.__module__)

app = typer.Typer(
    name="keepfit",
    help="Fine-tune models and keep them current: clean data, honest validation, regression-safe updates.",
    epilog=exit_codes_epilog(),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Each module defines ``register(app: typer.Typer) -> None``. Order is the order of --help.
COMMAND_MODULES = [
    "init", "data", "fit", "evaluate", "predict", "registry", "update", "tune", "serve", "feedback", "monitor",
    "export", "adapt", "federate", "demo",
]

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
    """Entry point: run the app and turn the outcome into an exit code (see ``keepfit --help``).

    A KeepfitError becomes one clear message and its ``exit_code``; a usage mistake shows the usage line,
    the problem and the --help hint (exit 2); anything else is a bug (exit 70, traceback with --debug).
    """
    debug = "--debug" in sys.argv or os.environ.get("KEEPFIT_DEBUG") == "1"
    try:
        code = app(standalone_mode=False, prog_name="keepfit")
    except KeepfitError as err:
        if debug:
            raise
        err_console.print(f"[bold red]{type(err).__name__}:[/] {escape(str(err))}", markup=True)
        sys.exit(err.exit_code)
    except _click_errors.ClickException as err:  # a usage mistake: usage line, problem, hint; exit 2
        err.show()
        sys.exit(err.exit_code)
    except typer.Abort:
        err_console.print("Aborted.")
        sys.exit(INTERRUPTED)
    except KeyboardInterrupt:
        err_console.print("Interrupted; nothing half-written was kept.")
        sys.exit(INTERRUPTED)
    except Exception as err:
        if debug:
            raise
        err_console.print(
            f"[bold red]Internal error ({type(err).__name__}):[/] {escape(str(err))}\n"
            "This is a bug in keepfit, not in your input. Re-run with --debug for the traceback and report it.",
            markup=True,
        )
        sys.exit(INTERNAL_ERROR)
    # Without standalone mode, click returns the code of `typer.Exit(code)` (and 0 after --help) instead of
    # exiting.
    sys.exit(code if isinstance(code, int) else 0)
