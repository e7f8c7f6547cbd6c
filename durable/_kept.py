"""What one attempt keeps of its logging records and of what it printed.

Each kind (records, stdout, stderr) has CAPTURE_LIMIT bytes: the first half goes to its
head, and once the head is full, its tail keeps the latest half, dropping from its
front. An attempt that loops printing keeps how it began and how it ended (the error at
the end is usually what someone reads the output for), and a mark where the dropped part
was says how much it was. Every entry costs ENTRY_OVERHEAD bytes more than its text, so
many tiny ones are bounded too.

Entries are numbered in the order they were made, across kinds, so the stored list keeps
records and output interleaved as they happened. Consecutive writes to one stream join
one entry.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from durable._limits import CAPTURE_LIMIT

__all__ = ["ENTRY_OVERHEAD", "HALF", "Kept"]

#: what each entry costs beyond its text, so that empty records and one-character writes
#: are bounded as well
ENTRY_OVERHEAD = 100
#: the head and the tail of each kind
HALF = CAPTURE_LIMIT // 2


@dataclass
class _Item:
    seq: int  # the entry's number; the chunks of one output entry share it
    time: str
    cost: int
    stream: str = ""  # an output chunk's
    record: dict[str, Any] | None = None  # a logging record's entry
    data: bytes = b""  # a chunk of output (UTF-8)


@dataclass
class _Lane:
    """One kind's head and tail."""

    head: list[_Item] = field(default_factory=list)
    head_bytes: int = 0
    head_full: bool = False
    tail: deque[_Item] = field(default_factory=deque)
    tail_bytes: int = 0
    dropped: int = 0  # records (logs) or bytes (streams) that were not kept
    dropped_at: str | None = None  # when the first of them was made

    def add(self, item: _Item) -> None:
        if not self.head_full and self.head_bytes + item.cost <= HALF:
            self.head.append(item)
            self.head_bytes += item.cost
            return
        self.head_full = True
        self.tail.append(item)
        self.tail_bytes += item.cost
        while self.tail_bytes > HALF:
            first, excess = self.tail[0], self.tail_bytes - HALF
            if first.record is None and len(first.data) > excess:  # output: cut its front
                first.data = first.data[excess:]
                first.cost -= excess
                self.tail_bytes -= excess
                self.drop(excess, first.time)
                break
            self.tail.popleft()
            self.tail_bytes -= first.cost
            self.drop(1 if first.record is not None else len(first.data), first.time)

    def drop(self, amount: int, time: str) -> None:
        self.dropped += amount
        if self.dropped_at is None:
            self.dropped_at = time

    def cut_seq(self) -> float:
        """Where the mark of what was dropped goes: after the last entry of the head."""
        return self.head[-1].seq + 0.5 if self.head else -0.5


class Kept:
    """An attempt's records and output, bounded (not thread-safe: the StepRun's lock
    guards it)."""

    def __init__(self) -> None:
        self._lanes = {"logs": _Lane(), "stdout": _Lane(), "stderr": _Lane()}
        self._seq = 0
        self._open: tuple[str, int, bool] | None = None  # (stream, seq, in head) of the last

    def record(self, entry: dict[str, Any], time: str) -> None:
        """Keep a logging record's entry (``{"time", "level", "logger", "message"}``)."""
        size = len(str(entry.get("message", "")).encode("utf-8", "replace"))
        size += len(str(entry.get("exception", "")).encode("utf-8", "replace"))
        if ENTRY_OVERHEAD + size > HALF:  # one record larger than a half: its message cut
            entry = dict(entry, message=_shorten(str(entry.get("message", ""))))
            entry.pop("exception", None)
            size = len(entry["message"].encode("utf-8", "replace"))
        self._open = None
        self._lanes["logs"].add(_Item(self._next(), time, ENTRY_OVERHEAD + size, record=entry))

    def write(self, stream: str, text: str, time: str) -> None:
        """Keep text written to ``stream`` ("stdout" or "stderr")."""
        lane = self._lanes[stream]
        data = text.encode("utf-8", "replace")
        last = self._open if self._open is not None and self._open[0] == stream else None
        if not lane.head_full:
            joins = last is not None and last[2]
            overhead = 0 if joins else ENTRY_OVERHEAD
            room = HALF - lane.head_bytes - overhead
            if room > 0:
                seq = last[1] if joins and last is not None else self._next()
                part, data = data[:room], data[room:]
                lane.head.append(_Item(seq, time, overhead + len(part), stream, data=part))
                lane.head_bytes += overhead + len(part)
                self._open = (stream, seq, True)
                if not data:
                    return
            lane.head_full = True
            last = None  # the rest starts an entry of the tail, after the mark
        elif last is not None and last[2]:
            last = None
        overhead = 0 if last is not None else ENTRY_OVERHEAD
        if overhead + len(data) > HALF:  # more than the tail holds: its end
            lane.drop(len(data) - (HALF - overhead), time)
            data = data[len(data) - (HALF - overhead) :]
        seq = last[1] if last is not None else self._next()
        lane.add(_Item(seq, time, overhead + len(data), stream, data=data))
        self._open = (stream, seq, False)

    def _next(self) -> int:
        self._seq += 1
        return self._seq

    def entries(self) -> list[dict[str, Any]]:
        """What is kept, in the order it was made, with a mark where each kind's dropped
        part was: ``{"time", "cut": "logs" | "stdout" | "stderr", "dropped", "message"}``
        (dropped counts records for logs, bytes for a stream)."""
        placed: list[tuple[float, int, dict[str, Any] | _Item]] = []
        for kind, lane in self._lanes.items():
            placed.extend(
                (i.seq, len(placed) + n, i) for n, i in enumerate((*lane.head, *lane.tail))
            )
            if lane.dropped:
                placed.append((lane.cut_seq(), len(placed), _mark(kind, lane)))
        placed.sort(key=lambda p: (p[0], p[1]))
        out: list[dict[str, Any]] = []
        chunks: list[bytes] = []
        last_seq: float | None = None
        for seq, _, item in placed:
            if isinstance(item, _Item) and item.record is None and seq == last_seq:
                chunks.append(item.data)  # the next chunk of the same output entry
                continue
            _flush(out, chunks)
            last_seq = seq
            if isinstance(item, dict):
                out.append(item)
            elif item.record is not None:
                out.append(item.record)
            else:
                out.append({"time": item.time, "stream": item.stream, "text": ""})
                chunks = [item.data]
        _flush(out, chunks)
        return out


def _flush(out: list[dict[str, Any]], chunks: list[bytes]) -> None:
    if chunks and out and "stream" in out[-1]:
        # (a character the bound cut in two is dropped whole)
        out[-1]["text"] = b"".join(chunks).decode("utf-8", "ignore")
    chunks.clear()


def _shorten(message: str) -> str:
    room = HALF - ENTRY_OVERHEAD - 64
    data = message.encode("utf-8", "replace")
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
        "time": lane.dropped_at,
        "cut": kind,
        "dropped": lane.dropped,
        "message": f"[{what}: an attempt keeps {keeps}]",
    }
