"""The sidecar's wire format: whatever way the pipe splits the bytes, the same messages come out."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st
from lanewise.core.context import ResponseOutcome
from lanewise.core.types import Principal, StageTiming, Usage, UsageEvent
from lanewise.observe.record import RequestRecord
from lanewise.observe.wire import (
    CONFIG,
    HEADER,
    REQUEST,
    STAGE,
    USAGE,
    FrameBuffer,
    FrameReader,
    StandaloneStage,
    StandaloneUsage,
    array_prefix,
    config_frame,
)

names = st.text(min_size=1, max_size=12)
principals = st.builds(Principal, tenant=names, user=st.none() | names)
usage_events = st.builds(
    UsageEvent,
    request_id=names,
    principal=principals,
    model=names,
    operation=st.just("chat"),
    usage=st.builds(
        Usage, prompt_tokens=st.integers(0, 10**6), completion_tokens=st.integers(0, 10**6)
    ),
    ttft_s=st.none() | st.floats(0, 10),
)
stage_events = st.builds(
    StageTiming,
    request_id=names,
    stage=names,
    started_at=st.floats(0, 2e9),
    duration_s=st.floats(0, 100),
    ok=st.booleans(),
    attributes=st.dictionaries(names, st.integers(-(2**63), 2**63 - 1) | names, max_size=3),
)
records = st.builds(
    RequestRecord,
    request_id=names,
    method=st.sampled_from(["GET", "POST"]),
    path=names,
    route=names,
    response=st.builds(
        ResponseOutcome,
        status=st.integers(100, 599),
        stream=st.booleans(),
        error_type=st.none() | names,
        failure=st.none() | names,
    ),
    principal=st.none() | principals,
    usage_events=st.lists(usage_events, max_size=3),
    stage_events=st.lists(stage_events, max_size=3),
)
messages = st.one_of(
    st.tuples(st.just(REQUEST), records),
    st.tuples(st.just(USAGE), st.builds(StandaloneUsage, event=usage_events, at=st.floats(0, 2e9))),
    st.tuples(st.just(STAGE), st.builds(StandaloneStage, event=stage_events, at=st.floats(0, 2e9))),
)


def fields(message: Any) -> Any:
    """Comparable content (RequestRecord compares by identity)."""
    return {name: getattr(message, name) for name in message.__struct_fields__}


@given(st.lists(messages, max_size=20), st.lists(st.integers(1, 400), max_size=40))
def test_messages_survive_any_split_of_the_stream(sent, cuts):
    buffer = FrameBuffer()
    config = b'{"observe": {}}'
    for kind, message in sent:
        if kind == REQUEST:  # as the link queues them: a run of records, one message
            buffer.add_record(message)
        else:
            buffer.add(kind, message)
    assert buffer.messages == len(sent)
    # Bytes queued (a run's header is counted once the run is framed).
    assert buffer.size == sum(len(chunk) for chunk in [*buffer.chunks, *buffer.run])
    data, count = buffer.take()
    assert count == len(sent)
    assert buffer.take() == (b"", 0)
    stream = config_frame(config) + bytes(data)
    errors: list[None] = []
    reader = FrameReader(on_error=lambda: errors.append(None))
    received: list[tuple[int, Any]] = []
    at = 0
    for cut in [*cuts, len(stream)]:
        received.extend(reader.feed(stream[at : at + cut]))
        at += cut
    received.extend(reader.feed(stream[at:]))
    assert not errors
    assert not reader.pending
    assert received[0] == (CONFIG, config)
    assert [(k, fields(m)) for k, m in received[1:]] == [(k, fields(m)) for k, m in sent]


def test_a_view_of_the_pending_bytes_held_elsewhere_does_not_stop_the_reader():
    """Something else (a profiler, a thread in ``gc.get_objects()``) may still hold a slice
    of the read buffer; the sidecar used to die of ``BufferError`` there."""
    buffer = FrameBuffer()
    for at in (1.0, 2.0, 3.0):
        buffer.add(USAGE, StandaloneUsage(event=_usage(), at=at))
    stream = buffer.take()[0]
    reader = FrameReader(on_error=lambda: None)
    first = reader.feed(stream[:-5])
    held = memoryview(reader.pending)[:4]  # an export of the bytearray stays alive
    rest = reader.feed(stream[-5:])
    assert [m.at for _, m in first + rest] == [1.0, 2.0, 3.0]
    assert not reader.pending
    held.release()


def test_a_bad_message_is_counted_and_skipped():
    good = FrameBuffer()
    good.add(USAGE, StandaloneUsage(event=_usage(), at=1.0))
    payload = b"\xc1not msgpack"
    stream = (
        HEADER.pack(len(payload), USAGE) + payload + HEADER.pack(2, 99) + b"xx" + good.take()[0]
    )
    errors: list[None] = []
    out = FrameReader(on_error=lambda: errors.append(None)).feed(stream)
    assert len(errors) == 2
    assert [kind for kind, _ in out] == [USAGE]


@pytest.mark.parametrize("length", [0, 1, 15, 16, 65_535, 65_536])
def test_a_run_of_records_is_framed_as_a_msgpack_array(length):
    """The run's header is the one msgpack gives an array of that length."""
    assert msgspec.msgpack.encode([None] * length).startswith(array_prefix(length))
    assert len(msgspec.msgpack.encode([None] * length)) == len(array_prefix(length)) + length


def test_an_unencodable_record_leaves_the_run_as_it_was():
    buffer = FrameBuffer()
    buffer.add_record(RequestRecord(request_id="fine"))
    size = buffer.size
    with pytest.raises(TypeError):
        buffer.add_record(RequestRecord(request_id="odd", index_version=object()))
    assert (buffer.size, buffer.messages) == (size, 1)
    received = FrameReader(on_error=lambda: None).feed(buffer.take()[0])
    assert [(kind, m.request_id) for kind, m in received] == [(REQUEST, "fine")]


def test_an_unencodable_message_leaves_no_half_frame():
    buffer = FrameBuffer()
    buffer.add(USAGE, StandaloneUsage(event=_usage(), at=1.0))
    size = buffer.size
    try:
        buffer.add(USAGE, object())
    except TypeError:
        pass
    else:
        raise AssertionError("an object msgspec cannot encode must raise")
    assert buffer.size == size
    assert buffer.messages == 1
    assert len(buffer.take()[0]) == size


def _usage() -> UsageEvent:
    return UsageEvent(
        request_id="r",
        principal=Principal(tenant="t"),
        model="m",
        operation="chat",
        usage=Usage(prompt_tokens=1, completion_tokens=2),
    )
