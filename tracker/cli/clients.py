"""`qrtracker clients …`: create, list, rotate, revoke and configure the clients; and
`qrtracker new-key`."""

from __future__ import annotations

import asyncio
import json
import sys

import click

from tracker.api.storage import StorageSettings, checked_storage
from tracker.cli.local import load_settings, resolve_redis, with_store
from tracker.core import upstream_keys
from tracker.core.vault import new_key
from tracker.errors import TrackerError
from tracker.store import Store


@click.group()
def clients() -> None:
    """Create and list the clients that may register tasks."""


@clients.command("create")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
def clients_create(name: str, as_json: bool) -> None:
    """Create a client; prints its API key and webhook secret (the key is shown only once)."""
    settings = resolve_redis(load_settings())
    client, api_key = with_store(
        settings, lambda store: store.clients.create(name, store.clock.now())
    )
    if as_json:
        click.echo(
            json.dumps(
                {
                    "id": client.id,
                    "name": client.name,
                    "api_key": api_key,
                    "webhook_secret": client.secret,
                }
            )
        )
    else:
        click.echo(
            f"client {client.id} ({client.name})\napi key:        {api_key}\n"
            f"webhook secret: {client.secret}\nThe API key is not shown again."
        )


@clients.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON array.")
def clients_list(as_json: bool) -> None:
    """List the clients (never their keys or secrets)."""
    settings = resolve_redis(load_settings())
    found = with_store(settings, lambda store: store.clients.all())
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "id": client.id,
                        "name": client.name,
                        "state": "revoked" if client.revoked else "active",
                        "created_at": client.created_at,
                    }
                    for client in found
                ]
            )
        )
        return
    for client in found:
        click.echo(f"{client.id}  {'revoked' if client.revoked else 'active':8}  {client.name}")


@clients.command("rotate-secret")
@click.argument("client_id")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
def clients_rotate_secret(client_id: str, as_json: bool) -> None:
    """Give a client a new webhook secret; the old one also signs for the overlap."""
    settings = resolve_redis(load_settings())
    client = with_store(
        settings,
        lambda store: store.clients.rotate_secret(
            client_id, store.clock.now(), settings.secret_rotation_overlap
        ),
    )
    if client is None:
        raise click.ClickException(f"no client {client_id}")
    if as_json:
        click.echo(
            json.dumps(
                {
                    "id": client.id,
                    "webhook_secret": client.secret,
                    "previous_secret_until": client.previous_until,
                }
            )
        )
    else:
        click.echo(
            f"new webhook secret: {client.secret}\nthe old one also signs for "
            f"{settings.secret_rotation_overlap:g} s"
        )


@clients.command("reencrypt")
def clients_reencrypt() -> None:
    """Seal every stored secret with the first of TRACKER_ENCRYPTION_KEYS (see
    docs/commands.md, Secrets at rest)."""
    settings = resolve_redis(load_settings())
    count = with_store(settings, lambda store: store.clients.reseal())
    click.echo(f"{count} secrets sealed again with the first key")


@clients.command("revoke")
@click.argument("client_id")
def clients_revoke(client_id: str) -> None:
    """Revoke a client: its key refused, its credentials deleted, its subscriptions cancelled
    (its records are kept until they expire)."""
    settings = resolve_redis(load_settings())
    if not with_store(
        settings, lambda store: store.shard(client_id).revoke_client(client_id, store.clock.now())
    ):
        raise click.ClickException(f"no client {client_id}")
    click.echo(f"client {client_id} revoked")


@clients.command("set-upstream-key")
@click.argument("client_id")
def clients_set_upstream_key(client_id: str) -> None:
    """Keep one of a client's own QuickRouter keys, read from stdin (or a hidden prompt on a
    terminal, never from the command line: shells keep history). Prints its fingerprint."""
    settings = resolve_redis(load_settings())
    on_terminal = sys.stdin.isatty()
    raw = click.prompt("QuickRouter key", hide_input=True) if on_terminal else sys.stdin.read()
    try:
        key = upstream_keys.checked_key(raw)
    except TrackerError as exc:
        raise click.ClickException(exc.detail) from None

    async def add(store: Store) -> str | None:
        if await store.clients.get(client_id) is None:
            return None
        return await store.clients.add_upstream_key(client_id, key)

    name = with_store(settings, add)
    if name is None:
        raise click.ClickException(f"no client {client_id}")
    click.echo(name)


@clients.command("upstream-keys")
@click.argument("client_id")
def clients_upstream_keys(client_id: str) -> None:
    """List the fingerprints of a client's own QuickRouter keys."""
    settings = resolve_redis(load_settings())
    for name in with_store(settings, lambda store: store.clients.upstream_key_names(client_id)):
        click.echo(name)


@clients.command("remove-upstream-key")
@click.argument("client_id")
@click.argument("fingerprint")
def clients_remove_upstream_key(client_id: str, fingerprint: str) -> None:
    """Forget one of a client's QuickRouter keys (its tasks' next polls are refused)."""
    settings = resolve_redis(load_settings())
    if not with_store(settings, lambda s: s.clients.remove_upstream_key(client_id, fingerprint)):
        raise click.ClickException(f"client {client_id} has no key {fingerprint}")
    click.echo(f"{fingerprint} removed")


@clients.command("set-storage")
@click.argument("client_id")
@click.argument("url")
@click.option("--access-key-id", default=None, help="The bucket's access key id.")
@click.option(
    "--keep/--no-keep", default=None, help="Whether registrations keep copies unless they say."
)
def clients_set_storage(
    client_id: str, url: str, access_key_id: str | None, keep: bool | None
) -> None:
    """Send a client's copies to its own S3 bucket (URL: s3://bucket/prefix, with
    ?endpoint=…&region=… for MinIO, R2 or GCS). The secret access key is read from stdin (or
    a hidden prompt on a terminal), never from the command line."""
    settings = resolve_redis(load_settings())
    on_terminal = sys.stdin.isatty()
    secret = (
        click.prompt("secret access key", hide_input=True) if on_terminal else sys.stdin.read()
    ).strip()
    try:
        given = StorageSettings(
            url=url, access_key_id=access_key_id, secret_access_key=secret or None,
            keep_by_default=keep,
        )  # fmt: skip
        kept = asyncio.run(checked_storage(given, allow_private=settings.allow_private_callbacks))
    except (TrackerError, ValueError) as exc:
        raise click.ClickException(getattr(exc, "detail", None) or str(exc)) from None

    async def put(store: Store) -> bool:
        if await store.clients.get(client_id) is None:
            return False
        await store.buckets.put(client_id, kept)
        return True

    if not with_store(settings, put):
        raise click.ClickException(f"no client {client_id}")
    click.echo(json.dumps(kept.masked))


@clients.command("storage")
@click.argument("client_id")
def clients_storage(client_id: str) -> None:
    """Show a client's own storage (the secret never), as one JSON object."""
    settings = resolve_redis(load_settings())
    click.echo(json.dumps(with_store(settings, lambda s: s.buckets.get(client_id)).masked))


@clients.command("remove-storage")
@click.argument("client_id")
def clients_remove_storage(client_id: str) -> None:
    """Forget a client's own storage: its copies go to the deployment's (if any)."""
    settings = resolve_redis(load_settings())
    if not with_store(settings, lambda s: s.buckets.remove(client_id)):
        raise click.ClickException(f"client {client_id} has no storage of its own")
    click.echo(f"storage of {client_id} removed")


@click.command("new-key")
def new_key_command() -> None:
    """Print a fresh key for TRACKER_ENCRYPTION_KEYS."""
    click.echo(new_key())
