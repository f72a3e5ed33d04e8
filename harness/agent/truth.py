"""The agent's ground truth: JSONL records on the host monotonic clock (no telemetry offset applied).

Truth log (`--truth-log`): `{"kind": "call", ...}` when a call starts and ends, `{"kind": "turn", ...}` once per
finished turn. Packet log (`--packet-log`): `{"kind": "packet", "dir": "out"|"in", ...}` per RTP media packet.
An in-process server also keeps every record in memory (`TruthLog.turns`, `.calls`, `.packets`).
"""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path

from harness.errors import VlhError


def _clean(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if hasattr(v, "item") and callable(v.item):  # numpy scalars
        return v.item()
    return v


class _Sink:
    def __init__(self, path: str | Path, what: str):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # unbuffered, appended: each record reaches the file in one write, so a reader never sees half of it
            # unless it reads during that write (see `read_jsonl(live=True)`)
            self.f = open(self.path, "ab", buffering=0)
        except OSError as exc:
            raise VlhError(f"{what} {self.path}: cannot open it for writing ({exc.strerror})") from None

    def write(self, rec: dict) -> None:
        data = (json.dumps(rec, separators=(",", ":")) + "\n").encode("utf-8")
        while data:
            data = data[self.f.write(data):]

    def close(self) -> None:
        self.f.close()


class TruthLog:
    def __init__(self, truth_path=None, packet_path=None, memory: bool = True, memory_packets: bool | None = None):
        self._truth = _Sink(truth_path, "truth log") if truth_path else None
        self._packets = _Sink(packet_path, "packet log") if packet_path else None
        self.memory = memory
        self.memory_packets = memory if memory_packets is None else memory_packets
        self.turns: list[dict] = []
        self.calls: list[dict] = []
        self.packets: list[dict] = []
        self._lock = threading.Lock()

    def record(self, rec: dict) -> None:
        rec = _clean(rec)
        with self._lock:
            if self.memory:
                (self.turns if rec.get("kind") == "turn" else self.calls).append(rec)
            if self._truth:
                self._truth.write(rec)

    def packet(self, rec: dict) -> None:
        if not (self._packets or self.memory_packets):
            return
        with self._lock:
            if self.memory_packets:
                self.packets.append(rec)
            if self._packets:
                self._packets.write(rec)

    @property
    def wants_packets(self) -> bool:
        return bool(self._packets or self.memory_packets)

    def turns_of(self, call: str) -> list[dict]:
        return [t for t in self.turns if t["call"] == call]

    def packets_of(self, call: str, direction: str) -> list[dict]:
        return [p for p in self.packets if p["call"] == call and p["dir"] == direction]

    def close(self) -> None:
        for s in (self._truth, self._packets):
            if s:
                s.close()


def read_jsonl(path, *, live: bool = False) -> list[dict]:
    """The records of a JSONL file. `live`: the file is still being written (another process's log); a last line
    without its newline is a record not yet finished and is left for the next read."""
    text = Path(path).read_text(encoding="utf-8")
    if live and not text.endswith("\n"):
        text = text[:text.rfind("\n") + 1]
    out = []
    for i, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                out.append(json.loads(line))
            except ValueError:
                raise VlhError(f"{path} line {i}: not a JSON record") from None
    return out
