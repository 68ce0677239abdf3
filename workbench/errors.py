"""User-facing errors.

A `WorkbenchError` is a mistake the user can fix (a bad file, field or option). The CLI prints
its message and exits non-zero; the TUI shows it as a notification. Anything else is a bug and
keeps its traceback.
"""


class WorkbenchError(Exception):
    """An error caused by user input, with a message that says what to change."""
