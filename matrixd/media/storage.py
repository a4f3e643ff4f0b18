"""Where media files live: the ``MediaStorage`` interface and its filesystem backend.

Files are addressed by ``FileLocation`` (what the file is), never by a path
from a request; a backend maps locations to its own keys. The filesystem
backend shards by media id so no directory grows huge::

    local_content/ab/cd/efgh...                 uploads to this server
    remote_content/<server>/ab/cd/efgh...       other servers' media, cached
    local_thumbnails/ab/cd/efgh.../<size>       thumbnails of local media
    remote_thumbnails/<server>/ab/cd/efgh.../<size>

New files are written under ``tmp/`` and renamed into place, so a reader never
sees a half-written file.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from typing import IO, Optional, Protocol

import attrs

from matrixd.media.blocking import BlockingRunner
from matrixd.media.ids import is_valid_media_id, is_valid_media_origin

logger = logging.getLogger(__name__)

COPY_CHUNK_SIZE = 64 * 1024


def _check_media_id(_inst: object, _attr: object, value: str) -> None:
    if not is_valid_media_id(value):
        raise ValueError(f"invalid media id {value!r}")


def _check_origin(_inst: object, _attr: object, value: Optional[str]) -> None:
    if value is not None and not is_valid_media_origin(value):
        raise ValueError(f"invalid media server name {value!r}")


def _check_thumbnail_name(_inst: object, _attr: object, value: Optional[str]) -> None:
    if value is not None and not is_valid_media_id(value):
        raise ValueError(f"invalid thumbnail name {value!r}")


@attrs.frozen(slots=True)
class FileLocation:
    """One file of the media repository.

    ``origin`` is None for media uploaded here, else the server it came from;
    ``thumbnail`` names a thumbnail of the media (None: the media itself). All
    parts are validated on construction, so a location is always a safe path.
    """

    media_id: str = attrs.field(validator=_check_media_id)
    origin: Optional[str] = attrs.field(default=None, validator=_check_origin)
    thumbnail: Optional[str] = attrs.field(default=None, validator=_check_thumbnail_name)

    def relative_path(self) -> str:
        """The path below the store's root, with ``/`` separators."""
        if self.origin is None:
            parts = ["local_thumbnails" if self.thumbnail else "local_content"]
        else:
            parts = ["remote_thumbnails" if self.thumbnail else "remote_content", self.origin]
        mid = self.media_id
        if len(mid) > 4:
            parts += [mid[0:2], mid[2:4], mid[4:]]
        else:
            # Shard directories have two-character names; "_short" cannot clash with them.
            parts += ["_short", mid]
        if self.thumbnail:
            parts.append(self.thumbnail)
        return "/".join(parts)


@attrs.frozen(slots=True)
class StoredFile:
    length: int
    sha256: str


class FileTooLargeError(Exception):
    """The source had more bytes than the ``max_size`` allowed; nothing was stored."""


class MediaWriter(Protocol):
    """A file being written piece by piece (e.g. while a remote server sends it)."""

    def write(self, data: bytes) -> None: ...

    @property
    def length(self) -> int: ...

    async def commit(self) -> StoredFile:
        """Make the file visible at its location."""
        ...

    async def abort(self) -> None:
        """Throw the partial file away."""
        ...


class MediaStorage(Protocol):
    """What the media repository needs from a place to keep files."""

    async def store_file(self, source: IO[bytes], location: FileLocation, max_size: Optional[int] = None) -> StoredFile:
        """Copy ``source`` from its start to ``location``, replacing any file there.

        Raises:
            FileTooLargeError: ``source`` holds more than ``max_size`` bytes.
        """
        ...

    async def store_bytes(self, data: bytes, location: FileLocation) -> StoredFile: ...

    def open_writer(self, location: FileLocation) -> MediaWriter: ...

    def open(self, location: FileLocation) -> Optional[IO[bytes]]:
        """The file for reading, or None if there is none. The caller closes it."""
        ...


def _sha256_copy(source: IO[bytes], dest: IO[bytes], max_size: Optional[int]) -> StoredFile:
    digest = hashlib.sha256()
    length = 0
    source.seek(0)
    while True:
        chunk = source.read(COPY_CHUNK_SIZE)
        if not chunk:
            break
        length += len(chunk)
        if max_size is not None and length > max_size:
            raise FileTooLargeError()
        digest.update(chunk)
        dest.write(chunk)
    return StoredFile(length, digest.hexdigest())


