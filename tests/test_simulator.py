"""The simulator walks tasks through QuickRouter's statuses and scripted faults, over HTTP."""

from __future__ import annotations

import httpx
import pytest

from tests.support import SIM_KEY, wait_for
from tracker.core.upstream import Completed, Failed, Rejected, Running, TryLater, read_response
from tracker.devtools.simulator import Fault, Scenario, Simulator


def query(sim: Simulator, task_id: str, key: str = SIM_KEY, timeout: float = 5) -> httpx.Response:
    return httpx.get(
        f"{sim.url}/v1/video/query",
        params={"id": task_id},
        headers={"authorization": f"Bearer {key}"},
        timeout=timeout,
    )


def outcome(sim: Simulator, task_id: str) -> object:
    response = query(sim, task_id)
    return read_response(
        response.status_code, response.headers, response.content, seen_running=True
    )


def test_a_task_walks_the_status_sequence_to_completed(simulator: Simulator) -> None:
    task = simulator.script(duration=1.5)
    seen: list[str] = []

    def finished() -> bool:
        result = outcome(simulator, task.task_id)
        if isinstance(result, Running) and result.status not in seen:
            seen.append(result.status)
        return isinstance(result, Completed)

    wait_for(finished, 10, "completion")
    order = ["pending", "prompt_enhancement_checking", "prompt_enhancing", "image_downloading",
             "video_generating", "video_generation_completed", "video_upsampling",
             "video_upsampling_completed"]  # fmt: skip
    assert seen == [status for status in order if status in seen]
    assert "video_generating" in seen and "video_upsampling" in seen
    assert simulator.requests(task.task_id) >= len(seen) + 1
    assert task.final_seen_at is not None


@pytest.mark.parametrize(
    ("scenario", "expected"),
    [
        (Scenario.SUCCESS, Completed), (Scenario.SUCCESS_NO_UPSCALE, Completed),
        (Scenario.PREVIEW_URL, Completed), (Scenario.DOC_EXAMPLE, Completed),
        (Scenario.FAIL_GENERATION, Failed), (Scenario.FAIL_UPSAMPLING, Failed),
        (Scenario.FAILED, Failed), (Scenario.ERROR, Failed),
        (Scenario.UNAUTHORIZED, Rejected), (Scenario.NEVER_ENDS, Running),
    ],
)  # fmt: skip
def test_each_scenario_ends_as_scripted(
    simulator: Simulator, scenario: Scenario, expected: type
) -> None:
    task = simulator.script(scenario=scenario, duration=0)
    assert isinstance(outcome(simulator, task.task_id), expected)


def test_faults_come_first_then_the_task_answers(simulator: Simulator) -> None:
    faults = [
        Fault.RATE_LIMITED,
        Fault.RATE_LIMITED_RETRY_AFTER,
        Fault.RATE_LIMITED_EMPTY,
        Fault.RATE_LIMITED_NEW_API,
        Fault.SERVER_ERROR,
        Fault.BROKEN_JSON,
    ]
    task = simulator.script(duration=0, faults=faults)
    answers = [query(simulator, task.task_id) for _ in faults]
    assert [a.status_code for a in answers] == [429, 429, 429, 429, 500, 200]
    assert answers[1].headers["retry-after"] == "1"
    assert answers[2].content == b""
    assert answers[3].json()["error"]["type"] == "new_api_error"
    assert all(
        isinstance(read_response(a.status_code, a.headers, a.content), TryLater) for a in answers
    )
    assert isinstance(outcome(simulator, task.task_id), Completed)
    assert simulator.requests(task.task_id) == len(faults) + 1


def test_a_slow_answer_outlasts_a_short_timeout(simulator: Simulator) -> None:
    task = simulator.script(duration=0, faults=[Fault.SLOW])
    with pytest.raises(httpx.TimeoutException):
        query(simulator, task.task_id, timeout=0.2)


def test_a_wrong_key_gets_401_and_an_unknown_id_gets_error(simulator: Simulator) -> None:
    assert query(simulator, "veo3.1-fast:1-x", key="wrong").status_code == 401
    unknown = query(simulator, "veo3.1-fast:1-never-created")
    assert unknown.status_code == 200
    assert isinstance(read_response(200, {}, unknown.content), Rejected)


def test_create_and_script_over_http(simulator: Simulator) -> None:
    created = httpx.post(
        f"{simulator.url}/v1/video/create",
        json={"model": "veo3.1-fast"},
        headers={"authorization": f"Bearer {SIM_KEY}"},
    ).json()
    assert created["status"] == "pending"
    assert created["id"].startswith("veo3.1-fast:")
    scripted = httpx.post(
        f"{simulator.url}/sim/tasks",
        json={"task_id": "grok:abc", "scenario": "failed", "duration": 0},
    )
    assert scripted.status_code == 201
    query(simulator, "grok:abc")
    described = httpx.get(f"{simulator.url}/sim/tasks/grok:abc").json()
    assert described["requests"] == 1
    assert described["scenario"] == "failed"
    refused = httpx.post(f"{simulator.url}/sim/tasks", json={"scenario": "nonsense"})
    assert refused.status_code == 422


def test_status_update_time_is_when_the_status_began(simulator: Simulator) -> None:
    task = simulator.script(duration=0.8)
    first = query(simulator, task.task_id).json()
    wait_for(lambda: query(simulator, task.task_id).json()["status"] != first["status"], 5,
             "a status change")  # fmt: skip
    later = query(simulator, task.task_id).json()
    created = first["detail"]["created_at"]
    assert created <= first["status_update_time"] < later["status_update_time"]
    assert later["status_update_time"] <= created + 800 + 5
