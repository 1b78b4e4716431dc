"""Reading an instance's log by absolute byte offset, across supervisord's rotations.

supervisord rotates ``output.log`` to ``output.log.1`` (.1 -> .2 ...) when it reaches its cap. To let a
client follow the log with no gap or repeat, offsets are positions in the whole history of the log:
each file generation gets a *base* (the offset of its first byte), remembered by inode in
``.logindex.json`` next to the log. A rotated file never grows again, so the next generation's base
is the previous one's base plus its final size.

The log lies in the instance's folder, which the app may write when it runs as a user of its own:
only plain files are read, never through a symbolic link (aikore_site/files.py: open_no_symlink).
"""

from __future__ import annotations

import json
import os
import stat
import threading
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from aikore_site.files import atomic_write, open_no_symlink

_index_lock = threading.Lock()
MAX_INDEX_ENTRIES = 64


@dataclass(frozen=True)
class Segment:
    path: Path
    inode: int
    size: int
    base: int

    @property
    def end(self) -> int:
        return self.base + self.size


@dataclass(frozen=True)
class Chunk:
    data: bytes
    offset: int  # where data starts (may be > requested offset when older data was rotated away)
    next_offset: int
    end: int  # the log's current end offset
    skipped: int  # bytes between the requested offset and `offset` that no longer exist


def _generations(log_path: Path, max_backups: int | None = None) -> list[tuple[Path, os.stat_result]]:
    """Existing files, oldest first: output.log.N ... output.log.1, output.log. Followers call this
    every few tens of milliseconds: only the backups supervisord keeps (+1, a rotation in flight)
    are looked for, not a fixed 100 stat() calls of files that don't exist."""
    if max_backups is None:
        max_backups = settings.AIKORE_LOG_BACKUPS + 1
    files = []
    for n in range(max_backups, 0, -1):
        candidate = log_path.with_name(f"{log_path.name}.{n}")
        try:
            st = candidate.lstat()
        except FileNotFoundError:
            continue
        if stat.S_ISREG(st.st_mode):
            files.append((candidate, st))
    try:
        st = log_path.lstat()
        if stat.S_ISREG(st.st_mode):
            files.append((log_path, st))
    except FileNotFoundError:
        pass
    return files


def segments(log_path: Path) -> list[Segment]:
    index_path = log_path.with_name(".logindex.json")
    with _index_lock:
        try:
            with open_no_symlink(index_path) as fh:
                index: dict[str, int] = json.loads(fh.read())
        except (OSError, ValueError):
            index = {}
        result: list[Segment] = []
        previous: Segment | None = None
        for path, st in _generations(log_path):
            key = str(st.st_ino)
            if key in index:
                base = index[key]
            elif previous is not None:
                base = previous.end
            else:
                base = 0
            seg = Segment(path, st.st_ino, st.st_size, base)
            result.append(seg)
            previous = seg
        fresh = {str(s.inode): s.base for s in result}
        if fresh != {k: v for k, v in index.items() if k in fresh} or len(index) != len(fresh):
            try:
                atomic_write(index_path, json.dumps(dict(list(fresh.items())[-MAX_INDEX_ENTRIES:])))
            except OSError:
                pass
        return result


def read(log_path: Path, offset: int, limit: int) -> Chunk:
    """Up to `limit` bytes from absolute `offset` (negative: that many bytes before the end)."""
    segs = segments(log_path)
    if not segs:
        return Chunk(b"", 0, 0, 0, 0)
    end = segs[-1].end
    if offset < 0:
        offset = max(segs[0].base, end + offset)
    if offset >= end:
        return Chunk(b"", end, end, end, 0)
    skipped = 0
    if offset < segs[0].base:
        skipped = segs[0].base - offset
        offset = segs[0].base
    for seg in segs:
        if seg.base <= offset < seg.end:
            try:
                with open_no_symlink(seg.path) as fh:
                    if os.fstat(fh.fileno()).st_ino != seg.inode:
                        # Rotated between stat and open: ask again.
                        return read(log_path, offset, limit)
                    fh.seek(offset - seg.base)
                    data = fh.read(min(limit, seg.end - offset))
            except FileNotFoundError:
                return read(log_path, offset, limit)
            except OSError:  # replaced by something that is not a plain file meanwhile
                return Chunk(b"", end, end, end, 0)
            return Chunk(data, offset, offset + len(data), end, skipped)
    # offset falls in a gap (a generation deleted): jump to the next existing data
    following = [s for s in segs if s.base > offset]
    if following:
        nxt = following[0]
        return read(log_path, nxt.base, limit) if nxt.size else Chunk(b"", nxt.base, nxt.base, end, nxt.base - offset)
    return Chunk(b"", end, end, end, 0)


def end_offset(log_path: Path) -> int:
    segs = segments(log_path)
    return segs[-1].end if segs else 0


def tail_offset(log_path: Path, lines: int, max_bytes: int = 256 * 1024) -> int:
    """The offset where the last `lines` lines begin (bounded by max_bytes)."""
    end = end_offset(log_path)
    chunk = read(log_path, max(0, end - max_bytes), max_bytes)
    data = chunk.data
    if not data:
        return end
    cut = len(data)
    stripped = data[:-1] if data.endswith(b"\n") else data
    count = 0
    pos = len(stripped)
    while count < lines:
        pos = stripped.rfind(b"\n", 0, pos)
        if pos < 0:
            return chunk.offset
        count += 1
        cut = pos + 1
    return chunk.offset + cut
