"""What one attempt keeps of its logging records and of what it printed.

Each kind (records, stdout, stderr) has CAPTURE_LIMIT bytes: the first half goes to its
head, and once the head is full, its tail keeps the latest half, dropping from its
front. An attempt that loops printing keeps how it began and how it ended (the error at
the end is usually what someone reads the output for), and a mark where the dropped part
began says how much it was. Every entry costs ENTRY_OVERHEAD bytes more than its text,
so many tiny ones are bounded too.

Entries are numbered in the order they were made, across kinds, so the stored list keeps
records and output interleaved as they happened. Consecutive writes to one stream join
one entry (one buffer: a million one-character writes cost one entry, not a million).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from durable._limits import CAPTURE_LIMIT

__all__ = ["ENTRY_OVERHEAD", "HALF", "Kept"]

#: what each entry costs beyond its text, so that empty records and one-character writes
#: are bounded as well
ENTRY_OVERHEAD = 100
#: the head and the tail of each kind
HALF = CAPTURE_LIMIT // 2

Now = Callable[[], str]  # the time of a new entry, asked only when one begins


@dataclass
class _Item:
    seq: int  # the entry's number, in the order entries were made
    time: str
    cost: int
    stream: str = ""  # an output entry's
    record: dict[str, Any] | None = None  # a logging record's entry
    data: bytearray = field(default_factory=bytearray)  # an output entry's text (UTF-8)


@dataclass
class _Lane:
    """One kind's head and tail."""

    head: list[_Item] = field(default_factory=list)
    head_bytes: int = 0
    head_full: bool = False
    tail: deque[_Item] = field(default_factory=deque)
    tail_bytes: int = 0
    dropped: int = 0  # records (logs) or bytes (streams) that were not kept
    first_dropped: tuple[int, str] | None = None  # (seq, time) of the earliest entry cut

    def to_tail(self, item: _Item) -> None:
        self.head_full = True
        self.tail.append(item)
        self.tail_bytes += item.cost
        self.trim()

    def trim(self) -> None:
        """Drop from the tail's front until it fits (output: to the byte)."""
        while self.tail_bytes > HALF:
            first, excess = self.tail[0], self.tail_bytes - HALF
            if first.record is None and len(first.data) > excess:
                # (cut where a UTF-8 character begins: none is kept in part)
                while excess < len(first.data) and first.data[excess] & 0xC0 == 0x80:
                    excess += 1
                del first.data[:excess]
                first.cost -= excess
                self.tail_bytes -= excess
                self.drop(excess, first)
                return
            self.tail.popleft()
            self.tail_bytes -= first.cost
            self.drop(1 if first.record is not None else len(first.data), first)

    def drop(self, amount: int, item: _Item) -> None:
        self.dropped += amount
        if self.first_dropped is None or item.seq < self.first_dropped[0]:
            self.first_dropped = (item.seq, item.time)


