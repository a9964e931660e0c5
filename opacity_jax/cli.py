"""What every bin/ entry point shares: quiet logging, one-line errors, config files by name.

    from opacity_jax import cli

    def main():
        ...                     # flags are parsed; raise ValueError etc. for bad input

    if __name__ == "__main__":
        cli.run(main)

`run` parses the absl flags, lowers absl/orbax logging to WARNING unless --verbosity was given
(orbax logs every file write at INFO), and turns the errors bad input raises (`USER_ERRORS`)
into one line `bin/<name>: <message>` and exit status 1. With --verbosity given the error is
re-raised with its traceback.
"""

from __future__ import annotations

import os
import sys
from typing import Callable

from absl import app, flags, logging

from opacity_jax.errors import CheckpointError, DataFormatError, DomainError

USER_ERRORS = (DataFormatError, DomainError, ValueError, FileNotFoundError, CheckpointError)


def run(main: Callable[[], object]) -> None:
    """Run `main()` as an absl program (see module docstring); prints what `main` returns
    unless it is None."""
    prog = "bin/" + os.path.basename(sys.argv[0])

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
            raise SystemExit(f"{prog}: {e}") from None
        if out is not None:
            print(out)

    app.run(wrapped)
