"""The API against real workers: the official Judge0 client unchanged, then raw HTTP.

One stack for the module: a redis-server, one worker (2 processes) and an
open `sandbox api` on loopback; the error paths that need another
configuration start an API server of their own on the same Redis.
"""

from __future__ import annotations

import base64
import io
import os
import signal
import time
import zipfile
from collections.abc import Iterator

import httpx
import judge0
import pytest

from tests.api.conftest import Stack, poll
from tests.service.conftest import Worker

pytestmark = [pytest.mark.root, pytest.mark.redis]

PYTHON, C, CPP, BASH = 71, 50, 54, 46


@pytest.fixture(scope="module")
def worker(stack: Stack) -> Worker:
    """The module's worker, for every test that submits jobs."""
    return stack.worker()


@pytest.fixture(scope="module")
def base(stack: Stack, worker: Worker) -> str:
    return stack.api()


@pytest.fixture(scope="module")
def client(base: str) -> judge0.Client:
    return judge0.Client(base)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# -- the official client, unchanged -------------------------------------------------


def test_official_client_runs_one_submission_and_waits(client: judge0.Client):
    result = judge0.run(
        client=client, source_code="print(input()[::-1])", stdin="hello", language=PYTHON
    )
    assert result.status == judge0.Status.ACCEPTED
    assert result.stdout == "olleh\n"
    assert result.time is not None
    assert result.memory is not None
    assert result.token is not None
    assert result.created_at is not None
    assert result.finished_at is not None


def test_official_client_batch_with_test_cases_by_language_alias(client: judge0.Client):
    results = judge0.run(
        client=client,
        source_code="a, b = map(int, input().split())\nprint(a + b)",
        language=judge0.PYTHON,
        test_cases=[("1 2", "3"), ("2 2", "5")],
    )
    assert [r.status for r in results] == [judge0.Status.ACCEPTED, judge0.Status.WRONG_ANSWER]
    assert [r.stdout for r in results] == ["3\n", "4\n"]


def test_official_client_async_then_wait_and_compile_error(client: judge0.Client):
    ok = judge0.async_run(
        client=client, source_code='#include <stdio.h>\nint main(){puts("hi");}', language=C
    )
    broken = judge0.async_run(client=client, source_code="int main( {", language=judge0.CPP)
    judge0.wait(client=client, submissions=[ok, broken])
    assert ok.status == judge0.Status.ACCEPTED
    assert ok.stdout == "hi\n"
    assert broken.status == judge0.Status.COMPILATION_ERROR
    assert "error" in (broken.compile_output or "")


def test_official_client_reads_the_catalogue(client: judge0.Client):
    ids = {language.id for language in client.get_languages()}
    assert {46, 50, 51, 52, 54, 60, 62, 63, 68, 71, 72, 73, 78} <= ids
    assert client.get_language(71).source_file == "main.py"
    assert len(client.get_statuses()) == 14
    assert client.get_about()["version"] == "1.13.1"
    assert client.config.max_cpu_time_limit == 15


# -- raw HTTP: the endpoints ----------------------------------------------------------


def test_wait_true_answers_the_default_fields_and_ours(base: str):
    answer = httpx.post(
        f"{base}/submissions?wait=true",
        json={"source_code": "print('hi')", "language_id": PYTHON},
        timeout=60,
    )
    assert answer.status_code == 201
    body = answer.json()
    assert set(body) == {
        "token", "time", "memory", "stdout", "stderr", "compile_output", "message", "status",
        "oom_killed", "memory_peak", "verdict",
    }  # fmt: skip
    assert body["status"] == {"id": 3, "description": "Accepted"}
    assert body["stdout"] == "hi\n"
    assert body["stderr"] is None
    assert isinstance(body["time"], str)
    assert float(body["time"]) >= 0
    assert body["memory"] == body["memory_peak"] // 1024


