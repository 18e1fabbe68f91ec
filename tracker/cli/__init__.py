"""`qrtracker`: run the tracker, its halves, the simulator, forward events (`listen`), and
manage clients and Redis. One module per group of commands: `serve` (up, api, worker,
simulate), `listening` (listen), `clients` (clients …, new-key), `redis` (redis …); `local`
holds what they share (the settings, the data folder, a store on the configured Redis)."""

from __future__ import annotations

import click

from tracker.cli import clients, listening, redis, serve


@click.group()
@click.version_option(package_name="quickrouter-tracker")
def main() -> None:
    """quickrouter-tracker: QuickRouter video tasks in, signed webhooks out."""


for command in (
    serve.up, serve.api, serve.worker, serve.simulate, listening.listen_command,
    clients.clients, clients.new_key_command, redis.redis_group,
):  # fmt: skip
    main.add_command(command)
