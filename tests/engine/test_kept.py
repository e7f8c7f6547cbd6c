"""What an attempt keeps of its records and output (durable._kept), as a state machine
driven by hypothesis: each kind keeps its first and its last half, in order, the dropped
middle marked with its size."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from durable._kept import ENTRY_OVERHEAD, HALF, Kept
from durable._limits import CAPTURE_LIMIT

T = "2026-01-01T00:00:00+00:00"


def now() -> str:
    return T


ops = st.lists(
    st.one_of(
        st.tuples(st.just("logs"), st.integers(0, 3000)),
        st.tuples(st.sampled_from(["stdout", "stderr"]), st.integers(0, 9000)),
    ),
    max_size=120,
)


def _run(plan: list[tuple[str, int]]) -> tuple[list[dict], dict[str, list[str]]]:
    kept = Kept()
    made: dict[str, list[str]] = {"logs": [], "stdout": [], "stderr": []}
    for n, (kind, size) in enumerate(plan):
        text = (f"<{n}>" + "abcdefghij" * (size // 10 + 1))[:size]
        made[kind].append(text)
        if kind == "logs":
            kept.record({"time": T, "level": "INFO", "logger": "t", "message": text}, T)
        else:
            kept.write(kind, text, now)
    return kept.entries(), made


@settings(max_examples=300, deadline=None)
@given(ops)
def test_each_stream_keeps_its_head_and_its_tail_and_marks_the_middle(plan):
    entries, made = _run(plan)
    for stream in ("stdout", "stderr"):
        whole = "".join(made[stream])
        kept = "".join(e["text"] for e in entries if e.get("stream") == stream)
        marks = [e for e in entries if e.get("cut") == stream]
        if not marks:
            assert kept == whole
            continue
        (mark,) = marks
        # what is kept is a beginning of the output and an end of it, the mark between
        assert mark["dropped"] > 0
        assert len(kept) + mark["dropped"] == len(whole)
        at = entries.index(mark)
        before = "".join(e["text"] for e in entries[:at] if e.get("stream") == stream)
        after = "".join(e["text"] for e in entries[at:] if e.get("stream") == stream)
        assert whole.startswith(before) and whole.endswith(after)
        assert len(before) <= HALF and len(after) <= HALF
        assert after, "the end of the output is always kept"
        count = sum(1 for e in entries if e.get("stream") == stream)
        assert len(kept) + ENTRY_OVERHEAD * (count - 1) <= CAPTURE_LIMIT


@settings(max_examples=300, deadline=None)
@given(ops)
def test_records_keep_the_first_and_the_last_in_order(plan):
    entries, made = _run(plan)
    records = [e["message"] for e in entries if "level" in e]
    marks = [e for e in entries if e.get("cut") == "logs"]
    if not marks:
        assert records == made["logs"]
        return
    (mark,) = marks
    at = entries.index(mark)
    first = [e["message"] for e in entries[:at] if "level" in e]
    last = [e["message"] for e in entries[at:] if "level" in e]
    assert made["logs"][: len(first)] == first
    assert last == made["logs"][len(made["logs"]) - len(last) :]
    assert len(first) + len(last) + mark["dropped"] == len(made["logs"])
    assert last, "the latest record is always kept"
    cost = sum(ENTRY_OVERHEAD + len(m.encode()) for m in records)
    assert cost <= CAPTURE_LIMIT


@settings(max_examples=200, deadline=None)
@given(ops)
def test_entries_keep_the_order_they_were_made_in(plan):
    entries, _ = _run(plan)
    # every record and output entry begins with the <n> of the write that began it, unless
    # a cut went through it; those that do must appear in increasing order
    numbers = []
    for e in entries:
        text = e.get("message") if "level" in e else e.get("text")
        if text and text.startswith("<") and ">" in text:
            head = text[1 : text.index(">")]
            if head.isdigit():
                numbers.append(int(head))
    assert numbers == sorted(numbers)


def test_a_character_cut_by_the_bound_is_dropped_whole():
    kept = Kept()
    for _ in range(100):
        kept.write("stdout", "é" * 1000, now)
    entries = kept.entries()
    texts = [e["text"] for e in entries if "stream" in e]
    assert all(set(t) <= {"é"} for t in texts)
    (mark,) = [e for e in entries if "cut" in e]
    kept_bytes = sum(len(t.encode()) for t in texts)
    assert kept_bytes + mark["dropped"] in range(200_000 - 3, 200_001)
    assert mark["message"] == (
        f"[{mark['dropped']} bytes of stdout were dropped here: an attempt keeps the first "
        "and the last 32 KiB of its stdout]"
    )


def test_one_huge_record_is_shortened_not_dropped():
    kept = Kept()
    kept.record({"time": T, "level": "ERROR", "logger": "t", "message": "x" * 200_000}, T)
    (entry,) = kept.entries()
    assert entry["message"].startswith("x" * 1000)
    assert entry["message"].endswith("bytes cut]")
    assert len(entry["message"]) < HALF


def test_one_huge_write_keeps_its_beginning_and_its_end():
    kept = Kept()
    text = "".join(f"line {i}\n" for i in range(50_000))
    kept.write("stderr", text, now)
    entries = kept.entries()
    assert [("stream" in e, e.get("cut")) for e in entries] == [
        (True, None),
        (False, "stderr"),
        (True, None),
    ]
    assert entries[0]["text"].startswith("line 0\nline 1\n")
    assert entries[2]["text"].endswith("line 49999\n")


def test_the_mark_stands_where_the_dropped_part_began_and_says_when():
    kept = Kept()
    kept.write("stdout", "a" * (HALF - 100), lambda: "10:00")
    kept.record({"time": "10:01", "level": "INFO", "logger": "x", "message": "R1"}, "10:01")
    kept.write("stdout", "b" * 100_000, lambda: "10:05")
    shown = [(e.get("stream") or e.get("cut") or e["message"], e["time"]) for e in kept.entries()]
    assert shown == [("stdout", "10:00"), ("R1", "10:01"), ("stdout", "10:05"), ("stdout", "10:05")]
    entries = kept.entries()
    assert entries[2]["cut"] == "stdout"  # after R1: everything dropped came after it
    assert entries[0]["text"] == "a" * (HALF - 100)
    assert entries[3]["text"] == "b" * (HALF - ENTRY_OVERHEAD)


def test_a_character_at_the_heads_bound_is_kept_whole_in_one_entry():
    kept = Kept()
    kept.write("stdout", "a" * (HALF - 101) + "é" + "bbbb", now)
    (entry,) = kept.entries()
    assert entry["text"] == "a" * (HALF - 101) + "é" + "bbbb"


def test_many_tiny_writes_cost_one_entry_each_side():
    kept = Kept()
    for _ in range(200_000):
        kept.write("stdout", "x", now)
    lane = kept._lanes["stdout"]
    assert len(lane.head) == 1 and len(lane.tail) == 1
    entries = kept.entries()
    assert [e.get("cut") for e in entries] == [None, "stdout", None]
    assert len(entries[0]["text"]) + len(entries[2]["text"]) + entries[1]["dropped"] == 200_000


def test_a_huge_record_keeps_its_exception_shortened():
    kept = Kept()
    entry = {"time": T, "level": "ERROR", "logger": "t", "message": "m" * 90_000}
    kept.record({**entry, "exception": "E" * 90_000}, T)
    (got,) = kept.entries()
    assert got["exception"].startswith("EEE") and got["exception"].endswith("bytes cut]")
    assert len(got["message"].encode()) + len(got["exception"].encode()) < HALF
