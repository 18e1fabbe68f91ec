"""The dashboard's search (`tracker.core.search`): passing over a stored document whose text
lacks the needle never loses a task the full match would find."""

from __future__ import annotations

import json
import time
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from tests.support import Parts, run
from tracker.core import jsontext, search
from tracker.core.records import EventType, TaskState
from tracker.settings import Settings
from workers.context import WorkerContext

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False,
    allow_infinity=False) | st.text(max_size=8)  # fmt: skip
documents = st.dictionaries(
    st.text(max_size=5),
    st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                 | st.dictionaries(st.text(max_size=3), inner, max_size=3), max_leaves=8),
    max_size=4,
)  # fmt: skip


@given(documents, st.text(min_size=1, max_size=4))
def test_the_prefilter_finds_what_the_full_match_finds(doc: dict[str, Any], needle: str) -> None:
    full = search.task_matches("veo3.1-fast:1-x", [doc], needle)
    # As the tracker stores metadata, and as an older record may hold it (ASCII escapes).
    for stored in (jsontext.dumps(doc).decode(), json.dumps(doc)):
        assert search.task_matches("veo3.1-fast:1-x", search.metadata_of([stored], needle),
                                   needle) == full  # fmt: skip


def test_a_document_without_the_text_is_not_parsed() -> None:
    assert search.metadata_of(['{"order": "A-17"}', "not json at all"], "a-17") == [
        {"order": "A-17"}
    ]
    # A needle JSON might escape: every document is parsed.
    assert search.metadata_of(['{"q": "say \\"hi\\""}'], 'y "h') == [{"q": 'say "hi"'}]


def test_redis_passes_over_only_what_the_full_match_would_not_find(settings: Settings) -> None:
    metadata = [
        {"order": "A-17"}, {"who": "\u212aelvin"}, {"note": 'say "hi"'}, {"n": 17}, {"x": None},
        {},
    ]  # fmt: skip

    async def body(ctx: WorkerContext, _peers: object, parts: Parts) -> None:
        store, now = ctx["store"], time.time()
        for n, meta in enumerate(metadata):
            await store.shards[0].registrations.register(
                client_id=parts.client.id, task_id=f"veo3.1-fast:1-s{n}",
                callback_url="", metadata=meta, events=(EventType.COMPLETED,), now=now + n,
                deadline_at=now + 60, first_poll_at=now + 60,
            )  # fmt: skip
        for text in ("a-17", "kelvin", 'y "h', "17", "none", "s5", "zzz", "1-S"):
            found = await store.shards[0].task_index.search_for_client(
                parts.client.id, text, 100, 20, None
            )
            expected = [
                f"veo3.1-fast:1-s{n}" for n in reversed(range(len(metadata)))
                if search.task_matches(f"veo3.1-fast:1-s{n}", [metadata[n]], text)
            ]  # fmt: skip
            assert [t.task_id for t, _ in found] == expected, text
        tracking = await store.shards[0].task_index.search_for_client(
            parts.client.id, "a-17", 100, 20, TaskState.COMPLETED
        )
        assert tracking == []  # the state filter: none has ended

    run(settings, body)
