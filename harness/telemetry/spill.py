"""Raw telemetry messages kept on disk, not in RAM: each event's message text is appended to an unlinked temporary
file as it arrives and the event keeps only where it is (`SpilledRaw`, a read-only mapping that parses it back when
read). A long call's messages grow with its turns (≈ 6 KB a turn as parsed dicts); on disk they cost no RSS."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping


class RawSpill:
    """One call's spill file (created at the first message; deleted by the OS when closed or collected)."""

    def __init__(self, directory: str | None = None):
        self.directory = directory
        self._file = None
        self.size = 0  # bytes written
        self.count = 0  # messages written

    def put(self, text: str) -> "SpilledRaw":
        if self._file is None:
            d = self.directory or os.environ.get("VLH_CAPTURE_DIR") or None
            self._file = tempfile.TemporaryFile(prefix="vlh-telemetry-", suffix=".jsonl", dir=d)
        data = text.encode("utf-8") + b"\n"
        os.pwrite(self._file.fileno(), data, self.size)  # positioned: no shared file offset between write and read
        ref = SpilledRaw(self, self.size, len(data) - 1)
        self.size += len(data)
        self.count += 1
        return ref

    def read(self, offset: int, length: int) -> bytes:
        return os.pread(self._file.fileno(), length, offset)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


class SpilledRaw(Mapping):
    """The parsed message an event came from, read back from its call's spill file on access (a mapping, so
    `raw["key"]`, `raw.get`, `dict(raw)` and `{**raw}` work as with the dict it replaces; pickles as that dict)."""

    __slots__ = ("_spill", "_offset", "_length")

    def __init__(self, spill: RawSpill, offset: int, length: int):
        self._spill, self._offset, self._length = spill, offset, length

    def _load(self) -> dict:
        return json.loads(self._spill.read(self._offset, self._length))

    def __getitem__(self, key):
        return self._load()[key]

    def __iter__(self):
        return iter(self._load())

    def __len__(self) -> int:
        return len(self._load())

    def __repr__(self) -> str:
        return repr(self._load())

    def __reduce__(self):
        return dict, (self._load(),)
