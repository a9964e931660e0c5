"""What every bin/ entry point shares: quiet logging, one-line errors, config files by name.

    from opacity_jax import cli

    def main():
        ...                     # flags are parsed; raise ValueError etc. for bad input

    if __name__ == "__main__":
        cli.run(main)

`run` parses the absl flags, lowers absl/orbax logging to WARNING unless --verbosity was given
(orbax logs every file write at INFO), and turns the errors bad input raises (`USER_ERRORS`)
into one line `bin/<name>: <message>` on stderr and exit status 1. With --verbosity given the error is
re-raised with its traceback.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import Callable, Sequence

from absl import app, flags, logging

from opacity_jax.errors import CheckpointError, DataFormatError, DomainError, TrainingDiverged

USER_ERRORS = (DataFormatError, DomainError, ValueError, FileNotFoundError, CheckpointError,
               TrainingDiverged)


def _quiet_closed_loop(hook):
    """An unraisable-exception hook that drops asyncio's 'Event loop is closed' (printed by
    orbax's background threads after a failed checkpoint read, which would otherwise bury the
    one-line error) and passes everything else to `hook`."""
    def quiet(unraisable):
        e = unraisable.exc_value
        if isinstance(e, RuntimeError) and str(e) == "Event loop is closed":
            return
        hook(unraisable)
    return quiet


def run(main: Callable[[], object]) -> None:
    """Run `main()` as an absl program (see module docstring); prints what `main` returns
    unless it is None."""
    prog = "bin/" + os.path.basename(sys.argv[0])
    sys.unraisablehook = _quiet_closed_loop(sys.unraisablehook)

    def wrapped(argv):
        del argv
        verbose = flags.FLAGS["verbosity"].present
        if not verbose:
            logging.set_verbosity(logging.WARNING)
        try:
            out = main()
        except USER_ERRORS as e:
            if verbose:
                raise
            sys.stdout.flush()
            sys.stderr.write(f"{prog}: {e}\n")
            sys.stderr.flush()
            # Leave without interpreter teardown: after a failed checkpoint read, orbax's
            # background threads would print "Event loop is closed" tracebacks under the
            # message. Nothing is left to clean up (locks and files are closed by then).
            os._exit(1)
        if out is not None:
            print(out)

    def parse(argv):
        # absl turns a malformed flag into a usage message, but an override of a config field
        # that does not exist (--config.no_such=1) raises from inside ml_collections with a
        # traceback; both become the one line.
        try:
            return flags.FLAGS(argv)
        except flags.Error as e:
            sys.stderr.write(f"{prog}: {e}\n")
        except (AttributeError, KeyError, TypeError, ValueError) as e:
            given = [a.split("=", 1)[0] for a in argv[1:] if a.startswith("--config.")]
            sys.stderr.write(f"{prog}: cannot apply the config overrides {given}: {e} (a field "
                             "that does not exist, or a value of the wrong type)\n")
        sys.exit(1)

    app.run(wrapped, flags_parser=parse)


def numbers(flag: str, values: Sequence[str], positive: bool = True) -> list:
    """The values of list flag `--flag` as floats; ValueError naming the flag and the bad value
    (not a number, not finite, or <= 0 when `positive`)."""
    out = []
    for v in values or []:
        try:
            x = float(v)
        except (TypeError, ValueError):
            raise ValueError(f"--{flag}: {v!r} is not a number") from None
        if not math.isfinite(x) or (positive and x <= 0):
            raise ValueError(f"--{flag}: {v!r} must be a finite number"
                             + (" > 0" if positive else ""))
        out.append(x)
    return out


def output_file(flag: str, value: str) -> Path:
    """`--flag`'s value as the path of a file to write; ValueError / FileNotFoundError naming
    the flag if its folder does not exist or it is a folder (checked before any work)."""
    p = Path(value)
    if p.is_dir():
        raise ValueError(f"--{flag}={value}: is a folder; give a file name")
    if not p.parent.is_dir():
        raise FileNotFoundError(f"--{flag}={value}: folder {p.parent} does not exist")
    return p