def test_poll_with_fields_and_base64(base: str):
    answer = httpx.post(
        f"{base}/submissions?base64_encoded=true",
        json={
            "source_code": b64("read -a w\necho ${w[0]}"),
            "language_id": BASH,
            "stdin": b64("ünï x"),
        },
    )
    assert answer.status_code == 201
    assert set(answer.json()) == {"token"}
    token = answer.json()["token"]
    body = poll(base, token, base64_encoded="true", fields="stdout,status,language,stdin,token")
    assert set(body) == {"stdout", "status", "language", "stdin", "token"}
    assert base64.b64decode(body["stdout"]).decode() == "ünï\n"  # type: ignore[arg-type]
    assert body["language"] == {"id": BASH, "name": "Bash (5.2.15)"}
    everything = poll(base, token, fields="*")
    assert everything["source_code"] == "read -a w\necho ${w[0]}"
    assert everything["stdin"] == "ünï x"
    assert everything["cpu_time_limit"] == "5.0"
    assert everything["memory_limit"] == 128000
    assert str(everything["finished_at"]).endswith("Z")


def test_statuses_from_our_results(base: str):
    cases = {
        "import sys; sys.exit(3)": (11, "Exited with error status 3"),
        "import os; os.kill(os.getpid(), 11)": (7, "Caught fatal signal 11"),
        "import os; os.abort()": (10, "Caught fatal signal 6"),
        "while True: pass": (5, "Time limit exceeded"),
        "x = bytearray(200 * 2**20)": (12, "Memory limit exceeded (killed by the OOM killer)"),
        "print('x' * 20000)": (8, "Output limit exceeded"),
        "print(1": (11, "Exited with error status 1"),  # Python: a syntax error is NZEC
    }
    tokens = {}
    for code in cases:
        answer = httpx.post(
            f"{base}/submissions",
            json={
                "source_code": code,
                "language_id": PYTHON,
                "cpu_time_limit": 0.5,
                "cpu_extra_time": 0.2,
                "memory_limit": 65536,
                "max_file_size": 10,
            },
        )
        assert answer.status_code == 201, answer.text
        tokens[code] = answer.json()["token"]
    for code, (status, message) in cases.items():
        body = poll(base, tokens[code], fields="*,oom_killed")
        assert (body["status"]["id"], body["message"]) == (status, message), (code, body)  # type: ignore[index]
        if status == 12:
            assert body["oom_killed"] is True
        if code == "print(1":
            assert "SyntaxError" in body["stderr"]  # type: ignore[operator]


def test_expected_output_redirect_and_runs(base: str):
    answer = httpx.post(
        f"{base}/submissions?wait=true&fields=status,stdout,stderr,time",
        json={
            "source_code": "import sys\nprint('out')\nprint('err', file=sys.stderr)",
            "language_id": 92,  # Judge0's Python 3.11.2: an alias
            "expected_output": "out  \nerr\n\n",
            "redirect_stderr_to_stdout": True,
            "number_of_runs": 3,
        },
        timeout=60,
    )
    body = answer.json()
    assert body["status"]["id"] == 3, body
    assert body["stdout"] == "out\nerr\n"
    assert body["stderr"] is None


def test_a_multi_file_program_as_judge0_has_it(base: str):
    """Language 89: no source code, a zip with `compile` and `run` scripts and sources."""
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("compile", "gcc -O2 -o prog main.c add.c\n")
        z.writestr("run", 'read a b\n./prog "$a" "$b" "$1"\n')
        z.writestr("main.c", '#include <stdio.h>\n#include <stdlib.h>\nint add(int, int);\n'
                   'int main(int c, char **v) { printf("%d %s\\n", add(atoi(v[1]), atoi(v[2])),'
                   ' v[3]); }\n')  # fmt: skip
        z.writestr("add.c", "int add(int a, int b) { return a + b; }\n")
    body = {
        "language_id": 89,
        "additional_files": base64.b64encode(archive.getvalue()).decode(),
        "stdin": "20 22\n",
        "command_line_arguments": "arg",
    }
    answer = httpx.post(f"{base}/submissions?wait=true", json=body, timeout=60).json()
    assert (answer["status"]["id"], answer["stdout"]) == (3, "42 arg\n"), answer
    broken = io.BytesIO()
    with zipfile.ZipFile(broken, "w") as z:
        z.writestr("compile", "gcc -o prog missing.c\n")
        z.writestr("run", "./prog\n")
    body["additional_files"] = base64.b64encode(broken.getvalue()).decode()
    failed = httpx.post(f"{base}/submissions?wait=true", json=body, timeout=60).json()
    assert failed["status"]["id"] == 6, failed  # Compilation Error
    assert "missing.c" in failed["compile_output"]


