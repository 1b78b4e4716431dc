"""Sessions: Django's cached_db store, except that a full disk does not stop anyone logging in.

A session the database cannot store (the data dir's disk is full, even after AiKore released its
reserve: aikore_site/disk.py) is kept in the web process's cache only: the user is logged in until
daphne restarts, instead of getting a server error. Deleting a session (logout, the key change at
login) likewise never fails the request.
"""

from __future__ import annotations

import logging

from django.contrib.sessions.backends.cached_db import SessionStore as CachedDBStore
from django.db import DatabaseError

from aikore_site import disk

log = logging.getLogger(__name__)


class SessionStore(CachedDBStore):
    def save(self, must_create: bool = False) -> None:
        try:
            disk.retry_if_full(lambda: super(SessionStore, self).save(must_create))
        except DatabaseError as exc:
            if not disk.is_full_error(exc):
                raise
            log.warning("session kept in memory only: %s", exc)
            self._cache.set(self.cache_key, self._session, self.get_expiry_age())

    def delete(self, session_key: str | None = None) -> None:
        try:
            super().delete(session_key)
        except DatabaseError as exc:
            if not disk.is_full_error(exc):
                raise
            log.warning("session not deleted from the database: %s", exc)
            self._cache.delete(self.cache_key_prefix + (session_key or self.session_key or ""))