class Kept:
    """An attempt's records and output, bounded (not thread-safe: the StepRun's lock
    guards it)."""

    def __init__(self) -> None:
        self._lanes = {"logs": _Lane(), "stdout": _Lane(), "stderr": _Lane()}
        self._seq = 0
        self._open: _Item | None = None  # the latest entry, if it is output

    def record(self, entry: dict[str, Any], time: str) -> None:
        """Keep a logging record's entry (``{"time", "level", "logger", "message"}``)."""
        size = _size(entry)
        if ENTRY_OVERHEAD + size > HALF:  # one record larger than a half: its texts cut
            entry = dict(entry)
            for key in ("message", "exception"):
                if key in entry:
                    entry[key] = _shorten(str(entry[key]), (HALF - ENTRY_OVERHEAD) // 2 - 64)
            size = _size(entry)
        self._open = None
        lane, item = self._lanes["logs"], _Item(self._next(), time, ENTRY_OVERHEAD + size)
        item.record = entry
        if not lane.head_full and lane.head_bytes + item.cost <= HALF:
            lane.head.append(item)
            lane.head_bytes += item.cost
        else:
            lane.to_tail(item)

    def write(self, stream: str, text: str, now: Now) -> None:
        """Keep text written to ``stream`` ("stdout" or "stderr")."""
        lane = self._lanes[stream]
        data = text.encode("utf-8", "replace")
        last = self._open if self._open is not None and self._open.stream == stream else None
        if not lane.head_full:
            in_head = last is not None and lane.head and lane.head[-1] is last
            room = HALF - lane.head_bytes - (0 if in_head else ENTRY_OVERHEAD)
            if room > 0:
                room = _boundary(data, room)
                part, data = data[:room], data[room:]
                if in_head and last is not None:
                    last.data += part
                    last.cost += len(part)
                elif part:
                    last = _Item(self._next(), now(), ENTRY_OVERHEAD + len(part), stream)
                    last.data += part
                    lane.head.append(last)
                lane.head_bytes += len(part) + (0 if in_head else ENTRY_OVERHEAD if part else 0)
                self._open = last
                if not data:
                    return
            lane.head_full = True
            last = None  # the rest begins an entry of the tail
        elif last is not None and not (lane.tail and lane.tail[-1] is last):
            last = None
        if last is None:
            last = _Item(self._next(), now(), ENTRY_OVERHEAD, stream)
            lane.tail.append(last)
            lane.tail_bytes += ENTRY_OVERHEAD
            self._open = last
        last.data += data
        last.cost += len(data)
        lane.tail_bytes += len(data)
        lane.trim()

    def _next(self) -> int:
        self._seq += 1
        return self._seq

    def entries(self) -> list[dict[str, Any]]:
        """What is kept, in the order it was made, with a mark where each kind's dropped
        part began: ``{"time", "cut": "logs" | "stdout" | "stderr", "dropped",
        "message"}`` (dropped counts records for logs, bytes for a stream)."""
        placed: list[tuple[float, _Item | dict[str, Any]]] = []
        for kind, lane in self._lanes.items():
            placed.extend((item.seq, item) for item in (*lane.head, *lane.tail))
            if lane.dropped and lane.first_dropped is not None:
                placed.append((lane.first_dropped[0] - 0.5, _mark(kind, lane)))
        placed.sort(key=lambda p: p[0])
        out: list[dict[str, Any]] = []
        text: list[bytearray] = []  # the parts of the output entry out[-1], if it is one
        for _, item in placed:
            if isinstance(item, _Item) and item.record is None:
                if text and out[-1]["stream"] == item.stream:
                    text.append(item.data)  # (a write the head's bound split: one entry)
                    continue
                _give_text(out, text)
                out.append({"time": item.time, "stream": item.stream, "text": ""})
                text.append(item.data)
                continue
            _give_text(out, text)
            out.append(item if isinstance(item, dict) else item.record or {})
        _give_text(out, text)
        return out


def _give_text(out: list[dict[str, Any]], text: list[bytearray]) -> None:
    if text:
        out[-1]["text"] = b"".join(text).decode("utf-8", "replace")
        text.clear()


def _size(entry: dict[str, Any]) -> int:
    size = len(str(entry.get("message", "")).encode("utf-8", "replace"))
    return size + len(str(entry.get("exception", "")).encode("utf-8", "replace"))


def _boundary(data: bytes, room: int) -> int:
    """``room`` moved back to where a UTF-8 character begins (at most 3 bytes)."""
    while 0 < room < len(data) and data[room] & 0xC0 == 0x80:
        room -= 1
    return room


def _shorten(text: str, room: int) -> str:
    data = text.encode("utf-8", "replace")
    if len(data) <= room:
        return text
    return data[:room].decode("utf-8", "ignore") + f" [... {len(data) - room} bytes cut]"


def _mark(kind: str, lane: _Lane) -> dict[str, Any]:
    half = f"{HALF // 1024} KiB"
    if kind == "logs":
        what = f"{lane.dropped} log records were dropped here"
        keeps = f"the first and the last {half} of its log records"
    else:
        what = f"{lane.dropped} bytes of {kind} were dropped here"
        keeps = f"the first and the last {half} of its {kind}"
    return {
        "time": lane.first_dropped[1] if lane.first_dropped else None,
        "cut": kind,
        "dropped": lane.dropped,
        "message": f"[{what}: an attempt keeps {keeps}]",
    }