def test_compiler_options_and_command_line_arguments(base: str):
    answer = httpx.post(
        f"{base}/submissions?wait=true",
        json={
            "source_code": "#include <stdio.h>\nint main(int c, char **v) "
            '{ printf("%d %s|%s\\n", ANSWER, v[1], v[2]); }\n',
            "language_id": C,
            "compiler_options": "-DANSWER=42",
            "command_line_arguments": "one 'two words'",
        },
        timeout=60,
    )
    assert answer.json()["stdout"] == "42 one|two words\n", answer.json()


def test_additional_files_as_a_zip(base: str):
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("data.txt", "from the zip\n")
    answer = httpx.post(
        f"{base}/submissions?wait=true",
        json={
            "source_code": "print(open('data.txt').read(), end='')",
            "language_id": PYTHON,
            "additional_files": base64.b64encode(archive.getvalue()).decode(),
        },
        timeout=60,
    )
    assert answer.json()["stdout"] == "from the zip\n", answer.json()


def test_batch_create_and_show(base: str):
    answer = httpx.post(
        f"{base}/submissions/batch",
        json={
            "submissions": [
                {"source_code": "print(1)", "language_id": PYTHON},
                {"source_code": "print(2)", "language_id": 9999},
            ]
        },
    )
    assert answer.status_code == 201
    made = answer.json()
    assert made[1] == {"language_id": ["language with id 9999 doesn't exist"]}
    token = made[0]["token"]
    poll(base, token)
    shown = httpx.get(
        f"{base}/submissions/batch",
        params={"tokens": f"{token},00000000-0000-4000-8000-000000000000", "fields": "stdout"},
    ).json()
    assert shown == {"submissions": [{"stdout": "1\n"}, None]}


def test_catalogue_endpoints(base: str):
    languages = httpx.get(f"{base}/languages").json()
    assert {"id": 54, "name": "C++ (GCC 12.2.0)"} in languages
    detail = httpx.get(f"{base}/languages/62").json()
    assert detail["source_file"] == "Main.java"
    assert detail["is_archived"] is False
    assert httpx.get(f"{base}/languages/999").status_code == 404
    statuses = httpx.get(f"{base}/statuses").json()
    assert [s["id"] for s in statuses] == list(range(1, 15))
    assert statuses[12] == {"id": 13, "description": "Internal Error"}
    config = httpx.get(f"{base}/config_info").json()
    assert config["memory_limit"] == 128000
    assert config["max_queue_size"] == 100
    workers = httpx.get(f"{base}/workers").json()
    assert workers == [
        {"queue": "sandbox", "size": 0, "available": 2, "idle": 2, "working": 0, "paused": 0,
         "failed": 0}
    ]  # fmt: skip
    assert "swagger" in httpx.get(f"{base}/docs").text.lower()
    schema = httpx.get(f"{base}/openapi.json").json()
    assert "SubmissionIn" in schema["components"]["schemas"]


# -- raw HTTP: each error path, with a clear answer -----------------------------------


