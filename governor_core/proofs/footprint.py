"""What a proof wrote to a Redis database, so that exactly that is deleted afterwards.

A proof registers everything before it (or a service it runs) writes it:

* :meth:`Footprint.own` keys that are the proof's alone (its symbols' keys, its plans'
  permits, the shared inputs it refused to share): deleted whole;
* :meth:`Footprint.share_stream` streams that others may use too: a stream that did not
  exist is the proof's and deleted whole; in one that existed, only the entries added after
  the registration whose ``symbol`` is one of the proof's symbols are deleted (``XDEL``);
* :meth:`Footprint.create_group` its own consumer group, created at the stream's end (``$``)
  so it never reads anyone else's earlier entries, and destroyed afterwards;
* :meth:`Footprint.watch_snapshots` the configuration snapshots its services write at
  start (``quantum:config:snapshot:{config_id}``, SPEC 8): deleted are those that did not
  exist at the call **and** whose ``config_id`` is on one of the proof's own entries or
  keys (a permit, a decision, a proposal of its symbols). A snapshot another service wrote
  meanwhile names another ``config_id`` (one its own entries carry) and is kept; one the
  proof's services share with a real service (same settings, same id) existed before and is
  kept too.

Nothing else is ever deleted: no ``FLUSHDB``, no pattern deletes.
"""

from __future__ import annotations

from collections.abc import Iterable

import redis

from governor_core.keys import SNAPSHOT_PREFIX

_PAGE = 1000


class Footprint:
    """The keys, stream entries and groups of one proof run (see the module docstring)."""

    def __init__(self, symbols: Iterable[str] = ()) -> None:
        self.symbols: set[str] = set(symbols)
        self._keys: set[str] = set()
        self._streams: dict[str, str] = {}
        self._groups: set[tuple[str, str]] = set()
        self._snapshots_before: set[str] | None = None
        self._config_ids: set[str] = set()

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

    def watch_snapshots(self, client: redis.Redis) -> None:
        """Note the snapshots that exist now (call it before starting a service)."""
        if self._snapshots_before is None:
            self._snapshots_before = set(client.scan_iter(match=SNAPSHOT_PREFIX + "*",
                                                          count=_PAGE))

    def clean(self, client: redis.Redis) -> int:
        """Delete what was registered; the number of keys and entries deleted."""
        deleted = 0
        for stream, mark in self._streams.items():
            deleted += self._delete_entries(client, stream, mark)
        for stream, group in self._groups:
            if stream not in self._keys and client.exists(stream):
                client.xgroup_destroy(stream, group)
        doomed = set(self._keys)
        if self._snapshots_before is not None:
            self._collect_config_ids(client)
            doomed |= {SNAPSHOT_PREFIX + config_id for config_id in self._config_ids
                       if SNAPSHOT_PREFIX + config_id not in self._snapshots_before}
        if doomed:
            deleted += client.delete(*sorted(doomed))
        return deleted

    def _collect_config_ids(self, client: redis.Redis) -> None:
        """The ``config_id`` of every entry of the proof's own streams and of its own
        hashes (its permits, its symbols' targets and proposals)."""
        for key in sorted(self._keys):
            kind = client.type(key)
            if kind == "hash":
                value = client.hget(key, "config_id")
                if value:
                    self._config_ids.add(value)
            elif kind == "stream":
                start = "-"
                while page := client.xrange(key, min=start, count=_PAGE):
                    self._config_ids.update(fields["config_id"] for _id, fields in page
                                            if fields.get("config_id"))
                    start = f"({page[-1][0]}"

    def _delete_entries(self, client: redis.Redis, stream: str, mark: str) -> int:
        deleted = 0
        start = f"({mark}"
        while True:
            page = client.xrange(stream, min=start, count=_PAGE)
            if not page:
                return deleted
            ours = [entry_id for entry_id, fields in page
                    if fields.get("symbol") in self.symbols]
            self._config_ids.update(fields["config_id"] for _id, fields in page
                                    if fields.get("symbol") in self.symbols
                                    and fields.get("config_id"))
            if ours:
                deleted += client.xdel(stream, *ours)
            start = f"({page[-1][0]}"
