"""`qrtracker redis …`: start over after a data loss, migrate an earlier key layout."""

from __future__ import annotations

import asyncio

import click

from tracker.cli.local import load_settings, resolve_redis, with_store
from tracker.store import Store, layout
from tracker.store.connection import connect


@click.group("redis")
def redis_group() -> None:
    """The tracker's Redis: its identity (see docs/reliability.md)."""


@redis_group.command("start-over")
@click.option("--yes", is_flag=True, help="Confirm: serve from what Redis holds now.")
def redis_start_over(yes: bool) -> None:
    """After Redis lost its data: write a new epoch, so every process serves and works again
    on what Redis holds now (the lost tasks, clients and deliveries stay lost)."""
    if not yes:
        raise click.UsageError(
            "this makes every process serve from what Redis holds now; what it lost stays "
            "lost. Run it again with --yes to go on"
        )
    settings = resolve_redis(load_settings())

    async def run(store: Store) -> str:
        return (await store.identity.start_over(store.clock.now())).id

    click.echo(f"started over: new epoch {with_store(settings, run)}")


@redis_group.command("migrate")
def redis_migrate() -> None:
    """Move records kept by a version before hash-tagged keys (`qrt:…`) to this version's
    layout, in place. Stop every API and worker first; running it again is harmless."""
    settings = resolve_redis(load_settings())

    async def run() -> int:
        pool = connect(str(settings.redis_url))
        try:
            return await layout.migrate(pool)
        finally:
            await pool.aclose()

    moved = asyncio.run(run())
    click.echo(f"migrated: {moved} keys renamed to the layout of this version")
