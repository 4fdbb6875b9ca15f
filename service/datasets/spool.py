"""An upload's file part on disk while it arrives: a reader blocks for the bytes not yet received, so a CSV is
parsed as it arrives instead of after it (the temp file stays for error diagnosis and re-reads)."""

from __future__ import annotations

import io
import threading
from pathlib import Path


WAIT_BYTES = 4 << 20            # a read waits for up to this many bytes to have arrived before it returns


class UploadAborted(Exception):
    """The upload failed (413, cut short, malformed) or its parse was superseded: the reader stops."""


class Spool:
    """The temp file of a file part that is still being written; ``reader()`` opens it from the start."""

    def __init__(self, path: Path, expected: int | None = None):
        self.path = path
        self.expected = expected              # about how many bytes will arrive (the request's length), if known
        self.size = 0
        self.state = "open"                   # "open" -> "done" | "failed"
        self._targets: list[int] = []         # the sizes that waiting readers need
        self._cond = threading.Condition()

    def grew(self, size: int) -> None:
        """``size`` bytes are written (and visible to readers); a reader is woken once what it waits for is in."""
        with self._cond:
            self.size = size
            if self._targets and size >= min(self._targets):
                self._cond.notify_all()

    def end(self, state: str) -> None:
        """The part is complete ("done") or will never be ("failed"); readers wake up."""
        with self._cond:
            if self.state == "open":
                self.state = state
            self._cond.notify_all()

    def cancel(self) -> None:
        """Readers stop (UploadAborted): what they would produce is not wanted any more."""
        with self._cond:
            self.state = "failed"
            self._cond.notify_all()

    def wait(self, pos: int, want: int = 1) -> bool:
        """Block until ``want`` bytes past ``pos`` are written, or fewer once the part ended (True), or the part
        ended at ``pos`` (False). Waiting for a large read whole wakes the reader once, not at every chunk."""
        with self._cond:
            target = pos + want
            while self.state == "open" and self.size < target:
                self._targets.append(target)
                try:
                    self._cond.wait()
                finally:
                    self._targets.remove(target)
            if self.state == "failed":
                raise UploadAborted("the upload did not complete")
            return self.size > pos

    def reader(self) -> io.BufferedReader:
        """A binary file object over the part that blocks at the bytes not yet received."""
        return io.BufferedReader(_SpoolReader(self), buffer_size=1 << 20)


class _SpoolReader(io.RawIOBase):
    """Raw reads of the spool's file, each waiting until at least one more byte is written."""

    def __init__(self, spool: Spool):
        self.spool = spool
        self.f = open(spool.path, "rb", buffering=0)
        self.pos = 0

    def readable(self) -> bool:
        """Always."""
        return True

    def readinto(self, b) -> int:
        """Up to ``len(b)`` received bytes (all of them unless the part ends first); 0 at the end of the part."""
        if not self.spool.wait(self.pos, min(len(b), WAIT_BYTES)):
            return 0
        n = self.f.readinto(b) or 0
        self.pos += n
        return n

    def close(self) -> None:
        """Close the file."""
        self.f.close()
        super().close()
