"""Where the tracker finds Redis: one URL, or the sentinels that name the primary."""

from __future__ import annotations

import pytest

from tracker.store.connection import SentinelAddress, redis_settings, sentinel_address


def test_a_plain_url_names_no_sentinel() -> None:
    assert sentinel_address("redis://127.0.0.1:6379/0") is None
    assert redis_settings("redis://127.0.0.1:6379/2").database == 2


@pytest.mark.parametrize(
    ("url", "address"),
    [("redis+sentinel://10.0.0.5:26379/tracked", SentinelAddress([("10.0.0.5", 26379)], "tracked")),
     ("redis+sentinel://:s3cr%40t@a:1,b:2,c/tracked/3",
      SentinelAddress([("a", 1), ("b", 2), ("c", 26379)], "tracked", 3, "s3cr@t"))],
)  # fmt: skip
def test_a_sentinel_url_names_its_sentinels_service_db_and_password(
    url: str, address: SentinelAddress
) -> None:
    assert sentinel_address(url) == address


def test_the_worker_follows_sentinel_through_arq() -> None:
    settings = redis_settings("redis+sentinel://a:1,b:2/tracked/1")
    assert (settings.sentinel, settings.sentinel_master, settings.host, settings.database) == (
        True, "tracked", [("a", 1), ("b", 2)], 1,
    )  # fmt: skip


def test_a_sentinel_url_without_a_service_is_refused() -> None:
    with pytest.raises(ValueError, match="service"):
        sentinel_address("redis+sentinel://a:1")
