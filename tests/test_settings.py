"""Settings come from the environment, with clear errors for values that cannot work."""

from __future__ import annotations

from pathlib import Path

import pytest

from tracker.errors import ConfigurationError
from tracker.settings import DEFAULT_QUICKROUTER_BASE_URL, Settings


def test_defaults_from_an_empty_environment() -> None:
    settings = Settings.from_env({})
    assert settings == Settings()
    assert settings.quickrouter_base_url == DEFAULT_QUICKROUTER_BASE_URL
    assert settings.redis_url is None


def test_every_kind_of_value_is_read() -> None:
    settings = Settings.from_env(
        {
            "REDIS_URL": "redis://127.0.0.1:1/0",
            "QUICKROUTER_API_KEY": "sk-secret",
            "TRACKER_ALLOW_PRIVATE_CALLBACKS": "true",
            "TRACKER_POLL_FIRST_DELAY": "2.5",
            "TRACKER_REJECTION_LIMIT": "5",
            "TRACKER_DELIVERY_SCHEDULE": "1, 2,3",
            "TRACKER_DATA_DIR": "var/qr",
        }
    )
    assert settings.redis_url == "redis://127.0.0.1:1/0"
    assert settings.allow_private_callbacks is True
    assert settings.poll_first_delay == 2.5
    assert settings.rejection_limit == 5
    assert settings.delivery_schedule == (1.0, 2.0, 3.0)
    assert settings.data_dir == Path("var/qr")


def test_the_api_key_never_shows_in_repr() -> None:
    assert "sk-secret" not in repr(Settings(quickrouter_api_key="sk-secret"))


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("TRACKER_POLL_FIRST_DELAY", "soon", "TRACKER_POLL_FIRST_DELAY"),
        ("TRACKER_ALLOW_PRIVATE_CALLBACKS", "perhaps", "TRACKER_ALLOW_PRIVATE_CALLBACKS"),
        ("TRACKER_POLL_MAX_DELAY", "1", "TRACKER_POLL_MAX_DELAY"),
        ("TRACKER_SWEEP_INTERVAL", "7", "TRACKER_SWEEP_INTERVAL"),
        ("TRACKER_DELIVERY_SCHEDULE", ",", "TRACKER_DELIVERY_SCHEDULE"),
        ("TRACKER_POLL_JITTER", "1.5", "jitter"),
        ("TRACKER_LOG_FORMAT", "xml", "TRACKER_LOG_FORMAT"),
        ("TRACKER_LOG_LEVEL", "loud", "TRACKER_LOG_LEVEL"),
        ("TRACKER_UPSTREAM_RATE", "-1", "TRACKER_UPSTREAM_RATE"),
        ("TRACKER_POLL_WINDOW_GAP", "-1", "TRACKER_POLL_WINDOW_GAP"),
        ("TRACKER_POLL_LOOP_INTERVAL", "-5", "TRACKER_POLL_LOOP_INTERVAL"),
        ("TRACKER_METRICS_PORT", "70000", "TRACKER_METRICS_PORT"),
    ],
)
def test_bad_values_are_refused_by_name(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Settings.from_env({name: value})


def test_to_env_round_trips() -> None:
    settings = Settings(redis_url="redis://127.0.0.1:1/0", delivery_schedule=(1.0, 2.5),
                        allow_private_callbacks=True, upstream_rate=1.5)  # fmt: skip
    assert Settings.from_env(settings.to_env()) == settings
