"""Script calls made together go out together, and each caller still gets its own answer."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.exceptions import ConnectionError, ResponseError

from tracker.embedded_redis import free_port
from tracker.store import connection
from tracker.store.batching import ScriptBatch, batched

# Counts its calls, and refuses an argument of "bad" (a caller's own error); "boom" fails
# inside Redis (a hash command on the counter), "none" answers nothing.
SCRIPT = """
if ARGV[1] == 'bad' then return redis.error_reply('refused ' .. ARGV[1]) end
if ARGV[1] == 'boom' then return redis.call('HGET', KEYS[1], 'x') end
if ARGV[1] == 'none' then return end
return redis.call('INCR', KEYS[1]) .. ':' .. ARGV[1]
"""


class Counted(ScriptBatch):
    """Counts the batches sent: the round trips the callers shared."""

    batches = 0

    async def _batched(self, calls: list[Any]) -> list[Any]:
        self.batches += 1
        return await super()._batched(calls)


def test_concurrent_calls_share_one_round_trip_and_each_gets_its_answer(redis_url: str) -> None:
    async def main() -> None:
        redis = connection.connect(redis_url)
        batch = Counted(redis, SCRIPT)
        await redis.script_load(batched(SCRIPT))  # loaded: the first batch goes in one call
        answers = await asyncio.gather(*(batch(["n"], [f"c{i}"]) for i in range(50)))
        assert {a.decode().split(":")[1] for a in answers} == {f"c{i}" for i in range(50)}
        assert sorted(int(a.split(b":")[0]) for a in answers) == list(range(1, 51))
        assert batch.batches == 1
        assert await batch(["n"], ["alone"]) == b"51:alone"  # alone, it goes alone
        assert batch.batches == 2
        await redis.aclose()

    asyncio.run(main())


def test_a_callers_error_is_its_own(redis_url: str) -> None:
    async def main() -> None:
        redis = connection.connect(redis_url)
        batch = ScriptBatch(redis, SCRIPT)
        answers = await asyncio.gather(
            batch(["n"], ["a"]), batch(["n"], ["bad"]), batch(["n"], ["b"]),
            batch(["n"], ["boom"]), batch(["n"], ["none"]), batch(["n"], ["c"]),
            return_exceptions=True,
        )  # fmt: skip
        assert answers[0] == b"1:a" and answers[2] == b"2:b" and answers[5] == b"3:c"
        assert isinstance(answers[1], ResponseError) and "refused bad" in str(answers[1])
        assert isinstance(answers[3], ResponseError) and "WRONGTYPE" in str(answers[3])
        assert answers[4] is None
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
def test_calls_beyond_a_full_batch_go_in_the_next(
    redis_url: str, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    monkeypatch.setattr("tracker.store.batching.MOST", size)

    async def main() -> None:
        redis = connection.connect(redis_url)
        batch = Counted(redis, SCRIPT)
        await redis.script_load(batched(SCRIPT))
        answers = await asyncio.gather(*(batch(["n"], [str(i)]) for i in range(20)))
        assert len(set(answers)) == 20
        assert batch.batches == -(-20 // size)
        await redis.aclose()

    asyncio.run(main())


def test_calls_made_in_different_turns_within_the_linger_share_one_round_trip(
    redis_url: str,
) -> None:
    async def main() -> None:
        redis = connection.connect(redis_url)
        batch = Counted(redis, SCRIPT, linger=0.5)
        await redis.script_load(batched(SCRIPT))
        calls = []
        for i in range(3):  # one call a turn of the loop, as attempts end apart
            calls.append(asyncio.create_task(batch(["n"], [str(i)])))
            await asyncio.sleep(0)
        assert len(await asyncio.gather(*calls)) == 3
        assert batch.batches == 1
        await redis.aclose()

    asyncio.run(main())


def test_a_full_batch_goes_without_waiting_out_the_linger(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("tracker.store.batching.MOST", 5)

    async def main() -> None:
        redis = connection.connect(redis_url)
        batch = Counted(redis, SCRIPT, linger=600)
        await redis.script_load(batched(SCRIPT))
        calls = asyncio.gather(*(batch(["n"], [str(i)]) for i in range(5)))
        assert len(await asyncio.wait_for(calls, 10)) == 5  # not 600 s
        assert batch.batches == 1
        await redis.aclose()

    asyncio.run(main())


def test_calls_of_different_shapes_in_one_batch_each_see_their_own_keys_and_args(
    redis_url: str,
) -> None:
    async def main() -> None:
        redis = connection.connect(redis_url)
        batch = Counted(redis, "return {KEYS, ARGV}")
        shapes = [(["a"], []), ([], ["x", "y"]), (["b", "c"], ["z"]), ([], []), (["d"], ["1"])]
        answers = await asyncio.gather(*(batch(k, a) for k, a in shapes))
        assert batch.batches == 1
        assert answers == [
            [[k.encode() for k in ks], [a.encode() for a in args]] for ks, args in shapes
        ]
        await redis.aclose()

    asyncio.run(main())
