"""Who owns a task tracked under the deployment's shared QuickRouter key, across partitions.

Under the shared key a task belongs to the client that registered it first (unless
TRACKER_SHARED_TASKS): another client's registration of the same id ends as an unknown id
would (`tracker.core.upstream_keys.DENIED`). The task's own record says who owns it, but a
client in another partition has its own records (`tracker.store.keys.partition_of`) and never
sees that one; so the first registration also claims the id in a place every partition
looks: the partition its tracking id maps to (`keys.partition_of`, as a client id does), so
the claims spread over the partitions too.

The claim is written before the registration (a separate step: the two keys are in different
slots). A crash between the two leaves a claim without a task, which only its own client
can use: registering again goes on as if the first had succeeded.
"""

from __future__ import annotations

from tracker.store.clients import Place


class Owners:
    def __init__(self, place: Place) -> None:
        self.place = place  # the partition that holds a tracking id's claim

    async def claim(self, tracking_id: str, client_id: str, ttl: float) -> str:
        """Claim the shared-key task `tracking_id` for `client_id` unless a client has it;
        the owner, either way. The claim lasts `ttl` seconds (as long as the task's records
        can)."""
        where, space = self.place(tracking_id)
        key = space.task_owner(tracking_id)
        async with where.pipeline(transaction=True) as pipe:
            pipe.set(key, client_id, nx=True, ex=max(1, round(ttl)))
            pipe.get(key)
            _, owner = await pipe.execute()
        return str(owner.decode()) if owner is not None else client_id
