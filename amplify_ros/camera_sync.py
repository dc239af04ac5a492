"""Approximate time synchronisation of N camera streams by header stamp (no rclpy, no message_filters).

``message_filters.ApproximateTimeSynchronizer`` is not installable here, and the pipeline needs something
slightly different anyway: not every synchronised set, but the LATEST one (the policy acts on the newest
observation), plus a short history so a later node can find the set that belongs to a given stamp.

A synchronised set ("triple" for three cameras) is one frame per stream whose stamps all lie within
``slop`` of the REFERENCE stream's frame (the first stream). Its stamp is the reference frame's stamp, so
two nodes that see the same frames agree on it exactly (the inverse node looks observations up by it).

Frames may arrive jittered, late, out of order or not at all. Every stream keeps its last ``queue_size``
frames sorted by stamp. Counters (all per stream):

* ``received``  every frame given to :meth:`add`;
* ``late``      frames whose stamp is older than the last emitted set minus ``slop``: they can never be
  part of a newer set, so they are refused at once;
* ``unmatched`` frames that a newer emitted set overtook without them being part of any set (skipped
  by "latest wins", or no partner within ``slop``), or that fell out of the queue unused;
* ``duplicate`` frames with a stamp the stream already holds (a re-sent frame), refused;
* ``out_of_order`` accepted frames older than the stream's newest frame (informational).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any, Sequence


@dataclass
class _Frame:
    stamp: int  # nanoseconds
    msg: Any
    used: bool = False      # part of an emitted set
    counted: bool = False   # already counted as unmatched


@dataclass
class SyncedSet:
    """One frame per stream; ``stamp`` (ns) is the reference frame's stamp."""

    stamp: int
    stamps: dict[str, int]
    msgs: dict[str, Any]

    @property
    def spread(self) -> int:
        """Largest stamp difference inside the set (ns)."""
        return max(self.stamps.values()) - min(self.stamps.values())


@dataclass
class SyncCounters:
    received: dict[str, int] = field(default_factory=dict)
    late: dict[str, int] = field(default_factory=dict)
    unmatched: dict[str, int] = field(default_factory=dict)
    duplicate: dict[str, int] = field(default_factory=dict)
    out_of_order: dict[str, int] = field(default_factory=dict)
    emitted: int = 0

    def as_dict(self) -> dict:
        return {"received": dict(self.received), "late": dict(self.late), "unmatched": dict(self.unmatched),
                "duplicate": dict(self.duplicate), "out_of_order": dict(self.out_of_order),
                "emitted": self.emitted}


