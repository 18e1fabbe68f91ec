"""The Lua scripts: each change that reads and writes in one step, atomic on the server. One
module per aggregate; each script documents its KEYS and ARGV, and `tracker.store` registers
them once per connection pool. Every key a script touches is passed in (KEYS, or a key
template in ARGV for keys named by what the script reads), so one script stays within one
hash tag's slot (`tracker.store.keys`)."""

from __future__ import annotations

from tracker.store.scripts.clients import ADD_UPSTREAM_KEY, END_ROTATION_OVERLAP
from tracker.store.scripts.copies import CLAIM_COPIES, STAGE_COPY
from tracker.store.scripts.deliveries import (
    CLAIM_DELIVERIES,
    CLIENT_BUSY,
    CONCLUDE_ATTEMPT,
    FORGET_DELIVERY,
    POSTPONE_DELIVERY,
    READ_OUTGOING,
    RECORD_ATTEMPT,
    SKIP_DELIVERY,
)
from tracker.store.scripts.feed import ANNOUNCE, OPEN_STREAM
from tracker.store.scripts.limits import (
    BEGIN_INTENT,
    COUNT_IN_WINDOW,
    SETTLE_INTENT,
    TAKE_FROM_BUCKET,
)
from tracker.store.scripts.origins import ACQUIRE_SLOT, RELEASE_SLOT, VACATE_SLOT
from tracker.store.scripts.polls import CLAIM_DUE, CLAIM_PASS_OVER, FORGET_DUE, TOUCH_TASK
from tracker.store.scripts.tasks import (
    FIND_TRACKED,
    FORGET_EXPIRED_TASKS,
    HAND_KEY,
    REGISTER,
    SEARCH_TASKS,
)

__all__ = [
    "ACQUIRE_SLOT",
    "ADD_UPSTREAM_KEY",
    "ANNOUNCE",
    "BEGIN_INTENT",
    "CLAIM_COPIES",
    "CLAIM_DELIVERIES",
    "CLAIM_DUE",
    "CLAIM_PASS_OVER",
    "CLIENT_BUSY",
    "CONCLUDE_ATTEMPT",
    "COUNT_IN_WINDOW",
    "END_ROTATION_OVERLAP",
    "FIND_TRACKED",
    "FORGET_DELIVERY",
    "FORGET_DUE",
    "FORGET_EXPIRED_TASKS",
    "HAND_KEY",
    "OPEN_STREAM",
    "POSTPONE_DELIVERY",
    "READ_OUTGOING",
    "RECORD_ATTEMPT",
    "REGISTER",
    "RELEASE_SLOT",
    "SEARCH_TASKS",
    "SETTLE_INTENT",
    "SKIP_DELIVERY",
    "STAGE_COPY",
    "TAKE_FROM_BUCKET",
    "TOUCH_TASK",
    "VACATE_SLOT",
]
