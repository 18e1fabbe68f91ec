"""The dashboard (issue 15): HTTP-level checks of sessions, CSRF, escaping, isolation and the
operator's actions, and a real headless Chromium driving `qrtracker up`."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import (
    Trip,
    WorkerProcess,
    auth,
    create_client,
    csrf_of,
    signed_in,
    wait_for,
)
from tracker.embedded_redis import free_port
from tracker.settings import Settings
from tracker.ui import charts

ADMIN = "operator-token-for-tests"
SCRIPT = "<script>window.__pwned = 1</script>"


@pytest.fixture
def browsers() -> Iterator[list[httpx.Client]]:
    """Sessions the test opens (closed after it)."""
    opened: list[httpx.Client] = []
    yield opened
    for browser in opened:
        browser.close()


@pytest.fixture
def ui(settings: Settings, start_api: Callable[[Settings], httpx.Client]) -> httpx.Client:
    return start_api(dataclasses.replace(settings, admin_token=ADMIN))


def test_signing_in_exchanges_the_key_for_a_strict_http_only_cookie(
    ui: httpx.Client, client: dict[str, str], browsers: list[httpx.Client]
) -> None:
    browser = httpx.Client(base_url=str(ui.base_url), timeout=10)
    browsers.append(browser)
    form = browser.get("/ui/login")
    assert form.status_code == 200
    assert "script-src 'self'" in form.headers["content-security-policy"]
    assert "unsafe-inline" not in form.headers["content-security-policy"]
    assert form.headers["x-frame-options"] == "DENY"
    lost = browser.get("/ui/no-such-page")
    assert lost.status_code == 404 and lost.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in lost.headers["content-security-policy"]
    token = csrf_of(form)
    assert browser.post("/ui/login", data={"secret": client["api_key"]}).status_code == 403
    wrong = browser.post("/ui/login", data={"csrf": token, "secret": "qrt_nobody"})
    assert wrong.status_code == 401
    answer = browser.post("/ui/login", data={"csrf": token, "secret": client["api_key"]})
    assert answer.status_code == 303 and answer.headers["location"].endswith("/ui/tasks")
    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    assert client["api_key"] not in answer.headers["set-cookie"]
    page = browser.get("/ui/tasks")
    assert page.status_code == 200 and client["api_key"] not in page.text
    # Signing out needs the token too: a cross-site form cannot sign anyone out.
    assert browser.post("/ui/logout", data={}).headers["location"].endswith("/ui/login")
    assert browser.get("/ui/tasks").status_code == 200  # still signed in
    browser.post("/ui/logout", data={"csrf": csrf_of(page)})
    assert browser.get("/ui/tasks").headers["location"].endswith("/ui/login")


def test_a_task_page_escapes_what_clients_sent_and_hides_other_clients_tasks(
    ui: httpx.Client,
    trip: Trip,
    worker: WorkerProcess,
    redis_url: str,
    browsers: list[httpx.Client],
) -> None:
    task = trip.script(scenario="success")
    trip.register(task.task_id, metadata={"note": SCRIPT, "order": "A-17"})
    trip.settled(task.task_id)
    browser = signed_in(browsers, str(ui.base_url), trip.client["api_key"])
    page = browser.get(f"/ui/tasks/{task.task_id}")
    assert page.status_code == 200
    assert SCRIPT not in page.text and "&lt;script&gt;" in page.text
    assert "204" in page.text and "completed" in page.text
    for cursor in ("nan", "inf", "-inf", "1e400", "junk"):  # none a cursor a page gave
        listed = browser.get("/ui/tasks", params={"cursor": cursor})
        assert listed.status_code == 200 and task.task_id in listed.text, cursor
    found = browser.get("/ui/tasks", params={"q": "a-17"})  # a metadata value, any case
    assert task.task_id in found.text
    assert task.task_id not in browser.get("/ui/tasks", params={"q": "B-99"}).text
    other = create_client(redis_url, "other")
    theirs = signed_in(browsers, str(ui.base_url), other["api_key"])
    assert theirs.get(f"/ui/tasks/{task.task_id}").status_code == 404
    assert task.task_id not in theirs.get("/ui/tasks").text
    # Redeliver: refused without the session's token, done with it.
    assert browser.post(f"/ui/tasks/{task.task_id}/redeliver", data={}).status_code == 403
    again = browser.post(f"/ui/tasks/{task.task_id}/redeliver", data={"csrf": csrf_of(page)})
    assert again.status_code == 303
    wait_for(lambda: len(trip.hits()) == 2, 20, "the webhook sent again")


def test_the_operator_sees_the_fleet_and_revokes_a_client(
    ui: httpx.Client, client: dict[str, str], browsers: list[httpx.Client]
) -> None:
    as_client = signed_in(browsers, str(ui.base_url), client["api_key"])
    assert as_client.get("/ui/operator").status_code == 403
    registered = ui.post(
        "/v1/tasks", headers=auth(client), json={"task_id": "veo3.1-fast:1770350082-busy"}
    )
    assert registered.status_code == 201
    operator = signed_in(browsers, str(ui.base_url), ADMIN)
    page = operator.get("/ui/operator")
    assert page.status_code == 200
    assert "tasks tracking" in page.text and client["id"] in page.text and "<svg" in page.text
    # Each client's own figures: its one task tracking, no webhook in flight.
    row = page.text[page.text.index(client["id"]) :]
    assert "<td>1</td><td>0</td>" in row[: row.index("</tr>")]
    # The operator looks into the client's task: the client's own page, with nothing to act on.
    task = "veo3.1-fast:1770350082-busy"
    looked = operator.get("/ui/operator/task", params={"client_id": client["id"], "task_id": task})
    assert looked.status_code == 200 and "as the operator sees it" in looked.text
    assert task in looked.text and "/redeliver" not in looked.text
    assert (
        as_client.get(
            "/ui/operator/task", params={"client_id": client["id"], "task_id": task}
        ).status_code
        == 403
    )
    missing = {"client_id": client["id"], "task_id": "veo3.1-fast:1-none"}
    assert operator.get("/ui/operator/task", params=missing).status_code == 404
    assert operator.get("/ui/operator/task", params={"client_id": "cli_x"}).status_code == 404
    assert operator.post(f"/ui/operator/clients/{client['id']}/revoke", data={}).status_code == 403
    asked = operator.post(
        f"/ui/operator/clients/{client['id']}/revoke", data={"csrf": csrf_of(page)}
    )
    assert asked.status_code == 200 and "Yes, revoke" in asked.text  # asked first, not done
    assert ui.get("/v1/tasks", headers=auth(client)).status_code == 200
    done = operator.post(
        f"/ui/operator/clients/{client['id']}/revoke",
        data={"csrf": csrf_of(page), "confirm": "yes"},
    )
    assert done.status_code == 303
    assert ui.get("/v1/tasks", headers=auth(client)).status_code == 401
    # The revoked client's session ends too.
    assert as_client.get("/ui/tasks").headers["location"].endswith("/ui/login")


# -- a real browser against `qrtracker up` -------------------------------------------------------


@dataclasses.dataclass
class Up:
    url: str
    sim: str
    hooks: str
    key: str
    env: dict[str, str]


@pytest.fixture
def up(tmp_path: Path) -> Iterator[Up]:
    """`qrtracker up` with the simulator, as a user starts it, and the operator token set."""
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("TRACKER_", "QUICKROUTER_"))},
        "TRACKER_DATA_DIR": str(tmp_path / "data"), "TRACKER_ADMIN_TOKEN": ADMIN,
        "PYTHONUNBUFFERED": "1",
        # Polls every second, so a task of a few seconds shows its statuses on the timeline.
        "TRACKER_POLL_FIRST_DELAY": "0.5", "TRACKER_POLL_MAX_DELAY": "1",
    }  # fmt: skip
    env.pop("REDIS_URL", None)
    out = tmp_path / "up.log"
    with out.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "tracker.cli", "up", "--port", str(port)],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            banner = wait_for(
                lambda: "webhooks go to" in (text := out.read_text()) and text, 60, "`up`"
            )
            found = {
                name: re.search(pattern, banner).group(1)  # type: ignore[union-attr]
                for name, pattern in {
                    "sim": r"simulated QuickRouter at (\S+)",
                    "key": r"demo client API key:\s+(\S+)",
                    "hooks": r"webhooks go to (\S+)",
                }.items()
            }
            yield Up(f"http://127.0.0.1:{port}", found["sim"], found["hooks"], found["key"], env)
        finally:
            process.terminate()
            process.wait(30)


def chromium() -> object:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                 "--window-size=1280,1000"):  # fmt: skip
        options.add_argument(flag)
    service = Service(executable_path=shutil.which("chromedriver") or "/usr/bin/chromedriver")
    return webdriver.Chrome(options=options, service=service)


def screenshot(driver: object, tmp_path: Path, name: str) -> None:
    """Save under the test's output, and where QRTRACKER_SCREENSHOTS says (the README's)."""
    path = tmp_path / name
    driver.save_screenshot(str(path))  # type: ignore[attr-defined]
    assert path.stat().st_size > 10_000
    if target := os.environ.get("QRTRACKER_SCREENSHOTS"):
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(target) / name)


@pytest.mark.slow
def test_a_browser_signs_in_redelivers_and_sees_it_live(up: Up, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    api = httpx.Client(base_url=up.url, headers={"authorization": f"Bearer {up.key}"})
    created = httpx.post(
        up.sim + "/v1/video/create", headers={"authorization": "Bearer sim-key"},
        json={"model": "veo3.1-fast", "prompt": "a cat", "simulate": {"duration": 8}},
    ).json()  # fmt: skip
    task_id = created["id"]
    answer = api.post("/v1/tasks", json={
        "task_id": task_id, "callback_url": up.hooks, "metadata": {"note": SCRIPT},
        "events": ["video.status_changed", "video.completed"]})  # fmt: skip
    assert answer.status_code == 201, answer.text
    other = subprocess.run(
        [sys.executable, "-m", "tracker.cli", "clients", "create", "other", "--json"],
        env=up.env, capture_output=True, check=True,
    )  # fmt: skip
    other_key = __import__("json").loads(other.stdout)["api_key"]
    theirs = httpx.post(
        up.sim + "/v1/video/create", headers={"authorization": "Bearer sim-key"},
        json={"model": "veo3.1-fast", "prompt": "a dog"},
    ).json()["id"]  # fmt: skip
    httpx.post(up.url + "/v1/tasks", headers={"authorization": f"Bearer {other_key}"},
               json={"task_id": theirs})  # fmt: skip

    driver = chromium()
    try:
        driver.get(up.url + "/ui/")  # type: ignore[attr-defined]
        field = driver.find_element(By.ID, "secret")  # type: ignore[attr-defined]
        field.send_keys(up.key, Keys.ENTER)  # the keyboard alone signs in
        wait_for(lambda: "/ui/tasks" in driver.current_url, 10, "the tasks page")  # type: ignore[attr-defined]
        driver.find_element(By.LINK_TEXT, task_id).click()  # type: ignore[attr-defined]
        assert "tracking" in driver.find_element(By.TAG_NAME, "main").text  # type: ignore[attr-defined]
        driver.execute_script("window.__loaded = 1")  # type: ignore[attr-defined]
        # The reader opens the metadata while the page updates itself: it stays open.
        driver.find_element(By.TAG_NAME, "summary").click()  # type: ignore[attr-defined]

        def attempts() -> list[str]:  # read in one go: the page may swap its rows meanwhile
            return driver.execute_script(  # type: ignore[attr-defined,no-any-return]
                "return [...document.querySelectorAll('tr.attempt')].map(r => [...r.cells]"
                ".filter(c => !c.querySelector('time')).map(c => c.innerText).join('|'))"
            )

        def settled() -> bool:  # nothing pending: the page stopped updating itself
            return driver.execute_script(  # type: ignore[attr-defined,no-any-return]
                "return !document.querySelector('main[data-live]')"
            )

        # The task ends and its webhook goes out while the page is open: it shows both
        # without a reload (the marker set above survives).
        wait_for(lambda: any("204" in row for row in attempts()), 30, "the attempt, live")
        assert driver.execute_script("return window.__loaded") == 1  # type: ignore[attr-defined]
        wait_for(settled, 10, "the page to stop updating")
        before = attempts()
        assert driver.execute_script("return document.querySelector('details').open")  # type: ignore[attr-defined]
        body = driver.find_element(By.TAG_NAME, "body").text  # type: ignore[attr-defined]
        assert "completed" in body and "204" in body and SCRIPT in body  # shown as text
        assert driver.execute_script("return window.__pwned") is None  # type: ignore[attr-defined]
        driver.find_element(By.XPATH, "//button[contains(., 'Redeliver')]").click()  # type: ignore[attr-defined]
        # A new round: the page shows the redelivered attempt beside the one before.
        wait_for(lambda: len(attempts()) > len(before), 30, "the new attempt")
        assert attempts()[: len(before)] == before
        wait_for(settled, 10, "the page to stop updating")
        assert driver.execute_script("return window.__pwned") is None  # type: ignore[attr-defined]
        driver.set_window_size(1280, 1500)  # type: ignore[attr-defined]
        screenshot(driver, tmp_path, "ui-task.png")
        # A phone's width: nothing wider than the screen but the tables' own scroll.
        driver.set_window_size(390, 844)  # type: ignore[attr-defined]
        assert driver.execute_script(  # type: ignore[attr-defined]
            "return document.documentElement.scrollWidth <= window.innerWidth + 1"
        ), driver.execute_script(  # type: ignore[attr-defined]
            "return [...document.querySelectorAll('body *')].filter(e => "
            "e.getBoundingClientRect().right > window.innerWidth + 1).map(e => e.tagName + '.' + "
            "e.className + ' ' + Math.round(e.getBoundingClientRect().right)).slice(0, 8)"
        )
        driver.set_window_size(1280, 1000)  # type: ignore[attr-defined]
        driver.find_element(By.LINK_TEXT, "Destinations").click()  # type: ignore[attr-defined]
        wait_for(lambda: "/ui/destinations" in driver.current_url, 10, "destinations")  # type: ignore[attr-defined]
        assert "deliveries waiting" in driver.find_element(By.TAG_NAME, "main").text  # type: ignore[attr-defined]
        screenshot(driver, tmp_path, "ui-destinations.png")
        driver.get(f"{up.url}/ui/tasks/{theirs}")  # type: ignore[attr-defined]
        assert "No such task" in driver.find_element(By.TAG_NAME, "body").text  # type: ignore[attr-defined]

        driver.find_element(By.XPATH, "//button[contains(., 'Sign out')]").click()  # type: ignore[attr-defined]
        wait_for(lambda: "/ui/login" in driver.current_url, 10, "signed out")  # type: ignore[attr-defined]
        driver.find_element(By.ID, "secret").send_keys(ADMIN, Keys.ENTER)  # type: ignore[attr-defined]
        wait_for(lambda: "/ui/operator" in driver.current_url, 10, "the operator page")  # type: ignore[attr-defined]
        assert "tasks tracking" in driver.find_element(By.TAG_NAME, "body").text  # type: ignore[attr-defined]
        screenshot(driver, tmp_path, "ui-operator.png")
        # The operator looks into the other client's task, from the form on its page.
        from selenium.webdriver.support.ui import Select

        Select(driver.find_element(By.NAME, "client_id")).select_by_visible_text(  # type: ignore[attr-defined]
            next(o.text for o in Select(driver.find_element(By.NAME, "client_id")).options  # type: ignore[attr-defined]
                 if o.text.startswith("other "))
        )  # fmt: skip
        driver.find_element(By.NAME, "task_id").send_keys(theirs, Keys.ENTER)  # type: ignore[attr-defined]
        wait_for(lambda: "/ui/operator/task" in driver.current_url, 10, "the operator's task")  # type: ignore[attr-defined]
        main = driver.find_element(By.TAG_NAME, "main").text  # type: ignore[attr-defined]
        assert theirs in main and "as the operator sees it" in main and "Redeliver" not in main
    finally:
        driver.quit()  # type: ignore[attr-defined]
        api.close()


def test_the_pages_say_what_is_so(
    ui: httpx.Client, trip: Trip, worker: WorkerProcess, browsers: list[httpx.Client]
) -> None:
    """The mended items of issue 25: nothing on a page misleads."""
    browser = signed_in(browsers, str(ui.base_url), trip.client["api_key"])
    # A receiver refusing: the destination shows "failing", not a green "closed".
    trip.receiver.script(trip.path, *[500] * 20)
    task = trip.script(scenario="success")
    trip.register(task.task_id)
    wait_for(lambda: trip.hits(), 20, "the first refused attempt")

    def failing() -> str | None:
        text = browser.get(f"/ui/tasks/{task.task_id}").text
        return text if "failures in a row" in text else None

    page = wait_for(failing, 20, "the failure to be recorded")
    assert 'class="circuit failing">failing<' in page
    # The list says so too, beside the task's own state.
    assert "webhook failing" in browser.get("/ui/tasks").text
    # An ended task's timeline draws its final status; the status names are whole.
    assert "No upstream status seen yet" not in page
    assert ">completed</text>" in page
    drawn = charts.timeline([("video_upsampling_completed", 1.0)], 0.0, 2.0, 3)
    assert ">video_upsampling_completed</text>" in drawn
    # The list counts the client's tasks and says nothing of a search limit it never reached.
    listed = browser.get("/ui/tasks", params={"q": "nothing-matches"}).text
    assert "in all." in listed and "newest of" not in listed
    assert 'href="/ui/tasks?state=">Newest tasks' not in browser.get("/ui/tasks").text
    # A feed-only task: redeliver says there is nothing to send, and spends no quota.
    quiet = trip.script()
    answer = trip.api.post("/v1/tasks", headers=auth(trip.client), json={"task_id": quiet.task_id})
    assert answer.status_code == 201
    wait_for(lambda: trip.view(quiet.task_id)["state"] == "completed", 20, "the feed-only task")
    for _ in range(12):  # past TRACKER_REDELIVERIES_PER_MINUTE: never 429
        refused = trip.api.post(f"/v1/tasks/{quiet.task_id}/redeliver", headers=auth(trip.client))
        assert refused.status_code == 409, refused.text
        assert refused.json()["type"].endswith("nothing_to_redeliver")
    # A followed sign-out link signs nobody out; the favicon is there.
    out = browser.get("/ui/logout")
    assert out.status_code == 303 and browser.get("/ui/tasks").status_code == 200
    icon = browser.get("/ui/static/favicon.svg")
    assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg")
    assert 'rel="icon"' in page
