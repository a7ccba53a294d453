"""Files in and out of a job, and compiled languages run through them."""

from __future__ import annotations

import pytest

from sandbox import JobSpec, Status
from sandbox.spec import File

pytestmark = [pytest.mark.root, pytest.mark.overlay]

C_HELLO = '#include <stdio.h>\nint main(void) { printf("hello from c\\n"); return 0; }\n'
CPP_SUM = (
    "#include <iostream>\nint main() { long a, b; std::cin >> a >> b; "
    "std::cout << a + b << std::endl; }\n"
)


async def test_input_files_are_in_the_working_directory(runtime):
    code = (
        "import os, stat\n"
        "print(open('data.txt').read(), end='')\n"
        "print(open('blob.bin', 'rb').read().hex())\n"
        "print(oct(stat.S_IMODE(os.stat('tool').st_mode)), os.stat('data.txt').st_uid)\n"
    )
    spec = JobSpec(
        code=code,
        files={
            "data.txt": "some text\n",
            "blob.bin": b"\x00\xff\x10",
            "tool": File(content="#!/bin/sh\n", executable=True),
        },
    )
    result = await runtime.execute(spec)
    assert result.status is Status.OK, result
    assert result.stdout == "some text\n00ff10\n0o755 65534\n"


async def test_collected_files_come_back_and_missing_ones_are_named(runtime):
    code = (
        "open('out.txt', 'w').write('result\\n')\nopen('out.bin', 'wb').write(bytes(range(256)))\n"
    )
    result = await runtime.execute(
        JobSpec(code=code, collect=("out.txt", "out.bin", "nothing.txt"))
    )
    assert result.status is Status.OK, result
    assert result.files["out.txt"] == File(content="result\n")
    assert result.files["out.bin"].encoding == "base64"
    assert result.files["out.bin"].data() == bytes(range(256))
    assert result.files_skipped == {"nothing.txt": "missing"}


async def test_a_file_larger_than_the_output_limit_is_not_returned(runtime):
    code = "open('big', 'wb').write(b'x' * 5000)\n"
    result = await runtime.execute(JobSpec(code=code, collect=("big",), limits={"output": 4096}))
    assert result.files == {}
    assert "larger than 4096 bytes" in result.files_skipped["big"]


async def test_files_of_a_killed_job_are_not_collected(runtime):
    code = "open('out.txt', 'w').write('partial')\nwhile True:\n    pass\n"
    result = await runtime.execute(
        JobSpec(code=code, collect=("out.txt",), limits={"cpu_time": 0.5, "wall_time": 5})
    )
    assert result.status is Status.TIMEOUT
    assert result.files_skipped == {"out.txt": "the job did not exit by itself"}


async def test_c_compiles_then_runs_in_one_job(runtime):
    result = await runtime.execute(JobSpec(code=C_HELLO, language="c"))
    assert result.status is Status.OK, result
    assert result.stdout == "hello from c\n"


async def test_compile_step_returns_the_artifact_and_run_step_uses_it(runtime):
    """Judge mode's two steps: compile once in one sandbox, run the binary in another."""
    compiled = await runtime.execute(
        JobSpec(
            code=CPP_SUM,
            language="cpp",
            step="compile",
            limits={"memory": "1G", "wall_time": 60, "cpu_time": 30, "output": "16M", "pids": 32},
        )
    )
    assert compiled.status is Status.OK, compiled
    binary = compiled.files["main"]
    assert binary.encoding == "base64"
    ran = await runtime.execute(
        JobSpec(
            code=CPP_SUM,
            language="cpp",
            step="run",
            stdin="40 2\n",
            files={"main": File(content=binary.content, encoding="base64", executable=True)},
        )
    )
    assert ran.status is Status.OK, ran
    assert ran.stdout == "42\n"


async def test_a_compile_error_is_a_runtime_error_with_the_message(runtime):
    result = await runtime.execute(
        JobSpec(code="int main( {", language="c", step="compile", limits={"memory": "512M"})
    )
    assert result.status is Status.RUNTIME_ERROR
    assert "error" in result.stderr
    assert result.files_skipped == {"main": "missing"}
