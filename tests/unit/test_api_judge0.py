"""The Judge0 vocabulary and the mapping of our results to it (sandbox/api/judge0.py)."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from sandbox import languages
from sandbox.api import judge0
from sandbox.api.settings import ApiSettings, is_loopback


def case(status: str, **fields: object) -> dict[str, object]:
    return {"status": status, "cpu_time": 0.01, "wall_time": 0.02, "memory_peak": 4096, **fields}


def run(*cases: dict[str, object], verdict: str = "accepted", **kwargs: object) -> judge0.Outcome:
    options: dict[str, Any] = {
        "expected_output": None,
        "cpu_time_limit": 5.0,
        "wall_time_limit": 10.0,
    }
    options.update(kwargs)
    return judge0.outcome({"status": verdict, "tests": list(cases)}, **options)


def test_statuses_are_judge0s_fourteen():
    assert [s.id for s in judge0.STATUSES] == list(range(1, 15))
    assert judge0.STATUSES[10].description == "Runtime Error (NZEC)"


def test_every_shipped_language_has_an_id_and_ids_are_unique():
    table = judge0.language_ids({name: name for name in languages.known()})
    assert {name for name, _ in table.values()} == set(languages.known())
    assert table[71][0] == "python"
    assert table[52][0] == "cpp"
    assert table[62][0] == "java"
    ids = [i for ids, _ in judge0.LANGUAGE_IDS.values() for i in ids]
    assert len(ids) == len(set(ids))


def test_a_deployers_language_gets_its_id_from_settings():
    table = judge0.language_ids({"python": "python", "lua": "lua"}, {"lua": 64})
    assert table[64] == ("lua", "lua")


@pytest.mark.parametrize(
    ("result", "status"),
    [
        (case("accepted", stdout="3\n"), judge0.ACCEPTED),
        (case("runtime_error", exit_code=2), judge0.NZEC),
        (case("runtime_error", signal=11), judge0.SIGSEGV),
        (case("runtime_error", signal=8), judge0.SIGFPE),
        (case("runtime_error", signal=6), judge0.SIGABRT),
        (case("runtime_error", signal=25), judge0.SIGXFSZ),
        (case("runtime_error", signal=9), judge0.OTHER),
        (case("time_limit"), judge0.TIME_LIMIT),
        (case("memory_limit", signal=9), judge0.OTHER),
        (case("output_limit"), judge0.SIGXFSZ),
        (case("internal_error", message="boom"), judge0.INTERNAL_ERROR),
        (case("accepted", cpu_time=5.5), judge0.TIME_LIMIT),  # within the extra time: too slow
    ],
)
def test_case_statuses(result: dict[str, object], status: judge0.Status):
    assert run(result).status == status


def test_wrong_answer_by_judge0s_comparison():
    assert run(case("accepted", stdout="3 \n\n"), expected_output="3").status == judge0.ACCEPTED
    assert run(case("accepted", stdout="4\n"), expected_output="3").status == judge0.WRONG_ANSWER
    assert not judge0.same_output(None, "x")


def test_compile_error_and_a_syntax_check():
    compiled = {"status": "compile_error", "stdout": "", "stderr": "e: bad", "exit_code": 1}
    result = {"status": "compile_error", "compile": compiled, "tests": []}
    limits: dict[str, Any] = {
        "expected_output": None,
        "cpu_time_limit": 5.0,
        "wall_time_limit": 10.0,
    }
    assert judge0.outcome(result, **limits).status == judge0.COMPILATION_ERROR
    python = judge0.outcome(result, **limits, syntax_check_only=True)
    assert python.status == judge0.NZEC
    assert python.stderr == "e: bad"


def test_runs_average_and_stop_at_the_first_failure():
    done = run(case("accepted", cpu_time=0.1), case("accepted", cpu_time=0.3))
    assert done.time == 0.2
    failed = run(case("accepted"), case("runtime_error", exit_code=1), case("skipped"))
    assert failed.status == judge0.NZEC
    assert failed.exit_code == 1


def test_a_memory_limit_says_so_beside_judge0s_status():
    done = run(case("memory_limit", signal=9, memory_peak=64 * 2**20))
    assert done.oom_killed
    assert done.memory == 65536
    assert done.memory_peak == 64 * 2**20


def test_settings_hold_judge0s_defaults_within_the_sandboxs_maxima(monkeypatch):
    assert ApiSettings().memory_limit == 128000
    monkeypatch.setenv("SANDBOX_MAX_MEMORY", str(256 * 2**20))
    assert ApiSettings().max_memory_limit == 256 * 1024
    assert ApiSettings().max_stack_limit == 128000  # the stack's maximum is the memory's
    monkeypatch.setenv("SANDBOX_MAX_STACK", str(32 * 2**20))
    monkeypatch.setenv("SANDBOX_MAX_FILE_SIZE", str(2 * 2**20))
    monkeypatch.setenv("SANDBOX_MAX_PIDS", "50")
    capped = ApiSettings(stack_limit=1000, max_processes_and_or_threads=40)
    assert (capped.max_stack_limit, capped.max_max_file_size) == (32 * 1024, 2 * 1024)
    assert capped.max_max_processes_and_or_threads == 50
    assert is_loopback("127.0.0.1")
    assert is_loopback("::1")
    assert not is_loopback("0.0.0.0")


def test_the_app_loads_neither_runtime_nor_kernel_mechanism():
    code = (
        "import sys; from sandbox.api.app import create_app; create_app(); "
        "import sandbox.api.server; "
        "bad = [m for m in sys.modules if m.startswith(('sandbox.runtime', 'sandbox.image')) "
        "or m.startswith('sandbox.kernel.') and m != 'sandbox.kernel.cpus']; print(bad)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
