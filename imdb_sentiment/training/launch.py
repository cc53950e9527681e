"""The multi-process launcher ``train --num-processes N`` runs: accelerate's, ended without
its traceback.

When the launcher is stopped by a signal (``docker stop`` reaches it first) it stops the
training processes, which record where they stopped and print how to resume, and then raises
the signal as an exception; when a training process fails (a bad flag, a full disk) it
raises that too, after the process printed its own one-line error. Either way the traceback
would be the last thing the user sees. This ends the launcher with the exit code a shell
reports instead: 128 + the signal, or the failed process's own code.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Run ``accelerate launch`` with ``argv``; return its exit code."""
    from accelerate.commands.launch import launch_command, launch_command_parser
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    args = launch_command_parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        launch_command(args)
    except SignalException as exc:
        return 128 + int(exc.sigval)
    except ChildFailedError as exc:
        codes = [f.exitcode for f in exc.failures.values() if f.exitcode]
        # A negative code is a process killed by that signal; report it as a shell would.
        return next((c if c > 0 else 128 - c for c in codes), 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
