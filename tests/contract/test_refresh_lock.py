"""The OAuth refresh lock on a real Redis: one holder at a time, an expired hold lapses, and a
holder never deletes a lock someone else took since (``oauth/lock.py``)."""

from __future__ import annotations

import pytest

from broadcaster.oauth.lock import RedisRefreshLock


@pytest.mark.redis
def test_redis_lock_excludes_expires_and_is_released_only_by_its_owner(shared_redis_url):
    import redis

    client = redis.Redis.from_url(shared_redis_url)
    client.delete("bc:oauth:refresh:unit-lock")
    a, b = RedisRefreshLock(client), RedisRefreshLock(client)
    with a.hold("unit-lock", ttl=5, wait=0) as taken:
        assert taken
        with b.hold("unit-lock", ttl=5, wait=0.2) as second:
            assert not second  # waited, then gave up
    with b.hold("unit-lock", ttl=0.3, wait=0) as taken:
        assert taken
        client.set("bc:oauth:refresh:unit-lock", "someone-else")  # it expired and another took it
    assert client.get("bc:oauth:refresh:unit-lock") == b"someone-else"  # not ours to delete
    client.delete("bc:oauth:refresh:unit-lock")
