"""Errors a user can act on. Each maps to a CLI exit code; the message is one line."""

from __future__ import annotations


class DvdError(Exception):
    """Base class: a problem with a clear one-line message and an exit code."""

    exit_code = 1


class InputError(DvdError):
    """Bad footage, bad arguments, unwritable output (exit code 2)."""

    exit_code = 2


class WeightsError(DvdError):
    """Missing, corrupt or mismatched model weights (exit code 3)."""

    exit_code = 3


class PredictionError(DvdError):
    """The predictor returned values the engine cannot use (NaN/inf); nothing was cached for them (exit code 4)."""

    exit_code = 4


class DeviceMemoryError(DvdError):
    """The GPU (or other device) ran out of memory: may be transient, a farm retries it (exit code 75,
    EX_TEMPFAIL of sysexits.h: "try again later")."""

    exit_code = 75


class Cancelled(DvdError):
    """The user or host asked to stop (exit code 130)."""

    exit_code = 130


class PluginError(DvdError):
    """A plugin raised an unexpected exception; the message names the plugin (exit code 1)."""

    exit_code = 1


#: Exit codes that a retry of the same task cannot fix (same input, same failure): farms fail the
#: shot at once. Every other non-zero code (1 unexpected, 75 out of device memory, a signal) is retried.
PERMANENT_EXIT_CODES = frozenset({InputError.exit_code, WeightsError.exit_code, PredictionError.exit_code})
