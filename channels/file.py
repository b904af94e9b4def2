"""File channel: each message becomes one ``.eml`` file in a folder (demo, air-gapped sites,
or a mail pickup directory). Writes are atomic and named by message id, so a retry
replaces the same file and a folder never holds two copies of one message."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from breachwatch.channels.mime import build_email
from breachwatch.core.clock import utcnow
from breachwatch.notifier.delivery import Delivered, LookupResult, NotFound, RetryableError
from breachwatch.notifier.message import OutboxMessage

_SAFE_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$")


class FileChannel:
    """Writes RFC 5322 ``.eml`` files into ``directory``."""

    def __init__(self, directory: Path, sender: str, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.directory = Path(directory)
        self.sender = sender
        self.clock = clock

    def __repr__(self) -> str:
        return f"FileChannel({str(self.directory)!r})"

    def path_for(self, message_id: str) -> Path:
        """Where ``message_id`` is written; ids that are not plain names are hashed, so an id
        can never point outside the folder."""
        stem = message_id if _SAFE_NAME.fullmatch(message_id) else hashlib.sha256(message_id.encode()).hexdigest()
        return self.directory / f"{stem}.eml"

    def send(self, message: OutboxMessage) -> str:
        target = self.path_for(message.message_id)
        data = build_email(message, self.sender, self.clock()).as_bytes()
        tmp_name: str | None = None
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            # A temporary file in the same folder, then rename: readers see the whole file
            # or none of it, and a crash leaves only a dot-file that is never picked up.
            fd, tmp_name = tempfile.mkstemp(prefix=".tmp-", suffix=".eml", dir=self.directory)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp_name, target)
            tmp_name = None
            _fsync_dir(self.directory)
        except OSError as exc:
            raise RetryableError(f"cannot write {target.name}: {exc.strerror or type(exc).__name__}") from None
        finally:
            if tmp_name is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp_name)
        return target.name

    def lookup(self, message_id: str) -> LookupResult:
        target = self.path_for(message_id)
        return Delivered(target.name) if target.is_file() else NotFound()


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable; not every platform can open a directory.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)