class ApproximateTimeSync:
    """Latest approximately-synchronised set of N streams.

    Args:
        names: stream names; the first is the reference whose stamp names a set.
        slop: seconds; every frame of a set lies within ``slop`` of the reference frame.
        queue_size: frames kept per stream (also the depth of :meth:`lookup`).
    """

    def __init__(self, names: Sequence[str], slop: float, queue_size: int = 30):
        names = list(names)
        if len(names) < 1 or len(set(names)) != len(names):
            raise ValueError(f"stream names must be unique and non-empty, got {names}")
        if not slop >= 0:
            raise ValueError(f"slop must be >= 0 seconds, got {slop}")
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        self.names = names
        self.reference = names[0]
        self.slop_ns = int(round(slop * 1e9))
        self.queue_size = int(queue_size)
        self._frames: dict[str, list[_Frame]] = {n: [] for n in names}  # sorted by stamp
        self.latest: SyncedSet | None = None
        self._history: list[SyncedSet] = []  # emitted sets, oldest first
        zero = {n: 0 for n in names}
        self.counters = SyncCounters(dict(zero), dict(zero), dict(zero), dict(zero), dict(zero))

    # -- input ----------------------------------------------------------------------------------------
    def add(self, name: str, stamp_ns: int, msg: Any) -> SyncedSet | None:
        """Add one frame; returns the new latest set if this frame completed one newer than the last."""
        if name not in self._frames:
            raise KeyError(f"unknown stream {name!r}; streams are {self.names}")
        stamp_ns = int(stamp_ns)
        c = self.counters
        c.received[name] += 1
        if self.latest is not None and stamp_ns < self.latest.stamp - self.slop_ns:
            c.late[name] += 1
            return None
        frames = self._frames[name]
        stamps = [f.stamp for f in frames]
        i = bisect.bisect_left(stamps, stamp_ns)
        if i < len(frames) and frames[i].stamp == stamp_ns:
            c.duplicate[name] += 1
            return None
        if i < len(frames):
            c.out_of_order[name] += 1
        frames.insert(i, _Frame(stamp_ns, msg))
        while len(frames) > self.queue_size:  # oldest first out
            self._forget(name, frames.pop(0))
        return self._match()

    def _forget(self, name: str, frame: _Frame) -> None:
        if not frame.used and not frame.counted:
            self.counters.unmatched[name] += 1

    def _nearest(self, name: str, stamp: int) -> _Frame | None:
        frames = self._frames[name]
        i = bisect.bisect_left([f.stamp for f in frames], stamp)
        best = None
        for j in (i - 1, i):
            if 0 <= j < len(frames) and (best is None or abs(frames[j].stamp - stamp) < abs(best.stamp - stamp)):
                best = frames[j]
        if best is None or abs(best.stamp - stamp) > self.slop_ns:
            return None
        return best

    def _match(self) -> SyncedSet | None:
        last = self.latest.stamp if self.latest is not None else None
        # newest reference frame first: the policy wants the latest observation, not every one
        for ref in reversed(self._frames[self.reference]):
            if last is not None and ref.stamp <= last:
                return None
            partners = {self.reference: ref}
            for name in self.names[1:]:
                frame = self._nearest(name, ref.stamp)
                if frame is None:
                    break
                partners[name] = frame
            else:
                return self._emit(partners)
        return None

    def _emit(self, partners: dict[str, _Frame]) -> SyncedSet:
        for f in partners.values():
            f.used = True
        ref_stamp = partners[self.reference].stamp
        out = SyncedSet(ref_stamp, {n: f.stamp for n, f in partners.items()}, {n: f.msg for n, f in partners.items()})
        self.latest = out
        self._history.append(out)
        del self._history[:-self.queue_size]
        self.counters.emitted += 1
        # frames this set overtook can never be used any more ("late" from now on): count them now
        horizon = ref_stamp - self.slop_ns
        for name, frames in self._frames.items():
            for f in frames:
                if f.stamp < horizon and not f.used and not f.counted:
                    f.counted = True
                    self.counters.unmatched[name] += 1
        return out

    # -- queries --------------------------------------------------------------------------------------
    def lookup(self, stamp_ns: int) -> SyncedSet | None:
        """The set whose reference stamp is exactly ``stamp_ns``: an emitted one, or one formed now from the
        kept frames (this node may have skipped it while another node used it)."""
        stamp_ns = int(stamp_ns)
        for s in reversed(self._history):
            if s.stamp == stamp_ns:
                return s
        ref = next((f for f in self._frames[self.reference] if f.stamp == stamp_ns), None)
        if ref is None:
            return None
        partners = {self.reference: ref}
        for name in self.names[1:]:
            frame = self._nearest(name, stamp_ns)
            if frame is None:
                return None
            partners[name] = frame
        return SyncedSet(stamp_ns, {n: f.stamp for n, f in partners.items()}, {n: f.msg for n, f in partners.items()})

    def newest_stamps(self) -> dict[str, int | None]:
        """Newest frame stamp per stream (ns), None for a stream that sent nothing yet."""
        return {n: (fr[-1].stamp if fr else None) for n, fr in self._frames.items()}

    def stale_streams(self, now_ns: int, max_age: float) -> list[str]:
        """Streams whose newest frame is older than ``max_age`` seconds (or missing)."""
        limit = int(max_age * 1e9)
        return [n for n, s in self.newest_stamps().items() if s is None or now_ns - s > limit]


def stamp_to_ns(stamp) -> int:
    """builtin_interfaces/Time (sec, nanosec) -> integer nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def ns_to_stamp_fields(ns: int) -> tuple[int, int]:
    """Integer nanoseconds -> (sec, nanosec) for a builtin_interfaces/Time."""
    return int(ns // 1_000_000_000), int(ns % 1_000_000_000)