class FilesystemMediaStorage:
    """``MediaStorage`` on a local (or shared network) directory.

    Writes and renames run on the thread pool through ``blocking``; ``open``
    is a plain ``open()`` (cheap, and the caller streams from it).
    """

    def __init__(self, base_path: str, blocking: BlockingRunner) -> None:
        self._base = os.path.abspath(base_path)
        self._blocking = blocking

    @property
    def base_path(self) -> str:
        return self._base

    def path_for(self, location: FileLocation) -> str:
        return os.path.join(self._base, *location.relative_path().split("/"))

    def thumbnail_dir_for(self, location: FileLocation) -> str:
        """The directory holding every thumbnail of the media at ``location``."""
        parts = location.relative_path().split("/")
        kind = "local_thumbnails" if location.origin is None else "remote_thumbnails"
        return os.path.join(self._base, kind, *parts[1:])

    def _delete_blocking(self, location: FileLocation) -> None:
        content = self.path_for(location)
        try:
            os.remove(content)
        except FileNotFoundError:
            pass
        except OSError as e:
            logger.warning("deleting media file %s: %s", content, e)
        shutil.rmtree(self.thumbnail_dir_for(location), ignore_errors=True)

    async def delete(self, location: FileLocation) -> None:
        """Remove the media's content and all its thumbnails (on the thread pool; missing files are fine)."""
        await self._blocking.run(self._delete_blocking, location)

    def _temp_file(self) -> tuple[str, IO[bytes]]:
        tmp_dir = os.path.join(self._base, "tmp")
        os.makedirs(tmp_dir, exist_ok=True)
        fd, path = tempfile.mkstemp(dir=tmp_dir, prefix="upload-")
        return path, os.fdopen(fd, "wb")

    def _move_into_place(self, tmp_path: str, location: FileLocation) -> None:
        dest = self.path_for(location)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        os.replace(tmp_path, dest)

    @staticmethod
    def _discard(tmp_path: str) -> None:
        try:
            os.unlink(tmp_path)
        except FileNotFoundError:
            pass

    def _store_file_blocking(self, source: IO[bytes], location: FileLocation, max_size: Optional[int]) -> StoredFile:
        tmp_path, out = self._temp_file()
        try:
            with out:
                stored = _sha256_copy(source, out, max_size)
                out.flush()
                os.fsync(out.fileno())
            self._move_into_place(tmp_path, location)
        except BaseException:
            self._discard(tmp_path)
            raise
        return stored

    async def store_file(self, source: IO[bytes], location: FileLocation, max_size: Optional[int] = None) -> StoredFile:
        return await self._blocking.run(self._store_file_blocking, source, location, max_size)

    def _store_bytes_blocking(self, data: bytes, location: FileLocation) -> StoredFile:
        tmp_path, out = self._temp_file()
        try:
            with out:
                out.write(data)
            self._move_into_place(tmp_path, location)
        except BaseException:
            self._discard(tmp_path)
            raise
        return StoredFile(len(data), hashlib.sha256(data).hexdigest())

    async def store_bytes(self, data: bytes, location: FileLocation) -> StoredFile:
        return await self._blocking.run(self._store_bytes_blocking, data, location)

    def open_writer(self, location: FileLocation) -> "_FilesystemWriter":
        tmp_path, out = self._temp_file()
        return _FilesystemWriter(self, tmp_path, out, location)

    def open(self, location: FileLocation) -> Optional[IO[bytes]]:
        try:
            return open(self.path_for(location), "rb")
        except FileNotFoundError:
            return None


class _FilesystemWriter:
    """A temp file in the store that becomes ``location`` on ``commit``."""

    def __init__(self, storage: FilesystemMediaStorage, tmp_path: str, out: IO[bytes], location: FileLocation) -> None:
        self._storage = storage
        self._tmp_path = tmp_path
        self._out = out
        self._location = location
        self._digest = hashlib.sha256()
        self._length = 0
        self._done = False

    @property
    def length(self) -> int:
        return self._length

    def write(self, data: bytes) -> None:
        if self._done:
            raise ValueError("write to a finished media writer")
        self._out.write(data)
        self._digest.update(data)
        self._length += len(data)

    def _commit_blocking(self) -> None:
        with self._out:
            self._out.flush()
            os.fsync(self._out.fileno())
        self._storage._move_into_place(self._tmp_path, self._location)

    async def commit(self) -> StoredFile:
        self._done = True
        try:
            await self._storage._blocking.run(self._commit_blocking)
        except BaseException:
            self._storage._discard(self._tmp_path)
            raise
        return StoredFile(self._length, self._digest.hexdigest())

    async def abort(self) -> None:
        if self._done:
            return
        self._done = True
        self._out.close()
        self._storage._discard(self._tmp_path)
