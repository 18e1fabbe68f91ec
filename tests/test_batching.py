"""Script calls made together go out together, and each caller still gets its own answer."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.exceptions import ConnectionError, ResponseError

from tracker.embedded_redis import free_port
from tracker.store import connection
from tracker.store.batching import ScriptBatch

# Counts its calls, and refuses an argument of "bad" (a caller's own error).
SCRIPT = """
if ARGV[1] == 'bad' then return redis.error_reply('refused ' .. ARGV[1]) end
return redis.call('INCR', KEYS[1]) .. ':' .. ARGV[1]
"""


class Counted(ScriptBatch):
    """Counts the pipelines sent: the round trips the callers shared."""

    pipelines = 0

    async def _pipelined(self, calls: list[Any]) -> list[Any]:
        self.pipelines += 1
        return await super()._pipelined(calls)


def test_concurrent_calls_share_one_round_trip_and_each_gets_its_answer(redis_url: str) -> None:
    async def main() -> None:
        redis = connection.connect(redis_url)
        batch = Counted(redis, SCRIPT)
        await redis.script_load(SCRIPT)  # else the first pipeline is answered NOSCRIPT
        answers = await asyncio.gather(*(batch(["n"], [f"c{i}"]) for i in range(50)))
        assert {a.decode().split(":")[1] for a in answers} == {f"c{i}" for i in range(50)}
        assert sorted(int(a.split(b":")[0]) for a in answers) == list(range(1, 51))
        assert batch.pipelines == 1
        assert await batch(["n"], ["alone"]) == b"51:alone"  # alone, it goes alone
        assert batch.pipelines == 2
        await redis.aclose()

    asyncio.run(main())


def test_a_callers_error_is_its_own(redis_url: str) -> None:
    async def main() -> None:
        redis = connection.connect(redis_url)
        batch = ScriptBatch(redis, SCRIPT)
        answers = await asyncio.gather(
            batch(["n"], ["a"]), batch(["n"], ["bad"]), batch(["n"], ["b"]),
            return_exceptions=True,
        )  # fmt: skip
        assert answers[0] == b"1:a" and answers[2] == b"2:b"
        assert isinstance(answers[1], ResponseError) and "refused bad" in str(answers[1])
        await redis.aclose()

    asyncio.run(main())


def test_an_emptied_script_cache_is_loaded_again(redis_url: str) -> None:
    async def main() -> None:
        redis = connection.connect(redis_url)
        batch = ScriptBatch(redis, SCRIPT)
        assert await batch(["n"], ["a"]) == b"1:a"
        await redis.script_flush()  # as a restart or a failover to a fresh replica leaves it
        answers = await asyncio.gather(*(batch(["n"], [str(i)]) for i in range(3)))
        assert sorted(answers) == [b"2:0", b"3:1", b"4:2"]
        await redis.aclose()

    asyncio.run(main())


def test_without_redis_every_caller_sees_the_error() -> None:
    async def main() -> None:
        redis = connection.connect(f"redis://127.0.0.1:{free_port()}")
        batch = ScriptBatch(redis, SCRIPT)
        answers = await asyncio.gather(
            *(batch(["n"], [str(i)]) for i in range(5)), return_exceptions=True
        )
        assert all(isinstance(a, ConnectionError) for a in answers), answers
        await redis.aclose()

    asyncio.run(main())


@pytest.mark.parametrize("size", [1, 7])
def test_calls_beyond_one_pipelines_worth_go_in_the_next(
    redis_url: str, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    monkeypatch.setattr("tracker.store.batching.MOST", size)

    async def main() -> None:
        redis = connection.connect(redis_url)
        batch = Counted(redis, SCRIPT)
        await redis.script_load(SCRIPT)
        answers = await asyncio.gather(*(batch(["n"], [str(i)]) for i in range(20)))
        assert len(set(answers)) == 20
        assert batch.pipelines == -(-20 // size)
        await redis.aclose()

    asyncio.run(main())


def test_calls_made_in_different_turns_within_the_linger_share_one_round_trip(
    redis_url: str,
) -> None:
    async def main() -> None:
        redis = connection.connect(redis_url)
        batch = Counted(redis, SCRIPT, linger=0.5)
        await redis.script_load(SCRIPT)
        calls = []
        for i in range(3):  # one call a turn of the loop, as attempts end apart
            calls.append(asyncio.create_task(batch(["n"], [str(i)])))
            await asyncio.sleep(0)
        assert len(await asyncio.gather(*calls)) == 3
        assert batch.pipelines == 1
        await redis.aclose()

    asyncio.run(main())


def test_a_full_pipeline_goes_without_waiting_out_the_linger(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("tracker.store.batching.MOST", 5)

    async def main() -> None:
        redis = connection.connect(redis_url)
        batch = Counted(redis, SCRIPT, linger=600)
        await redis.script_load(SCRIPT)
        calls = asyncio.gather(*(batch(["n"], [str(i)]) for i in range(5)))
        assert len(await asyncio.wait_for(calls, 10)) == 5  # not 600 s
        assert batch.pipelines == 1
        await redis.aclose()

    asyncio.run(main())
