"""The exceptions zoo raises: one base class, `ZooError`, and a subclass per kind of failure.

Catch `ZooError` to handle anything zoo reports on purpose; anything else is a bug.
Lookup failures also subclass `ValueError`, as torchvision's do, so code written for
torchvision's `get_model` keeps working.
"""

from __future__ import annotations

from collections.abc import Iterable

#: How zoo's command lines start the one line that reports a user mistake on stderr.
ERROR_PREFIX = "zoo: error: "
#: How they start a line that warns (the command goes on): see `ZooWarning`.
WARNING_PREFIX = "zoo: warning: "


def excerpt(value: object, limit: int = 60) -> str:
    """`value`'s repr, or its first `limit` characters and its length when it is longer.

    Error messages quote what the user gave through this, so a huge bad argument is
    not echoed back in full.
    """
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def said_by_peer(text: str, limit: int = 500) -> str:
    """What a peer (a registry service) said, as one printable line of at most `limit` characters and its length
    when longer: its text may hold anything."""
    line = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return line if len(line) <= limit else f"{line[:limit]}... ({len(line)} characters)"


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, or its type's name when it has none."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class ZooError(Exception):
    """Base class of every error zoo raises on purpose."""


class ZooWarning(UserWarning):
    """Base class of the warnings zoo gives on purpose; the command line prints each as one line."""


class UsageError(ZooError, ValueError):
    """An argument or setting has a value zoo does not accept."""


class UnknownNameError(ZooError, ValueError):
    """A name is not in the catalog; the message lists the closest known names."""

    def __init__(self, kind: str, name: str, known: Iterable[str]) -> None:
        import difflib  # here: imported only when a name is unknown, not by every command

        known = list(known)
        close = difflib.get_close_matches(name.lower(), [k.lower() for k in known], n=5, cutoff=0.5)
        by_lower = {k.lower(): k for k in known}
        if close:
            hint = f"; did you mean: {', '.join(by_lower[c] for c in close)}?"
        elif known:
            hint = f"; known: {', '.join(sorted(known)[:10])}{', ...' if len(known) > 10 else ''}"
        else:
            hint = "; none registered"
        super().__init__(f"unknown {kind} {excerpt(name)}{hint}")
        self.name = name
        self.suggestions = [by_lower[c] for c in close]

    @classmethod
    def reported(cls, message: str) -> UnknownNameError:
        """The error a registry service reported in `message` (client mode), raised here as this class."""
        error = cls.__new__(cls)
        Exception.__init__(error, message)
        error.name, error.suggestions = None, []
        return error


class UnknownModelError(UnknownNameError):
    """No model of that name is registered."""

    def __init__(self, name: str, known: Iterable[str]) -> None:
        super().__init__("model", name, known)


class UnknownWeightsError(UnknownNameError):
    """No weights entry of that name is registered."""

    def __init__(self, name: str, known: Iterable[str]) -> None:
        super().__init__("weights", name, known)


class PluginError(ZooError):
    """A plugin failed to import or register, or two plugins claim one model name."""


class CatalogError(ZooError):
    """The catalog database cannot be opened, migrated or synced."""


class WeightsError(ZooError):
    """A weights file is missing, cannot be fetched, or does not match its recorded hash."""


class HashMismatchError(WeightsError):
    """A weights file's SHA-256 is not the one recorded for it."""

    def __init__(self, message: str, *, path: str, actual: str, expected: str) -> None:
        super().__init__(message)
        self.path, self.actual, self.expected = path, actual, expected


class ArtifactError(ZooError):
    """A file cannot be stored in, or found in, the artifact store (`zoo.store`)."""


class ArtifactTooLargeError(ArtifactError):
    """More bytes arrived than the store was told to accept."""

    def __init__(self, message: str, *, limit: int) -> None:
        super().__init__(message)
        self.limit = limit


class UnknownArtifactError(ArtifactError):
    """The artifact store has no file with that SHA-256."""


class StoreUnavailableError(ArtifactError):
    """The artifact store cannot be reached or refused the zoo's credentials (an object store that is down):
    trying again later can help, so a service answers 503."""


class ServiceError(ZooError):
    """A registry service (client mode, ``ZOO_REGISTRY_URL=http://...``) refused a request or cannot be
    reached; `status` is the HTTP status (None when no answer came)."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
