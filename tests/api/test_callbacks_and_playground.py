"""Callbacks to allowed hosts only, and the playground page driven in headless Chromium."""

from __future__ import annotations

import base64
import json
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from tests.api.conftest import Stack

pytestmark = [pytest.mark.root, pytest.mark.redis]


@pytest.fixture(scope="module")
def base(stack: Stack) -> str:
    stack.worker()
    return stack.api(callback_hosts='["127.0.0.1"]')


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict[str, object]], threading.Event]]:
    """A loopback HTTP server that keeps the bodies PUT to it."""
    bodies: list[dict[str, object]] = []
    got = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_PUT(self) -> None:
            length = int(self.headers["Content-Length"])
            bodies.append(json.loads(self.rfile.read(length)))
            self.send_response(200)
            self.end_headers()
            got.set()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/done", bodies, got
    server.shutdown()
    server.server_close()
    thread.join(10)


def test_callback_puts_the_result(base: str, receiver):
    url, bodies, got = receiver
    answer = httpx.post(
        f"{base}/submissions",
        json={"source_code": "print('called')", "language_id": 71, "callback_url": url},
    )
    assert answer.status_code == 201
    assert got.wait(60), "no callback"
    body = bodies[0]
    assert body["token"] == answer.json()["token"]
    assert body["status"] == {"id": 3, "description": "Accepted"}
    assert base64.b64decode(str(body["stdout"])) == b"called\n"  # base64, as Judge0 sends it


def test_callback_to_another_host_is_refused(base: str):
    answer = httpx.post(
        f"{base}/submissions",
        json={
            "source_code": "print(1)",
            "language_id": 71,
            "callback_url": "http://169.254.169.254/latest",
        },
    )
    assert answer.status_code == 422
    assert answer.json() == {
        "callback_url": ["host 169.254.169.254 is not an allowed callback host"]
    }
    file_url = httpx.post(
        f"{base}/submissions",
        json={"source_code": "print(1)", "language_id": 71, "callback_url": "file:///etc/passwd"},
    )
    assert file_url.json() == {"callback_url": ["must be an http or https URL"]}


CHROMIUM = shutil.which("chromium")


def test_playground_runs_a_program_in_chromium(base: str):
    assert CHROMIUM is not None, "chromium is not installed (scripts/install installs it)"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"], headless=True
        )
        try:
            page = browser.new_page()
            page.goto(f"{base}/")
            page.wait_for_selector("#language option[value='71']", state="attached")
            page.select_option("#language", "71")
            page.fill("#code", "print(input().upper())\nimport sys; print('warn', file=sys.stderr)")
            page.fill("#stdin", "héllo")
            page.click("#run")
            page.wait_for_function(
                "document.getElementById('status').textContent === 'Accepted'", timeout=60_000
            )
            assert page.text_content("#stdout") == "HÉLLO\n"
            assert page.text_content("#stderr") == "warn\n"
            assert float(page.text_content("#time") or "nan") >= 0
            assert int(page.text_content("#memory") or "0") > 0
            page.select_option("#language", "54")
            page.fill("#code", "int main() { return *(volatile int *)0; }")
            page.click("#run")
            page.wait_for_function(
                "document.getElementById('status').textContent.startsWith('Runtime Error')",
                timeout=60_000,
            )
            assert page.text_content("#status") == "Runtime Error (SIGSEGV)"
        finally:
            browser.close()


def test_a_callback_survives_the_api_process_that_took_it(stack: Stack, base: str, receiver):
    """The API that accepted the submission stops before its result: the next API process
    to start sends the callback, once."""
    url, bodies, got = receiver
    first = stack.api(callback_hosts='["127.0.0.1"]')
    answer = httpx.post(
        f"{first}/submissions",
        json={
            "source_code": "import time\ntime.sleep(2)\nprint('late')",
            "language_id": 71,
            "callback_url": url,
        },
    )
    assert answer.status_code == 201
    stopped = stack.servers[-1]
    stopped.send_signal(signal.SIGTERM)
    stopped.wait(30)
    assert not got.wait(4), "the stopped API sent it"
    stack.api(callback_hosts='["127.0.0.1"]')  # resumes what is pending
    assert got.wait(60), "no callback after the restart"
    time.sleep(1)  # and no second one
    assert [b["token"] for b in bodies] == [answer.json()["token"]]
    assert base64.b64decode(str(bodies[0]["stdout"])) == b"late\n"
