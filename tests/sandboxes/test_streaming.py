"""The stream poller's bookkeeping, without a server: holes in the sequences are waited for, then
stepped over; the buffer stays contiguous and bounded."""

from datetime import UTC, datetime

from sandboxes.streaming import BUFFER_EVENTS, GAP_WAIT_S, EventBroker, Topic, sse_frame


def row(sequence: int, spec_id: int = 1) -> dict:
    return {
        "spec_id": spec_id,
        "sequence": sequence,
        "type": "agent.turn",
        "payload": {"n": sequence},
        "created_at": datetime(2026, 1, 1, tzinfo=UTC),
        "ticket_id": None,
        "task_id": None,
    }


def topic(spec_id: int = 1, base: int = 0) -> Topic:
    return Topic(spec_id=spec_id, base=base, settled_check=lambda ids: {})


def test_a_hole_is_waited_for_then_stepped_over():
    broker, followed = EventBroker(poll_s=1, keepalive_s=1), topic()

    broker._apply({1: followed}, [row(1), row(3)], now=100.0)
    assert followed.cursor == 1
    broker._apply({1: followed}, [row(3)], now=100.0 + GAP_WAIT_S / 2)
    assert followed.cursor == 1
    broker._apply({1: followed}, [row(2), row(3)], now=101.0)
    assert (followed.base, followed.cursor) == (0, 3)

    broker._apply({1: followed}, [row(5)], now=200.0)
    assert followed.cursor == 3
    broker._apply({1: followed}, [row(5), row(6)], now=200.0 + GAP_WAIT_S + 0.1)
    assert (followed.base, followed.cursor) == (4, 6)
    assert followed.frames_after(4) == [
        sse_frame(sequence=5, type="agent.turn", data=_data(5)),
        sse_frame(sequence=6, type="agent.turn", data=_data(6)),
    ]


def test_repeats_are_dropped_and_specs_do_not_wait_for_each_other():
    broker, first, second = EventBroker(poll_s=1, keepalive_s=1), topic(1), topic(2, base=10)

    changed = broker._apply({1: first, 2: second}, [row(1, 1), row(1, 1), row(12, 2), row(11, 2)], now=0.0)

    assert changed == {first}
    assert (first.cursor, second.cursor) == (1, 10)
    broker._apply({1: first, 2: second}, [row(11, 2), row(12, 2)], now=1.0)
    assert second.cursor == 12


def test_the_buffer_keeps_the_recent_events_contiguous():
    followed = topic()
    for sequence in range(1, BUFFER_EVENTS * 2 + 1):
        followed.append(sequence, b"x")

    assert followed.cursor == BUFFER_EVENTS * 2
    assert followed.base + len(followed.frames) == followed.cursor
    assert len(followed.frames) <= BUFFER_EVENTS * 3 // 2
    assert followed.frames_after(followed.base - 5) == followed.frames[:200]


def _data(sequence: int) -> dict:
    return {
        "sequence": sequence,
        "type": "agent.turn",
        "payload": {"n": sequence},
        "created_at": "2026-01-01T00:00:00Z",
        "ticket": None,
        "task": None,
    }
