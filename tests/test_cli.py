"""The commands as a user runs them: `qrtracker up` end to end, and client management."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from tests.support import create_client, wait_for
from tracker.cli import main

pytestmark = pytest.mark.slow


def test_clients_create_prints_a_key_and_secret_and_list_never_shows_them(redis_url: str) -> None:
    created = create_client(redis_url, "pipeline")
    assert created["api_key"].startswith("qrt_")
    assert created["webhook_secret"].startswith("whsec_")
    listed = CliRunner().invoke(main, ["clients", "list", "--json"], env={"REDIS_URL": redis_url})
    assert listed.exit_code == 0
    rows = json.loads(listed.output)  # one JSON document: an array
    assert [(r["id"], r["name"], r["state"]) for r in rows] == [
        (created["id"], "pipeline", "active")
    ]
    assert created["api_key"] not in listed.output
    assert created["webhook_secret"] not in listed.output


def test_clients_without_redis_say_what_to_do(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["clients", "list"], env={"REDIS_URL": "", "TRACKER_DATA_DIR": str(tmp_path)}
    )
    assert result.exit_code == 2
    assert "REDIS_URL" in result.output


def test_a_bad_setting_is_a_usage_error() -> None:
    result = CliRunner().invoke(main, ["clients", "list"], env={"TRACKER_POLL_FACTOR": "fast"})
    assert result.exit_code == 2
    assert "TRACKER_POLL_FACTOR" in result.output


def test_up_runs_a_whole_round_trip_on_embedded_redis_and_stops_cleanly(tmp_path: Path) -> None:
    """`qrtracker up` with no REDIS_URL and no QuickRouter key: embedded Redis and simulator."""
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "QUICKROUTER_API_KEY"}}
    env.update(
        PYTHONUNBUFFERED="1",
        TRACKER_DATA_DIR=str(tmp_path / "data"),
        TRACKER_POLL_FIRST_DELAY="0.1",
        TRACKER_POLL_MAX_DELAY="0.2",
        TRACKER_QUEUE_POLL_INTERVAL="0.05",
    )
    port = _free_port()
    log_path = tmp_path / "up.log"
    with log_path.open("wb") as log:
        up = subprocess.Popen(
            [sys.executable, "-m", "tracker.cli", "up", "--port", str(port)],
            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path,
        )  # fmt: skip
        try:
            banner = wait_for(lambda: _banner(log_path), 30, "the banner")
            sim, key, hooks = banner
            created = httpx.post(
                f"{sim}/v1/video/create",
                headers={"authorization": "Bearer sim-key"},
                json={"model": "veo3.1-fast", "simulate": {"duration": 0.3}},
            ).json()
            api = f"http://127.0.0.1:{port}"
            registered = httpx.post(
                f"{api}/v1/tasks",
                headers={"authorization": f"Bearer {key}"},
                json={"task_id": created["id"], "callback_url": hooks},
            )
            assert registered.status_code == 201
            wait_for(lambda: "signature=valid" in log_path.read_text(), 30, "the webhook")
            assert "video.completed" in log_path.read_text()
            # The videos were copied into the data folder, and the API serves them by link.
            assert "copies of the videos kept in file://" in log_path.read_text()
            view = httpx.get(
                f"{api}/v1/tasks/{created['id']}", headers={"authorization": f"Bearer {key}"}
            ).json()
            video = next(o for o in view["storage"]["outputs"] if o["name"] == "video")
            assert video["stored"] and video["url"].startswith(f"{api}/v1/files/")
            assert httpx.get(video["url"]).status_code == 200
            assert list((tmp_path / "data" / "videos").rglob("video"))
            # The operator's sign-in is printed too, and works.
            token = re.search(r"operator sign-in:\s+(\S+)", log_path.read_text())
            assert token and token.group(1).startswith("qrtop_")
            with httpx.Client(base_url=api) as browser:
                page = browser.get("/ui/login").text
                csrf = re.search(r'name="csrf" value="([^"]+)"', page)
                assert csrf
                signed = browser.post(
                    "/ui/login", data={"csrf": csrf.group(1), "secret": token.group(1)}
                )
                assert signed.headers["location"].endswith("/ui/operator")
                assert browser.get("/ui/operator").status_code == 200
            assert (tmp_path / "data" / "admin.token").stat().st_mode & 0o077 == 0
            redis_pid = _redis_pid(tmp_path / "data" / "redis" / "redis.log")
        finally:
            up.send_signal(signal.SIGINT)
            up.wait(30)
    assert up.returncode == 0, log_path.read_text()
    output = log_path.read_text()
    assert "Redis stops last" in output
    assert not (tmp_path / "data" / "redis.url").exists()
    assert (tmp_path / "data" / "redis" / "appendonly.aof").exists()
    wait_for(lambda: not _alive(redis_pid), 10, "redis-server to exit")


def _banner(log_path: Path) -> tuple[str, str, str] | None:
    text = log_path.read_text()
    sim = re.search(r"simulated QuickRouter at (\S+)", text)
    key = re.search(r"demo client API key:\s+(\S+)", text)
    hooks = re.search(r"webhooks go to (\S+)", text)
    if sim and key and hooks:
        return sim.group(1), key.group(1), hooks.group(1)
    return None


def _redis_pid(log: Path) -> int:
    match = re.search(r"pid=(\d+)", log.read_text())
    assert match, "redis.log names no pid"
    return int(match.group(1))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is a child already gone; `up` reaps it, so this only lasts an instant.
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "zombie" not in status.read_text()


def _free_port() -> int:
    from tracker.embedded_redis import free_port

    return free_port()
