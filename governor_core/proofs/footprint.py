"""What a proof wrote to a Redis database, so that exactly that is deleted afterwards.

A proof registers everything before it (or a service it runs) writes it:

* :meth:`Footprint.own` keys that are the proof's alone (its symbols' keys, its plans'
  permits, the shared inputs it refused to share): deleted whole;
* :meth:`Footprint.share_stream` streams that others may use too: a stream that did not
  exist is the proof's and deleted whole; in one that existed, only the entries added after
  the registration whose ``symbol`` is one of the proof's symbols are deleted (``XDEL``);
* :meth:`Footprint.create_group` its own consumer group, created at the stream's end (``$``)
  so it never reads anyone else's earlier entries, and destroyed afterwards.

Nothing else is ever deleted: no ``FLUSHDB``, no pattern deletes.
"""

from __future__ import annotations

from collections.abc import Iterable

import redis

_PAGE = 1000


class Footprint:
    """The keys, stream entries and groups of one proof run (see the module docstring)."""

    def __init__(self, symbols: Iterable[str] = ()) -> None:
        self.symbols: set[str] = set(symbols)
        self._keys: set[str] = set()
        self._streams: dict[str, str] = {}
        self._groups: set[tuple[str, str]] = set()

    def own(self, *keys: str) -> None:
        """Keys the proof may write and deletes whole afterwards."""
        self._keys.update(keys)

    def share_stream(self, client: redis.Redis, *streams: str) -> None:
        """Streams the proof or its services append entries of its symbols to."""
        for stream in streams:
            if stream in self._keys or stream in self._streams:
                continue
            if client.exists(stream):
                self._streams[stream] = client.xinfo_stream(stream)["last-generated-id"]
            else:
                self._keys.add(stream)

    def create_group(self, client: redis.Redis, stream: str, group: str) -> None:
        """Create ``group`` on ``stream`` at its end (registering the stream first)."""
        self.share_stream(client, stream)
        client.xgroup_create(stream, group, id="$", mkstream=True)
        self._groups.add((stream, group))

    def clean(self, client: redis.Redis) -> int:
        """Delete what was registered; the number of keys and entries deleted."""
        deleted = 0
        for stream, mark in self._streams.items():
            deleted += self._delete_entries(client, stream, mark)
        for stream, group in self._groups:
            if stream not in self._keys and client.exists(stream):
                client.xgroup_destroy(stream, group)
        if self._keys:
            deleted += client.delete(*sorted(self._keys))
        return deleted

    def _delete_entries(self, client: redis.Redis, stream: str, mark: str) -> int:
        deleted = 0
        start = f"({mark}"
        while True:
            page = client.xrange(stream, min=start, count=_PAGE)
            if not page:
                return deleted
            ours = [entry_id for entry_id, fields in page
                    if fields.get("symbol") in self.symbols]
            if ours:
                deleted += client.xdel(stream, *ours)
            start = f"({page[-1][0]}"
