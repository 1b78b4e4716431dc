"""Sessions: Django's cached_db store, except that a full disk does not stop anyone logging in.

A session the database cannot store (the data dir's disk is full, even after AiKore released its
reserve: aikore_site/disk.py) is kept in the web process's cache only, and written to the database
at its next save that succeeds: the user stays logged in (until daphne restarts, at worst) instead of
getting a server error. Deleting a session (logout, the key change at login) likewise never fails
the request.
"""

from __future__ import annotations

import logging

from django.contrib.sessions.backends.base import CreateError, UpdateError
from django.contrib.sessions.backends.cached_db import SessionStore as CachedDBStore
from django.db import DatabaseError

from aikore_site import disk

log = logging.getLogger(__name__)

# Keys of the sessions this process keeps in its cache only: the database has no row for them.
_memory_only: set[str] = set()


class SessionStore(CachedDBStore):
    def save(self, must_create: bool = False) -> None:
        if self.session_key in _memory_only:
            must_create = True  # no row yet: an UPDATE would say the session was deleted
        try:
            disk.retry_if_full(lambda: super(SessionStore, self).save(must_create))
        except (DatabaseError, UpdateError, CreateError) as exc:
            if not disk.is_full_error(exc):
                raise
            log.warning("session kept in memory only: %s", exc)
            self._cache.set(self.cache_key, self._session, self.get_expiry_age())
            _memory_only.add(self.session_key)
            return
        _memory_only.discard(self.session_key)

    def delete(self, session_key: str | None = None) -> None:
        key = session_key or self.session_key
        try:
            super().delete(session_key)
        except DatabaseError as exc:
            if not disk.is_full_error(exc):
                raise
            log.warning("session not deleted from the database: %s", exc)
            self._cache.delete(self.cache_key_prefix + (key or ""))
        _memory_only.discard(key)
