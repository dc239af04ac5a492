"""Approximate time synchronisation of three camera streams: jitter, drops, out-of-order and late frames."""

import numpy as np
import pytest

from amplify_ros.camera_sync import ApproximateTimeSync, stamp_to_ns, ns_to_stamp_fields

NAMES = ["front", "side", "corner"]
MS = 1_000_000
PERIOD = 33 * MS


def feed(sync, events):
    """events: (name, stamp_ns) in arrival order; returns every set add() emitted."""
    out = []
    for name, stamp in events:
        s = sync.add(name, stamp, (name, stamp))
        if s is not None:
            out.append(s)
    return out


def test_jittered_streams_give_one_set_per_frame_within_slop():
    rng = np.random.default_rng(0)
    sync = ApproximateTimeSync(NAMES, slop=0.010)
    events = []
    for k in range(100):
        for n in NAMES:
            events.append((n, k * PERIOD + int(rng.uniform(-4, 4) * MS)))
    out = feed(sync, events)
    assert len(out) == 100
    assert all(s.spread <= 10 * MS for s in out)
    assert [s.stamps["front"] for s in out] == [k * PERIOD + (events[3 * k][1] - k * PERIOD) for k in range(100)]
    # every set combines frames of the same tick
    assert all({round(v / PERIOD) for v in s.stamps.values()} == {round(s.stamp / PERIOD)} for s in out)
    assert sync.counters.emitted == 100 and sum(sync.counters.unmatched.values()) == 0


def test_a_dropped_frame_skips_that_tick_and_is_counted():
    sync = ApproximateTimeSync(NAMES, slop=0.005)
    events = [(n, k * PERIOD) for k in range(10) for n in NAMES if not (k == 4 and n == "side")]
    out = feed(sync, events)
    ticks = [s.stamp // PERIOD for s in out]
    assert ticks == [0, 1, 2, 3, 5, 6, 7, 8, 9]
    # the front and corner frames of tick 4 were overtaken by tick 5 unused
    assert sync.counters.unmatched == {"front": 1, "side": 0, "corner": 1}


def test_out_of_order_arrival_still_synchronises_and_latest_wins():
    sync = ApproximateTimeSync(NAMES, slop=0.005)
    # tick 1 of the side camera arrives before tick 0 of the side camera
    events = [("front", 0), ("corner", 0), ("front", PERIOD), ("corner", PERIOD), ("side", PERIOD), ("side", 0)]
    out = feed(sync, events)
    assert [s.stamp for s in out] == [PERIOD]  # tick 1 is complete first and is the latest
    assert sync.latest.stamp == PERIOD
    # the side frame of tick 0 is now late: older than the latest set minus slop, refused and counted
    assert sync.counters.late["side"] == 1
    assert sync.counters.unmatched["front"] == 1 and sync.counters.unmatched["corner"] == 1
    # an out-of-order frame that is still usable is accepted and counted as out of order
    sync2 = ApproximateTimeSync(NAMES, slop=0.005)
    out = feed(sync2, [("side", PERIOD), ("side", 0), ("front", 0), ("corner", 0)])
    assert [s.stamp for s in out] == [0] and sync2.counters.out_of_order["side"] == 1


def test_frames_further_apart_than_slop_never_pair():
    sync = ApproximateTimeSync(NAMES, slop=0.005)
    out = feed(sync, [("front", 0), ("side", 6 * MS), ("corner", 0)])
    assert out == [] and sync.latest is None
    out = feed(sync, [("side", 4 * MS)])
    assert len(out) == 1 and out[0].stamps == {"front": 0, "side": 4 * MS, "corner": 0}


def test_latest_set_ignores_older_complete_sets_arriving_after():
    sync = ApproximateTimeSync(NAMES, slop=0.005)
    feed(sync, [(n, 2 * PERIOD) for n in NAMES])
    out = feed(sync, [(n, PERIOD) for n in NAMES])  # a whole older triple arrives late
    assert out == [] and sync.latest.stamp == 2 * PERIOD
    assert sync.counters.late == {n: 1 for n in NAMES}


def test_duplicates_refused_and_queue_overflow_counted():
    sync = ApproximateTimeSync(NAMES, slop=0.005, queue_size=3)
    feed(sync, [("front", 0), ("front", 0)])
    assert sync.counters.duplicate["front"] == 1
    feed(sync, [("front", k * PERIOD) for k in range(1, 6)])  # the others never send: front overflows
    assert sync.counters.unmatched["front"] == 3 and sync.latest is None


def test_lookup_finds_sets_by_reference_stamp():
    sync = ApproximateTimeSync(NAMES, slop=0.005)
    feed(sync, [("front", 0), ("corner", 0), ("front", PERIOD), ("corner", PERIOD), ("side", 0)])
    assert sync.latest.stamp == 0
    feed(sync, [("side", PERIOD + MS)])
    assert sync.latest.stamp == PERIOD
    found = sync.lookup(0)
    assert found.stamps == {"front": 0, "side": 0, "corner": 0}
    assert sync.lookup(PERIOD).stamps["side"] == PERIOD + MS
    assert sync.lookup(PERIOD + 1) is None
    # a set this synchroniser never emitted is formed from the kept frames (another node may have used it)
    other = ApproximateTimeSync(NAMES, slop=0.040)  # slop wider than half a period: one frame completes two sets
    feed(other, [("front", 0), ("side", 0), ("front", PERIOD), ("side", PERIOD), ("corner", PERIOD - 2 * MS)])
    assert other.latest.stamp == PERIOD and other.counters.emitted == 1
    assert other.lookup(0).stamps == {"front": 0, "side": 0, "corner": PERIOD - 2 * MS}


def test_stale_streams_and_errors():
    sync = ApproximateTimeSync(NAMES, slop=0.005)
    feed(sync, [("front", 10 * PERIOD), ("side", 10 * PERIOD), ("corner", 2 * PERIOD)])
    assert sync.stale_streams(10 * PERIOD + 50 * MS, max_age=0.1) == ["corner"]
    assert ApproximateTimeSync(NAMES, 0.01).stale_streams(0, 0.1) == NAMES
    with pytest.raises(KeyError, match="unknown stream 'top'"):
        sync.add("top", 0, None)
    with pytest.raises(ValueError, match="slop"):
        ApproximateTimeSync(NAMES, slop=-1)
    with pytest.raises(ValueError, match="unique"):
        ApproximateTimeSync(["a", "a"], slop=0.01)


def test_stamp_conversion_round_trip():
    class T:
        sec, nanosec = 1700000000, 123456789
    ns = stamp_to_ns(T)
    assert ns == 1700000000123456789 and ns_to_stamp_fields(ns) == (1700000000, 123456789)
