"""Entry point of the ``xspecies`` command: one sub-command per module in :data:`COMMANDS`.

Exit status: 0 on success, 2 on any error (one line on stderr; ``--debug`` adds the traceback), 130 when
interrupted by Ctrl-C (SIGINT) and 143 when terminated (SIGTERM). The sub-command modules import the
heavy packages (scanpy, torch) only when they run, so ``--help`` and ``--version`` answer at once.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import traceback
from contextlib import contextmanager

#: Modules of :mod:`xspecies.cli` that each provide ``register(subparsers)``;
#: ``register`` adds a sub-parser and sets its ``func`` default to a callable taking the parsed args.
COMMANDS: tuple[str, ...] = ("demo", "align", "scice")

#: Exit status of a command that failed (bad input, failed check, any error).
EXIT_ERROR = 2
#: Exit status after Ctrl-C (128 + SIGINT) and after SIGTERM (128 + SIGTERM).
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143


class CLIError(Exception):
    """A user error of the command line: reported as one line on stderr with exit status 2."""


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that partial outputs are cleaned up."""


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are :class:`CLIError` (one line, exit status 2)."""

    def error(self, message: str):
        raise CLIError(f"{message} (see {self.prog} --help)")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("xspecies")
    except PackageNotFoundError:  # a source tree that is not installed
        return "unknown (not installed)"


def add_debug_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--debug`` (show the traceback of an error) to a parser.

    Parameters
    ----------
    parser
        A sub-command parser.
    """
    parser.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show the traceback of an error"
    )


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every sub-command registered.

    Returns
    -------
    argparse.ArgumentParser
        The top-level ``xspecies`` parser.
    """
    parser = _Parser(
        prog="xspecies",
        description="Cross-species single-cell alignment and clustering-consistency evaluation.",
        epilog="Exit status: 0 success, 2 error (one line on stderr), 130 Ctrl-C, 143 terminated.",
    )
    parser.add_argument("--version", action="version", version=f"xspecies {_version()}")
    add_debug_argument(parser)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS:
        importlib.import_module(f"xspecies.cli.{name}").register(subparsers)
    return parser


def _one_line(exc: BaseException) -> str:
    message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
    message = " ".join(str(message).split()) or type(exc).__name__
    if isinstance(exc, CLIError | ValueError | KeyError | OSError):
        return message
    return f"{type(exc).__name__}: {message} (run with --debug for the traceback)"


@contextmanager
def _signals_as_interrupts():
    """Turn SIGINT and SIGTERM into exceptions while the command runs, so ``finally`` blocks clean up.

    Yields the list of signals received: a library may turn the exception raised inside it into another
    one (numpy reports a ``KeyboardInterrupt`` inside some comparisons as a ``TypeError``), so the exit
    status follows the signal, not the exception. A SIGINT that the process inherited as ignored (a
    background command of a shell without job control) stays ignored.
    """
    received: list[int] = []

    def handler(signum, frame):
        received.append(signum)
        raise _Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()

    previous = {}
    try:
        for signum in (signal.SIGINT, signal.SIGTERM):
            if signal.getsignal(signum) is not signal.SIG_IGN:
                previous[signum] = signal.signal(signum, handler)
    except ValueError:  # not the main thread: keep the defaults
        yield received
        return
    try:
        yield received
    finally:
        for signum, action in previous.items():
            signal.signal(signum, action)


def _stopped(command: str, signum: int) -> int:
    """Report a command stopped by ``signum`` (nothing written) and return its exit status."""
    if signum == signal.SIGTERM:
        print(f"{command}: terminated; no output was written or replaced", file=sys.stderr)
        return EXIT_TERMINATED
    print(f"{command}: interrupted; no output was written or replaced", file=sys.stderr)
    return EXIT_INTERRUPTED


def main(argv: list[str] | None = None) -> int:
    """Run the ``xspecies`` command line.

    Parameters
    ----------
    argv
        Arguments without the program name; defaults to :data:`sys.argv`.

    Returns
    -------
    int
        The process exit code: 0 success, 2 error, 130 interrupted, 143 terminated.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv
    command = "xspecies"
    received: list[int] = []
    try:
        with _signals_as_interrupts() as received:
            parser = build_parser()
            args = parser.parse_args(argv)
            if getattr(args, "func", None) is None:
                raise CLIError("choose a command: " + ", ".join(COMMANDS) + " (see xspecies --help)")
            command = f"xspecies {args.command}"
            return int(args.func(args) or 0)
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM raised as _Terminated
        return _stopped(command, signal.SIGTERM if isinstance(exc, _Terminated) else signal.SIGINT)
    except Exception as exc:  # noqa: BLE001 - every error of a command ends as one line
        if received:  # a signal surfaced as another exception
            return _stopped(command, received[0])
        if debug:
            traceback.print_exc()
        print(f"{command}: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":  # python -m xspecies.cli.main: run the module the sub-commands import
    from xspecies.cli.main import main as entry_point

    sys.exit(entry_point())