def test_bad_language_and_out_of_range_fields(base: str):
    answer = httpx.post(
        f"{base}/submissions",
        json={
            "source_code": "print(1)",
            "language_id": 70,  # Python 2: not ours
            "cpu_time_limit": 100,
            "memory_limit": 10**9,
            "enable_network": True,
            "command_line_arguments": "'unclosed",
        },
    )
    assert answer.status_code == 422
    assert answer.json() == {
        "language_id": ["language with id 70 doesn't exist"],
        "cpu_time_limit": ["must be less than or equal to 15"],
        "memory_limit": ["must be less than or equal to 512000"],
        "enable_network": ["enabling network is not allowed"],
        "command_line_arguments": ["cannot be split into arguments (No closing quotation)"],
    }
    compiled_only = httpx.post(
        f"{base}/submissions",
        json={"source_code": "print(1)", "language_id": PYTHON, "compiler_options": "-O2"},
    )
    assert compiled_only.json() == {
        "compiler_options": ["setting compiler options is only allowed for compiled languages"]
    }
    assert httpx.post(f"{base}/submissions", json={"language_id": PYTHON}).json() == {
        "source_code": ["can't be blank"]
    }
    bad_json = httpx.post(
        f"{base}/submissions", content=b"{", headers={"Content-Type": "application/json"}
    )
    assert bad_json.status_code == 400
    assert "error" in bad_json.json()
    assert httpx.get(f"{base}/submissions/nope").status_code == 404
    assert httpx.get(f"{base}/submissions/x?fields=stdout,nope").json() == {
        "error": "invalid fields: [nope]"
    }


