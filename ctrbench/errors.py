"""Typed errors that say where: DataError (file, line, field) and ConfigError (YAML path)."""
from __future__ import annotations

import signal


class CtrbenchError(Exception):
    """Base of ctrbench's own errors."""


class DataError(CtrbenchError):
    """Bad or missing data; carries the file, line and field it is about."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None, field: str | None = None):
        self.file, self.line, self.field = file, line, field
        where = ", ".join(
            part
            for part in (
                f"file {file}" if file is not None else "",
                f"line {line}" if line is not None else "",
                f"field {field!r}" if field is not None else "",
            )
            if part
        )
        super().__init__(f"{message} ({where})" if where else message)


class ConfigError(CtrbenchError):
    """A suite or model configuration is invalid; carries the YAML path (e.g. entries[2].params.lr)."""

    def __init__(self, message: str, *, path: str | None = None, file: str | None = None):
        self.path, self.file = path, file
        where = " ".join(p for p in (f"in {file}" if file else "", f"at {path}" if path else "") if p)
        super().__init__(f"{message} ({where})" if where else message)


class UnknownNameError(CtrbenchError, KeyError):
    """An unknown dataset, feature, model or searcher name; the message lists the valid names."""

    def __init__(self, kind: str, name: str, valid):
        self.kind, self.name, self.valid = kind, name, sorted(valid)
        super().__init__(f"unknown {kind} {name!r}; valid: {', '.join(self.valid)}")

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


class ParamError(CtrbenchError, ValueError):
    """A model param that does not fit the dataset (e.g. a width that does not split into its heads); carries the
    param's name, so the suite loader can point at its YAML line before any run starts."""

    def __init__(self, param: str | None, message: str):  # None: the model itself does not fit the dataset
        self.param = param
        super().__init__(message)


class StoreError(CtrbenchError):
    """The run store cannot be used (missing when read, not SQLite, corrupt, locked); the message names the file
    and what to do."""


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM stopped the work (handled alike); `signum` says which, for the exit status 128 + signum."""

    def __init__(self, signum: int):
        self.signum = int(signum)
        super().__init__(signal.Signals(self.signum).name)
