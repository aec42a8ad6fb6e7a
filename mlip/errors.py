"""The two kinds of failure the package reports to a user, and how the CLI maps them to exit codes.

``UserInputError``: the input is wrong (a file, a record, a config field, an argument); the message is
one line naming the file, record and field. The CLI prints ``mlip VERB: error: MESSAGE``, exit code 2.

``RunFailedError``: the input was accepted but the run failed (an MD run exploded, a loss became
non-finite); the message names the step and the reason, and what was kept. The CLI prints
``mlip VERB: failed: MESSAGE``, exit code 1. Results of such a run are never reported as valid.
"""

from __future__ import annotations


class MLIPError(Exception):
    """Base of the errors the package raises on purpose."""


class UserInputError(MLIPError, ValueError):
    """Invalid user input; the message names the file, record and field. CLI exit code 2."""


class RunFailedError(MLIPError, RuntimeError):
    """A run that failed after it started; the message names the step and the reason. CLI exit code 1."""


EXIT_USER_INPUT = 2
EXIT_RUN_FAILED = 1