def test_too_large(base: str):
    code = "#" * (5 * 2**20)
    answer = httpx.post(
        f"{base}/submissions", json={"source_code": code, "language_id": PYTHON}, timeout=30
    )
    assert answer.status_code == 413
    assert answer.json() == {"error": "request body larger than 4194304 bytes"}

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        yield b'{"language_id": 71, "source_code": "'
        for _ in range(6):
            yield b"#" * 2**20
        yield b'"}'

    chunked = httpx.post(
        f"{base}/submissions", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert chunked.status_code == 413


@pytest.mark.usefixtures("worker")
def test_bad_token_and_authorization(stack: Stack):
    base = stack.api(authn_tokens='["s3cret", "other"]', authz_tokens='["admin"]')
    assert httpx.get(f"{base}/languages").status_code == 401
    assert httpx.get(f"{base}/languages", headers={"X-Auth-Token": "wrong"}).status_code == 401
    assert httpx.get(f"{base}/languages", headers={"X-Auth-Token": "other"}).status_code == 200
    assert httpx.get(f"{base}/languages?X-Auth-Token=s3cret").status_code == 200
    assert httpx.get(f"{base}/").status_code == 200  # the playground page; its calls need one
    auth = {"X-Auth-Token": "s3cret"}
    client = judge0.Client(base, headers=dict(auth))
    done = judge0.run(client=client, source_code="print(5)", language=PYTHON)
    assert done.stdout == "5\n"
    token = str(done.token)
    url = f"{base}/submissions/{token}"
    assert httpx.delete(url, headers=auth).status_code == 403
    assert httpx.delete(url, headers={**auth, "X-Auth-User": "nobody"}).status_code == 403
    deleted = httpx.delete(url, headers={**auth, "X-Auth-User": "admin"})
    assert deleted.status_code == 200
    assert base64.b64decode(deleted.json()["stdout"]) == b"5\n"
    assert httpx.get(url, headers=auth).status_code == 404
    assert (
        httpx.post(f"{base}/authorize", headers={**auth, "X-Auth-User": "admin"}).status_code == 200
    )


@pytest.mark.usefixtures("worker")
def test_list_submissions_a_page_at_a_time(stack: Stack):
    base = stack.api(authn_tokens='["s3cret"]', authz_tokens='["admin"]')
    auth = {"X-Auth-Token": "s3cret"}
    admin = {**auth, "X-Auth-User": "admin"}
    before = httpx.get(f"{base}/submissions", headers=admin).json()["meta"]["total_count"]
    tokens = [
        httpx.post(
            f"{base}/submissions?wait=true",
            json={"source_code": f"print({i})", "language_id": PYTHON},
            headers=auth,
            timeout=60,
        ).json()["token"]
        for i in range(3)
    ]
    assert httpx.get(f"{base}/submissions", headers=auth).status_code == 403  # admins only
    last = -(-(before + 3) // 2)
    page = httpx.get(
        f"{base}/submissions?page={last}&per_page=2&fields=token,stdout", headers=admin
    ).json()
    assert page["meta"] == {
        "current_page": last,
        "next_page": None,
        "prev_page": last - 1 if last > 1 else None,
        "total_pages": last,
        "total_count": before + 3,
    }
    assert page["submissions"][-1] == {"token": tokens[-1], "stdout": "2\n"}  # oldest first
    bad = httpx.get(f"{base}/submissions?page=0", headers=admin)
    assert (bad.status_code, bad.json()) == (400, {"error": "invalid page: 0"})
    httpx.delete(f"{base}/submissions/{tokens[-1]}", headers=admin)
    after = httpx.get(f"{base}/submissions", headers=admin).json()["meta"]["total_count"]
    assert after == before + 2


def test_open_bind_without_tokens_is_refused(stack: Stack):
    import subprocess

    from tests.api.conftest import SANDBOX

    done = subprocess.run(
        [SANDBOX, "api", "--host", "0.0.0.0", "--port", "1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "without authentication" in done.stderr


def test_rate_limit_per_token(stack: Stack):
    base = stack.api(authn_tokens='["a", "b"]', rate="2")
    body = {"source_code": "print(1)", "language_id": PYTHON}
    codes = [
        httpx.post(f"{base}/submissions", json=body, headers={"X-Auth-Token": "a"}).status_code
        for _ in range(3)
    ]
    assert codes[:2] == [201, 201]
    if codes[2] == 201:  # the minute turned between them: a new window
        codes.append(
            httpx.post(f"{base}/submissions", json=body, headers={"X-Auth-Token": "a"}).status_code
        )
    limited = httpx.post(f"{base}/submissions", json=body, headers={"X-Auth-Token": "a"})
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) >= 1
    assert "rate limit" in limited.json()["error"]
    other = httpx.post(f"{base}/submissions", json=body, headers={"X-Auth-Token": "b"})
    assert other.status_code == 201  # the limit is per token


def test_queue_full(stack: Stack):
    # A queue no worker reads: what is accepted stays queued, what is refused is told so.
    base = stack.api({"SANDBOX_QUEUE": "api-test-full"}, max_queue_size="2")
    body = {"source_code": "print(1)", "language_id": PYTHON}
    made = [httpx.post(f"{base}/submissions", json=body) for _ in range(2)]
    assert [m.status_code for m in made] == [201, 201]
    full = httpx.post(f"{base}/submissions", json=body)
    assert full.status_code == 503
    assert full.json() == {"error": "queue is full"}
    assert full.headers["Retry-After"] == "5"
    batch = httpx.post(f"{base}/submissions/batch", json={"submissions": [body]})
    assert batch.status_code == 503
    assert stack.redis.llen("api-test-full") == 2  # nothing lost, nothing extra
    for m in made:
        shown = httpx.get(f"{base}/submissions/{m.json()['token']}").json()
        assert shown["status"] == {"id": 1, "description": "In Queue"}
    workers = httpx.get(f"{base}/workers").json()
    assert workers[0]["queue"] == "api-test-full"
    assert workers[0]["size"] == 2
    assert workers[0]["available"] == 0


def test_worker_lost_mid_job_runs_again_elsewhere(stack: Stack):
    """A worker host lost (its whole process group SIGKILLed) mid-job: the job runs again."""
    lost = stack.worker(SANDBOX_LEASE="3", SANDBOX_QUEUE="api-test-lost")
    api = stack.api({"SANDBOX_QUEUE": "api-test-lost"})
    token = httpx.post(
        f"{api}/submissions",
        json={"source_code": "import time; time.sleep(2); print('done')", "language_id": PYTHON},
    ).json()["token"]
    deadline = time.monotonic() + 30
    while httpx.get(f"{api}/submissions/{token}").json()["status"]["id"] != 2:
        assert time.monotonic() < deadline, "never Processing"
        time.sleep(0.05)
    os.killpg(lost.process.pid, signal.SIGKILL)
    lost.process.wait(10)
    assert httpx.get(f"{api}/submissions/{token}").json()["status"]["id"] == 2
    stack.worker(SANDBOX_LEASE="3", SANDBOX_QUEUE="api-test-lost")
    body = poll(api, token, timeout=60)
    assert body["status"] == {"id": 3, "description": "Accepted"}
    assert body["stdout"] == "done\n"
