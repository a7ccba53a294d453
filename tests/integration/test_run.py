"""One job end to end: what goes in (code, stdin, argv, env) and what comes out.

Each test runs a real container through the session runtime and checks one
field of the JobResult against what the program did.
"""

from __future__ import annotations

import json

import pytest

from sandbox import JobSpec, Limits, Status

pytestmark = [pytest.mark.root, pytest.mark.overlay]

# What plan.build_plan gives every job; the spec's env is added on top.
BASE_ENV = {"PATH", "HOME", "LANG", "TMPDIR", "PYTHONDONTWRITEBYTECODE"}


async def test_hello_world(runtime):
    """A program's stdout comes back, with status ok and exit code 0."""
    result = await runtime.execute(JobSpec(code="print('hello, world')"))
    assert result.status is Status.OK, result
    assert result.stdout == "hello, world\n"
    assert result.stderr == ""
    assert result.exit_code == 0
    assert result.signal is None
    assert not result.oom_killed
    assert not result.timed_out
    assert not result.output_truncated
    assert result.wall_time > 0
    assert result.cpu_time > 0
    assert result.memory_peak > 0


async def test_stdin_reaches_the_program(runtime):
    """The spec's stdin is the program's standard input, byte for byte, then EOF."""
    text = "first line\nsecond line ünïcode\nno newline at the end"
    code = "import sys\nsys.stdout.write(sys.stdin.read())"
    result = await runtime.execute(JobSpec(code=code, stdin=text))
    assert result.status is Status.OK, result
    assert result.stdout == text


async def test_empty_stdin_is_eof(runtime):
    """Without stdin the program reads EOF at once (it does not hang)."""
    code = "import sys\nprint(repr(sys.stdin.read()))"
    result = await runtime.execute(JobSpec(code=code, limits=Limits(wall_time=5)))
    assert result.status is Status.OK, result
    assert result.stdout == "''\n"


async def test_argv_and_env_reach_the_program(runtime):
    """argv follows the source file name, verbatim; spec env is set."""
    code = "import os, sys\nprint(sys.argv)\nprint(os.environ['GREETING'])"
    spec = JobSpec(code=code, argv=("a b", "--flag", ""), env={"GREETING": "hé llo"})
    result = await runtime.execute(spec)
    assert result.status is Status.OK, result
    assert result.stdout == "['main.py', 'a b', '--flag', '']\nhé llo\n"


async def test_nothing_of_the_worker_environment_leaks_in(runtime, monkeypatch):
    """The job's environment is the fixed base plus the spec's env, nothing else."""
    monkeypatch.setenv("SANDBOX_TEST_SECRET", "do-not-leak")
    code = "import json, os\nprint(json.dumps(dict(os.environ)))"
    result = await runtime.execute(JobSpec(code=code, env={"MINE": "1"}))
    assert result.status is Status.OK, result
    env = json.loads(result.stdout)
    assert set(env) == BASE_ENV | {"MINE"}
    assert "PYTEST_CURRENT_TEST" not in env
    assert "do-not-leak" not in result.stdout


@pytest.mark.parametrize("code", [0, 3, 255])
async def test_exit_code(runtime, code):
    """The program's exit status is exit_code; non-zero means runtime_error."""
    result = await runtime.execute(JobSpec(code=f"import sys\nsys.exit({code})"))
    assert result.exit_code == code
    assert result.signal is None
    assert result.status is (Status.OK if code == 0 else Status.RUNTIME_ERROR)


async def test_uncaught_exception_is_runtime_error(runtime):
    """A Python traceback goes to stderr and the status is runtime_error (exit 1)."""
    result = await runtime.execute(JobSpec(code="raise ValueError('boom')"))
    assert result.status is Status.RUNTIME_ERROR
    assert result.exit_code == 1
    assert "ValueError: boom" in result.stderr


async def test_signal_death(runtime):
    """A program killed by its own SIGSEGV reports signal 11 and runtime_error."""
    code = "import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)"
    result = await runtime.execute(JobSpec(code=code))
    assert result.signal == 11
    assert result.exit_code is None
    assert result.status is Status.RUNTIME_ERROR
    assert not result.oom_killed
    assert not result.timed_out


async def test_invalid_utf8_is_replaced(runtime):
    """Bytes that are not UTF-8 become U+FFFD; the rest of the output survives."""
    code = (
        "import sys\n"
        "sys.stdout.buffer.write(b'ok \\xff\\xfe end\\n')\n"
        "sys.stderr.buffer.write(b'\\xc3(\\n')"
    )
    result = await runtime.execute(JobSpec(code=code))
    assert result.status is Status.OK, result
    assert result.stdout == "ok \ufffd\ufffd end\n"
    assert result.stderr == "\ufffd(\n"


async def test_stderr_is_captured_separately(runtime):
    """stdout and stderr are two streams; nothing of one appears in the other."""
    code = "import sys\nprint('to out')\nprint('to err', file=sys.stderr)\nprint('out again')"
    result = await runtime.execute(JobSpec(code=code))
    assert result.stdout == "to out\nout again\n"
    assert result.stderr == "to err\n"


async def test_big_output_under_the_cap_arrives_whole(runtime):
    """Output just under limits.output, on both streams, arrives intact and untruncated."""
    size = 3 * 2**20
    code = (
        "import sys\n"
        f"sys.stdout.write(''.join(chr(97 + i % 26) for i in range({size})))\n"
        f"sys.stderr.write('e' * {size})\n"
    )
    spec = JobSpec(code=code, limits=Limits(output=size))
    result = await runtime.execute(spec)
    assert result.status is Status.OK, result.model_dump(exclude={"stdout", "stderr"})
    assert not result.output_truncated
    assert result.stdout == "".join(chr(97 + i % 26) for i in range(size))
    assert result.stderr == "e" * size


async def test_sh_language(runtime):
    """A `sh` job runs under /bin/sh with its arguments as $1..."""
    code = 'echo "sum=$((2 + 3)) arg=$1"\nexit 4\n'
    result = await runtime.execute(JobSpec(code=code, language="sh", argv=("x",)))
    assert result.stdout == "sum=5 arg=x\n"
    assert result.exit_code == 4
    assert result.status is Status.RUNTIME_ERROR


async def test_thousands_of_arguments_and_variables_reach_the_program(runtime):
    """The launcher's plan has no fixed number of argv or env entries."""
    env = {f"V{i}": str(i) for i in range(1000)}
    code = "import os, sys; print(len(sys.argv) - 1, sum(k.startswith('V') for k in os.environ))"
    result = await runtime.execute(JobSpec(code=code, argv=[str(i) for i in range(5000)], env=env))
    assert result.status is Status.OK, result
    assert result.stdout == "5000 1000\n"
