"""Typed errors. Every error says which input was wrong and what was wrong with it."""

from __future__ import annotations


class SemsearchError(Exception):
    """Base class of every error semsearch raises on purpose."""


class BadInput(SemsearchError, ValueError):
    """A record, query, option or file the caller supplied is invalid."""


class IndexNotFound(SemsearchError, FileNotFoundError):
    """No index exists at the given location."""


class IndexIncompatible(SemsearchError):
    """An index exists but cannot be opened with the current settings or version."""


class DocumentNotFound(SemsearchError, KeyError):
    """A document id is not in the index."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else "document not found"


class BackendUnavailable(SemsearchError, ConnectionError):
    """A backend (e.g. an Elasticsearch server) cannot be reached or failed."""


class ChannelFailed(BackendUnavailable):
    """One retrieval channel failed during a search."""

    def __init__(self, channel: str, cause: BaseException) -> None:
        super().__init__(f"search channel {channel!r} failed: {cause}")
        self.channel = channel
        self.cause = cause


class BulkIndexError(SemsearchError):
    """A backend rejected some documents of a bulk write; ``failures`` lists every one as
    ``(id, reason)``. The documents not listed were written."""

    def __init__(self, backend: str, failures: list[tuple[str, str]]) -> None:
        shown = "; ".join(f"{i}: {r}" for i, r in failures[:3])
        more = f" (and {len(failures) - 3} more)" if len(failures) > 3 else ""
        super().__init__(f"{backend} rejected {len(failures)} document(s): {shown}{more}")
        self.backend = backend
        self.failures = failures


class MissingExtra(SemsearchError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(
            f"{package} is not installed: install it with `pip install 'semsearch[{extra}]'`"
        )
        self.package = package
        self.extra = extra


def require(module: str, extra: str):  # noqa: ANN201 - returns a module
    """Import an optional dependency or raise :class:`MissingExtra` naming the extra."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingExtra(module, extra) from e
