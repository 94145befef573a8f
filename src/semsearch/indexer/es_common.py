"""What the Elasticsearch lexical and vector backends share: a lazily connected client whose
failures become typed errors naming the URL, bulk writes with per-document failure
reporting, and versioned physical indexes behind an alias (zero-downtime rebuilds)."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from semsearch.config import ElasticsearchSettings
from semsearch.errors import BackendUnavailable, BadInput, IndexNotFound, require

logger = logging.getLogger(__name__)

T = TypeVar("T")
#: statuses a bulk chunk is retried on (with exponential backoff)
RETRY_STATUSES = (429, 502, 503, 504)


class EsConnection:
    """A lazily created ``elasticsearch.Elasticsearch`` client for one settings section."""

    def __init__(self, settings: ElasticsearchSettings) -> None:
        self.settings = settings
        self.url = settings.url
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            es = require("elasticsearch", "es")
            s = self.settings
            kw: dict[str, Any] = {
                "request_timeout": s.request_timeout,
                "verify_certs": s.verify_certs,
                "retry_on_status": (502, 503, 504),
                "max_retries": 2,
            }
            if s.api_key is not None:
                kw["api_key"] = s.api_key.get_secret_value()
            elif s.username is not None:
                pw = s.password.get_secret_value() if s.password is not None else ""
                kw["basic_auth"] = (s.username, pw)
            if s.ca_certs is not None:
                kw["ca_certs"] = str(s.ca_certs)
            hosts = [u.strip() for u in s.url.split(",") if u.strip()]
            if len(hosts) > 1:  # a cluster: a dead node is retried on the next one
                kw["retry_on_timeout"] = True
                kw["max_retries"] = max(2, len(hosts))
            try:
                self._client = es.Elasticsearch(hosts if len(hosts) > 1 else s.url, **kw)
            except ValueError as e:  # malformed URL and similar
                raise BadInput(f"Elasticsearch url {s.url!r} is invalid: {e}") from e
        return self._client

    def call(self, what: str, fn: Callable[[Any], T]) -> T:
        """Run ``fn(client)``; transport and server failures become typed errors."""
        import elastic_transport
        import elasticsearch

        try:
            return fn(self.client)
        except elastic_transport.TransportError as e:  # connection refused, timeout, TLS
            raise BackendUnavailable(
                f"Elasticsearch at {self.url} is unreachable ({what}): {type(e).__name__}: {e}"
            ) from e
        except elasticsearch.ApiError as e:
            status = getattr(e, "status_code", None) or getattr(e.meta, "status", None)
            if status == 404:
                raise IndexNotFound(
                    f"Elasticsearch at {self.url}: {what}: not found ({e.message})"
                ) from e
            if status in (401, 403):
                raise BackendUnavailable(
                    f"Elasticsearch at {self.url} refused {what} (HTTP {status}): check the "
                    f"api_key or username/password settings: {e.message}"
                ) from e
            raise BackendUnavailable(
                f"Elasticsearch at {self.url} failed {what} (HTTP {status}): {_reason(e)}"
            ) from e

    def ping(self) -> None:
        """Raise :class:`BackendUnavailable` unless the cluster answers green or yellow."""
        health = self.call("cluster health", lambda c: c.cluster.health(timeout="5s"))
        if health.get("status") not in ("green", "yellow"):
            raise BackendUnavailable(
                f"Elasticsearch at {self.url} is unhealthy: status {health.get('status')!r}"
            )

    def bulk(self, actions: Iterable[dict[str, Any]], what: str) -> list[tuple[bool, str, dict[str, Any]]]:
        """Send ``actions`` with ``streaming_bulk`` (chunked, 429/5xx retried with backoff);
        returns ``(ok, id, item)`` per action, failures included, in order."""
        from elasticsearch.helpers import streaming_bulk

        s = self.settings

        def run(client: Any) -> list[tuple[bool, str, dict[str, Any]]]:
            out = []
            for ok, item in streaming_bulk(
                client, actions, chunk_size=s.chunk_size, max_retries=s.max_retries,
                initial_backoff=s.initial_backoff, retry_on_status=RETRY_STATUSES,
                raise_on_error=False,
            ):
                (op,) = item.values()
                out.append((ok, str(op.get("_id")), op))
            return out

        return self.call(what, run)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def _reason(e: Any) -> str:
    try:
        err = e.body["error"]
        cause = (err.get("root_cause") or [err])[0]
        return f"{cause.get('type')}: {cause.get('reason')}"
    except (TypeError, KeyError, AttributeError, IndexError):
        return str(e)


def item_reason(item: dict[str, Any]) -> str:
    """A readable reason from a failed bulk item."""
    err = item.get("error")
    if isinstance(err, dict):
        reason = f"{err.get('type')}: {err.get('reason')}"
        cause = err.get("caused_by")
        if isinstance(cause, dict):
            reason += f" (caused by {cause.get('type')}: {cause.get('reason')})"
        return reason
    return f"HTTP {item.get('status')}: {err or item.get('result')}"


_NAME = re.compile(r"^[a-z0-9][a-z0-9_.+-]*$")
_VERSIONED = re.compile(r"-v\d+$")


class AliasedIndex:
    """Physical indexes ``<alias>-v1``, ``<alias>-v2``, ... behind the alias ``<alias>``.

    A rebuild only ever deletes physical indexes of its own name that the alias pointed to
    before the swap: never another alias's indexes (``docs`` and ``docs-v2-archive`` share
    a prefix), never a version that another rebuild is still filling."""

    def __init__(self, conn: EsConnection, alias: str) -> None:
        if not _NAME.match(alias) or len(alias) > 200:
            raise BadInput(
                f"Elasticsearch index name {alias!r} is invalid: use lowercase letters, digits, "
                "'_', '-', '.', '+', not starting with one of '_-.+'"
            )
        if _VERSIONED.search(alias):
            raise BadInput(
                f"Elasticsearch index name {alias!r} ends like a physical version (-vN), which "
                "would collide with another alias's physical indexes; choose another name"
            )
        self.conn = conn
        self.alias = alias
        self._own = re.compile(rf"^{re.escape(alias)}-v(\d+)$")

    def owns(self, name: str) -> bool:
        """Whether ``name`` is one of this alias's physical indexes."""
        return bool(self._own.match(name))

    def versions(self) -> dict[int, str]:
        """Existing physical indexes of this alias, by version number."""
        names = self.conn.call(
            f"list indexes {self.alias}-v*",
            lambda c: c.indices.get(index=f"{self.alias}-v*", allow_no_indices=True,
                                    expand_wildcards="open,closed"),
        )
        return {int(m.group(1)): n for n in names if (m := self._own.match(n))}

    def targets(self) -> list[str]:
        """The physical indexes the alias points to now (normally one)."""
        exists = self.conn.call(f"check alias {self.alias}",
                                lambda c: c.indices.exists_alias(name=self.alias))
        if not exists:
            return []
        got = self.conn.call(f"resolve alias {self.alias}",
                             lambda c: c.indices.get_alias(name=self.alias))
        return list(got)

    def current(self) -> str | None:
        """The physical index the alias points to (the newest version if several), or None."""
        got = self.targets()
        if not got:
            return None
        return max(got, key=lambda n: (int(m.group(1)) if (m := self._own.match(n)) else -1, n))

    def create_next(self, body: dict[str, Any]) -> str:
        """Create the next version's physical index (not yet behind the alias)."""
        n = max(self.versions(), default=0) + 1
        name = f"{self.alias}-v{n}"
        self.conn.call(f"create index {name}",
                       lambda c: c.indices.create(index=name, **body))
        logger.info("created Elasticsearch index %s", name)
        return name

    def swap(self, new: str) -> None:
        """Point the alias at ``new`` in one atomic ``update_aliases`` call, then delete the
        physical indexes of this name it pointed to before (and nothing else)."""
        if not self.owns(new):
            raise BadInput(f"{new!r} is not a physical index of alias {self.alias!r}")
        before = [n for n in self.targets() if n != new]
        actions: list[dict[str, Any]] = [{"add": {"index": new, "alias": self.alias}}]
        if before:
            actions.insert(0, {"remove": {"indices": before, "alias": self.alias,
                                          "must_exist": False}})
        self.conn.call(f"swap alias {self.alias} to {new}",
                       lambda c: c.indices.update_aliases(actions=actions))
        old = [n for n in before if self.owns(n)]
        for name in old:
            self.conn.call(f"delete old index {name}",
                           lambda c, name=name: c.indices.delete(index=name, ignore_unavailable=True))
        logger.info("alias %s -> %s (deleted %s)", self.alias, new, old or "nothing")

    def drop(self, name: str) -> None:
        self.conn.call(f"delete index {name}",
                       lambda c: c.indices.delete(index=name, ignore_unavailable=True))
