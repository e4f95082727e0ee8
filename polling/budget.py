"""One rate budget per token or App installation, shared by every worker through Redis.

Each GitHub answer tells how many requests are left until when; the budget
keeps the latest word per credential. When it is spent (or a secondary limit
said "retry after"), every worker waits for the reset instead of asking again.
On the embedded default there is no Redis and the budget lives in the process.
"""

from __future__ import annotations

import threading
import time

import redis

# Requests kept in reserve: workers stop a little before zero, since several
# of them may be between reading the budget and spending their next request.
RESERVE = 50
_KEY = "flakeguard:github-budget:{}"


class RedisRateBudget:
    def __init__(self, url: str, *, reserve: int = RESERVE) -> None:
        self.redis = redis.Redis.from_url(url, socket_timeout=5)
        self.reserve = reserve

    def wait_time(self, key: str) -> float:
        values = self.redis.hmget(_KEY.format(key), "remaining", "reset_at", "blocked_until")
        return _wait(values, self.reserve)

    def record(self, key: str, *, remaining: int, reset_at: float) -> None:
        name = _KEY.format(key)
        with self.redis.pipeline() as pipe:
            pipe.hset(name, mapping={"remaining": remaining, "reset_at": reset_at})
            pipe.expireat(name, int(reset_at) + 60)
            pipe.execute()

    def block(self, key: str, *, until: float) -> None:
        name = _KEY.format(key)
        with self.redis.pipeline() as pipe:
            pipe.hset(name, mapping={"blocked_until": until, "remaining": 0, "reset_at": until})
            pipe.expireat(name, int(until) + 60)
            pipe.execute()


class LocalRateBudget:
    """The same, in this process only (the embedded default)."""

    def __init__(self, *, reserve: int = RESERVE) -> None:
        self.values: dict[str, list[float | None]] = {}
        self.lock = threading.Lock()
        self.reserve = reserve

    def wait_time(self, key: str) -> float:
        with self.lock:
            values = self.values.get(key, [None, None, None])
        return _wait([None if v is None else str(v).encode() for v in values], self.reserve)

    def record(self, key: str, *, remaining: int, reset_at: float) -> None:
        with self.lock:
            blocked = self.values.get(key, [None, None, None])[2]
            self.values[key] = [remaining, reset_at, blocked]

    def block(self, key: str, *, until: float) -> None:
        with self.lock:
            self.values[key] = [0, until, until]


def _wait(values: list, reserve: int) -> float:
    remaining, reset_at, blocked_until = (float(v) if v is not None else None for v in values)
    now = time.time()
    wait = 0.0
    if blocked_until is not None and blocked_until > now:
        wait = blocked_until - now
    if remaining is not None and reset_at is not None and remaining <= reserve and reset_at > now:
        wait = max(wait, reset_at - now)
    return wait
