"""Errors a user can cause. Every message names the file or field and what was expected.

The CLI prints ``str(err)`` and exits non-zero; ``--debug`` shows the traceback.
"""

from __future__ import annotations


class LmforgeError(Exception):
    """Base class of every error caused by user input (files, options, arguments)."""


class FormatError(LmforgeError):
    """A file exists but is not in the expected format (malformed, truncated, wrong kind)."""


class ConfigError(LmforgeError):
    """An option, config field or hyper-parameter has an invalid value."""


class InputError(LmforgeError):
    """Input data (text, prompt, ids, shapes) cannot be processed as asked."""
