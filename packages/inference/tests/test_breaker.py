"""Circuit breaker: transitions, and a hypothesis model check against a reference."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from lanewise.inference.pools.breaker import CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_threshold_half_opens_after_reset_and_closes_on_success():
    clock = Clock()
    b = CircuitBreaker(failure_threshold=2, reset_after_s=10, clock=clock)
    b.record_failure()
    assert b.state == "closed"
    b.record_failure()
    assert b.state == "open"
    assert not b.allow()
    assert b.retry_after_s() == 10
    clock.now = 10
    assert b.state == "half-open"
    assert b.allow()
    assert not b.allow()  # one probe at a time
    b.record_success()
    assert b.state == "closed"


def test_failed_probe_reopens_for_a_full_period():
    clock = Clock()
    b = CircuitBreaker(failure_threshold=1, reset_after_s=5, clock=clock)
    b.record_failure()
    clock.now = 5
    assert b.allow()
    b.record_failure()
    assert b.state == "open"
    assert b.retry_after_s() == 5


def test_released_probe_frees_the_slot():
    clock = Clock()
    b = CircuitBreaker(failure_threshold=1, reset_after_s=1, clock=clock)
    b.record_failure()
    clock.now = 1
    assert b.allow()
    b.release()
    assert b.allow()


ops = st.lists(
    st.one_of(
        st.just(("ok",)),
        st.just(("fail",)),
        st.just(("allow",)),
        st.just(("release",)),
        st.tuples(st.just("tick"), st.floats(min_value=0, max_value=20)),
    ),
    max_size=60,
)


@given(ops, st.integers(1, 4), st.floats(0.5, 10), st.integers(1, 3))
def test_matches_a_reference_model(sequence, threshold, reset, probes):
    clock = Clock()
    b = CircuitBreaker(
        failure_threshold=threshold, reset_after_s=reset, half_open_max=probes, clock=clock
    )
    state, failures, opened, inflight = "closed", 0, 0.0, 0
    for op in sequence:
        if state == "open" and clock.now - opened >= reset:
            state, inflight = "half-open", 0
        if op[0] == "tick":
            clock.now += op[1]
            continue
        if op[0] == "allow":
            want = state == "closed" or (state == "half-open" and inflight < probes)
            if state == "half-open" and want:
                inflight += 1
            assert b.allow() == want
        elif op[0] == "ok":
            b.record_success()
            failures = 0
            if state == "half-open":
                state, inflight = "closed", 0
        elif op[0] == "fail":
            b.record_failure()
            failures += 1
            if state == "half-open" or (state == "closed" and failures >= threshold):
                state, opened, inflight, failures = "open", clock.now, 0, 0
        elif op[0] == "release":
            b.release()
            if state == "half-open" and inflight:
                inflight -= 1
        assert b.state == state
        # Invariants: an open breaker never admits; a closed one always does.
        assert (state != "open") or not b.available()
        assert (state != "closed") or b.available()
