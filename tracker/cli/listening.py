"""`qrtracker listen`: forward a client's event feed to a local receiver."""

from __future__ import annotations

import os
from pathlib import Path

import click
import httpx

from tracker import listen
from tracker.cli.local import load_settings
from tracker.client import ApiError, Tracker


@click.command("listen")
@click.option("--forward-to", required=True, help="The local URL each event is POSTed to.")
@click.option(
    "--api", "api_url", default="http://127.0.0.1:8000", show_default=True,
    envvar="QRTRACKER_API", help="The tracker's API (or QRTRACKER_API).",
)  # fmt: skip
@click.option("--type", "types", multiple=True, help="Only events of this type (repeatable).")
@click.option("--task-id", default=None, help="Only events of this task.")
@click.option("--after", default=None, help="Start after this cursor (default: where it stopped).")
@click.option(
    "--cursor-file", type=click.Path(path_type=Path), default=None,
    help="Where it keeps its place (default: under TRACKER_DATA_DIR).",
)  # fmt: skip
def listen_command(
    forward_to: str,
    api_url: str,
    types: tuple[str, ...],
    task_id: str | None,
    after: str | None,
    cursor_file: Path | None,
) -> None:
    """Forward this client's events to a local URL as webhooks (QRTRACKER_API_KEY: its key)."""
    api_key = os.environ.get("QRTRACKER_API_KEY", "")
    if not api_key:
        raise click.UsageError("set QRTRACKER_API_KEY to the client's API key")
    path = cursor_file or listen.cursor_file(load_settings().data_dir, api_url, api_key)
    click.echo(f"forwarding events from {api_url} to {forward_to} (cursor in {path})")
    with Tracker(api_url, api_key) as tracker, httpx.Client(timeout=30) as http:
        try:
            listen.listen(
                tracker, forward_to, path, after=after, types=list(types) or None,
                task_id=task_id, echo=click.echo, http=http,
            )  # fmt: skip
        except KeyboardInterrupt:
            pass
        except ApiError as exc:
            raise click.ClickException(str(exc)) from None
