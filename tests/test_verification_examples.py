"""The webhook verification examples the manual shows (docs/examples), run against headers
the tracker's own signer makes: a signed webhook passes, a tampered body, a forged signature
and a stale timestamp fail, and during a secret's rotation either secret verifies. Each runs
where its runtime is on the machine (Node.js here; Go where it is installed)."""

from __future__ import annotations

import json
import shutil
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

from tracker.core import signing

EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples"
BODY = json.dumps({"type": "video.completed", "data": {"task_id": "veo3.1-fast:1-a"}})

GO_MAIN = textwrap.dedent("""\
    package main

    import (
        "encoding/json"
        "fmt"
        "net/http"
        "os"

        "example.com/check/webhooks"
    )

    func main() {
        var input struct {
            Secret  string            `json:"secret"`
            Headers map[string]string `json:"headers"`
            Body    string            `json:"body"`
        }
        if err := json.NewDecoder(os.Stdin).Decode(&input); err != nil {
            panic(err)
        }
        header := http.Header{}
        for name, value := range input.Headers {
            header.Set(name, value)
        }
        if err := webhooks.Verify(input.Secret, header, []byte(input.Body)); err != nil {
            fmt.Fprintln(os.Stderr, err)
            os.Exit(1)
        }
        fmt.Println("verified")
    }
""")


def cases() -> list[tuple[str, str, dict[str, str], str, bool]]:
    """(what, secret, headers, body, whether it verifies)."""
    secret, old = signing.new_secret(), signing.new_secret()
    now = time.time()
    signed = signing.headers([secret], "msg_1", now, BODY.encode())
    rotating = signing.headers([secret, old], "msg_2", now, BODY.encode())
    stale = signing.headers([secret], "msg_3", now - 3600, BODY.encode())
    forged = {**signed, "webhook-signature": "v1," + signing.signature(old, "msg_1", int(now),
                                                                       BODY.encode())}  # fmt: skip
    return [
        ("signed", secret, signed, BODY, True),
        ("the old secret, mid-rotation", old, rotating, BODY, True),
        ("the new secret, mid-rotation", secret, rotating, BODY, True),
        ("a tampered body", secret, signed, BODY.replace("completed", "failed"), False),
        ("another secret's signature", secret, forged, BODY, False),
        ("an hour old", secret, stale, BODY, False),
        ("no signature", secret, {k: v for k, v in signed.items() if k != "webhook-id"}, BODY,
         False),
    ]  # fmt: skip


def check(command: list[str], cwd: Path) -> None:
    for what, secret, headers, body, verifies in cases():
        given = json.dumps({"secret": secret, "headers": headers, "body": body})
        ran = subprocess.run(command, input=given, capture_output=True, text=True, cwd=cwd,
                             timeout=120)  # fmt: skip
        assert (ran.returncode == 0) == verifies, (what, ran.stdout, ran.stderr)


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not on this machine")
def test_the_nodejs_example_verifies_what_the_tracker_signs_and_nothing_else() -> None:
    check([str(shutil.which("node")), str(EXAMPLES / "verify.js")], EXAMPLES)


@pytest.mark.skipif(shutil.which("go") is None, reason="Go is not on this machine")
def test_the_go_example_verifies_what_the_tracker_signs_and_nothing_else(tmp_path: Path) -> None:
    (tmp_path / "go.mod").write_text("module example.com/check\n\ngo 1.18\n")
    (tmp_path / "webhooks").mkdir()
    shutil.copy(EXAMPLES / "verify.go", tmp_path / "webhooks" / "verify.go")
    (tmp_path / "main.go").write_text(GO_MAIN)
    go = str(shutil.which("go"))
    built = subprocess.run([go, "build", "-o", "check", "."], cwd=tmp_path,
                           capture_output=True, text=True, timeout=300)  # fmt: skip
    assert built.returncode == 0, built.stderr
    check([str(tmp_path / "check")], tmp_path)
