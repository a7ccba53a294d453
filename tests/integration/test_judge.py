"""Judge mode on the real kernel: one problem (A+B) and, in every shipped language, a
correct, a wrong, a too slow, a memory-hungry, a crashing and a non-compiling solution.

Every language of sandbox/languages.toml is here, against its real compiler or
interpreter (scripts/install installs them; CI runs them all)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from sandbox.judging import Checker, JudgeResult, JudgeSpec, TestCase, Verdict, judge
from sandbox.spec import Limits

pytestmark = [pytest.mark.root, pytest.mark.overlay]

TESTS = [
    TestCase(stdin="1 2\n", expected="3\n", name="small"),
    TestCase(stdin="1000000000 1000000000\n", expected="2000000000\n", name="big"),
    TestCase(stdin="-5 5\n", expected="0\n", name="zero"),
]

SOLUTIONS: dict[str, dict[str, str]] = {
    "python": {
        "accepted": "a, b = map(int, input().split())\nprint(a + b)\n",
        "wrong_answer": "a, b = map(int, input().split())\nprint(a - b)\n",
        "time_limit": "while True:\n    pass\n",
        "memory_limit": "x = bytearray(512 * 2**20)\nprint(len(x))\n",
        "runtime_error": "raise SystemExit(3)\n",
        "compile_error": "def main(:\n    pass\n",
    },
    "sh": {
        "accepted": "read a b\necho $((a + b))\n",
        "wrong_answer": "read a b\necho $((a * b))\n",
        "time_limit": "while :; do :; done\n",
        "memory_limit": "x=$(head -c 400000000 /dev/zero | tr '\\0' a)\necho ${#x}\n",
        "runtime_error": "kill -SEGV $$\n",
        "compile_error": "if then fi (\n",
    },
    "bash": {  # each uses what dash lacks: arrays, [[ ]], here-strings
        "accepted": "read -a n\necho $(( n[0] + n[1] ))\n",
        "wrong_answer": "read -a n\n[[ ${n[0]} == 1 ]] && echo 4 || echo 0\n",
        "time_limit": "while :; do :; done\n",
        "memory_limit": "x=$(head -c 400000000 /dev/zero | tr '\\0' a)\necho ${#x}\n",
        "runtime_error": "read -r a <<< 'x'\nkill -SEGV $$\n",
        "compile_error": "if [[ -n x ]]; then\n",  # no fi
    },
    "c": {
        "accepted": (
            '#include <stdio.h>\nint main(void) { long long a, b; scanf("%lld %lld", &a, &b);'
            ' printf("%lld\\n", a + b); return 0; }\n'
        ),
        "wrong_answer": (
            '#include <stdio.h>\nint main(void) { int a, b; scanf("%d %d", &a, &b);'
            ' printf("%d\\n", a - b); return 0; }\n'
        ),
        "time_limit": "int main(void) { volatile unsigned long i = 0; for (;;) i++; }\n",
        "memory_limit": (
            "#include <stdlib.h>\n#include <string.h>\n"
            "int main(void) { for (;;) { char *p = malloc(1 << 20); memset(p, 1, 1 << 20); } }\n"
        ),
        "runtime_error": "int main(void) { int *p = 0; return *p; }\n",
        "compile_error": "int main(void) { return undefined_name; }\n",
    },
    "cpp": {
        "accepted": (
            "#include <iostream>\nint main() { long long a, b; std::cin >> a >> b;"
            " std::cout << a + b << '\\n'; }\n"
        ),
        "wrong_answer": "#include <iostream>\nint main() { std::cout << 42 << '\\n'; }\n",
        "time_limit": "int main() { volatile unsigned long i = 0; for (;;) i++; }\n",
        "memory_limit": (
            "#include <vector>\nint main() { std::vector<char> v; for (;;) v.push_back(1); }\n"
        ),
        "runtime_error": '#include <stdexcept>\nint main() { throw std::runtime_error("x"); }\n',
        "compile_error": "int main() { std::vector<int> v; }\n",
    },
}

SOLUTIONS["multifile"] = SOLUTIONS["bash"]  # its `run` script is the code
SOLUTIONS |= {
    "java": {
        "accepted": (
            "import java.util.*;\npublic class Main { public static void main(String[] a) {"
            " Scanner s = new Scanner(System.in); long x = s.nextLong(), y = s.nextLong();"
            " System.out.println(x + y); } }\n"
        ),
        "wrong_answer": "public class Main { public static void main(String[] a) {"
        " System.out.println(42); } }\n",
        "time_limit": "public class Main { public static void main(String[] a) {"
        " long i = 0; while (true) i++; } }\n",
        "memory_limit": (
            "import java.util.*;\npublic class Main { public static void main(String[] a) {"
            " List<long[]> l = new ArrayList<>(); while (true) l.add(new long[1 << 20]); } }\n"
        ),
        "runtime_error": "public class Main { public static void main(String[] a) {"
        ' throw new RuntimeException("x"); } }\n',
        "compile_error": "public class Main { int x = ; }\n",
    },
    "kotlin": {
        "accepted": (
            'fun main() { val (a, b) = readLine()!!.trim().split(" ").map { it.toLong() };'
            " println(a + b) }\n"
        ),
        "wrong_answer": "fun main() { println(42) }\n",
        "time_limit": "fun main() { var i = 0L; while (true) i++ }\n",
        "memory_limit": (
            "fun main() { val l = ArrayList<LongArray>();"
            " while (true) l.add(LongArray(1 shl 20)) }\n"
        ),
        "runtime_error": 'fun main() { throw RuntimeException("x") }\n',
        "compile_error": 'fun main() { val x: Int = "a" }\n',
    },
    "go": {
        "accepted": (
            'package main\nimport "fmt"\nfunc main() { var a, b int64; fmt.Scan(&a, &b);'
            " fmt.Println(a + b) }\n"
        ),
        "wrong_answer": 'package main\nimport "fmt"\nfunc main() { fmt.Println(42) }\n',
        "time_limit": "package main\nfunc main() { i := 0; for { i++ } }\n",
        "memory_limit": (
            "package main\nfunc main() { var s [][]byte; for { b := make([]byte, 1<<20);"
            " for i := range b { b[i] = 1 }; s = append(s, b) } }\n"
        ),
        "runtime_error": 'package main\nfunc main() { panic("x") }\n',
        "compile_error": "package main\nfunc main() { x := 1 }\n",
    },
    "rust": {
        "accepted": (
            "use std::io::*;\nfn main() { let mut s = String::new();"
            " stdin().read_to_string(&mut s).unwrap();"
            " let v: Vec<i64> = s.split_whitespace().map(|x| x.parse().unwrap()).collect();"
            ' println!("{}", v[0] + v[1]); }\n'
        ),
        "wrong_answer": 'fn main() { println!("42"); }\n',
        "time_limit": (
            "fn main() { let mut i: u64 = 1; loop { i = i.wrapping_mul(3).wrapping_add(1);"
            ' if i == 0 { println!("{}", i); } } }\n'
        ),
        "memory_limit": (
            "fn main() { let mut v: Vec<Vec<u8>> = Vec::new();"
            " loop { v.push(vec![1u8; 1 << 20]); } }\n"
        ),
        "runtime_error": 'fn main() { panic!("x"); }\n',
        "compile_error": 'fn main() { let x: i32 = "a"; }\n',
    },
    "javascript": {
        "accepted": (
            'const [a, b] = require("fs").readFileSync(0, "utf8").trim().split(/\\s+/)'
            ".map(BigInt);\nconsole.log((a + b).toString());\n"
        ),
        "wrong_answer": "console.log(42);\n",
        "time_limit": "for (;;) {}\n",
        "memory_limit": "const a = [];\nfor (;;) a.push(new Array(1 << 20).fill(1));\n",
        "runtime_error": 'throw new Error("x");\n',
        "compile_error": "function (\n",
    },
    "pypy": {
        "accepted": "a, b = map(int, input().split())\nprint(a + b)\n",
        "wrong_answer": "print(42)\n",
        "time_limit": "while True:\n    pass\n",
        "memory_limit": "x = bytearray(512 * 2**20)\nprint(len(x))\n",
        "runtime_error": "raise SystemExit(3)\n",
        "compile_error": "def main(:\n    pass\n",
    },
    "ruby": {
        "accepted": "a, b = gets.split.map(&:to_i)\nputs a + b\n",
        "wrong_answer": "puts 42\n",
        "time_limit": "loop { }\n",
        "memory_limit": 's = "a" * (512 * 2**20)\nputs s.size\n',
        "runtime_error": 'raise "x"\n',
        "compile_error": "def x(\n",
    },
    "csharp": {
        "accepted": (
            'using System;\nclass P { static void Main() { var p = Console.ReadLine().Split(" ");'
            " Console.WriteLine(long.Parse(p[0]) + long.Parse(p[1])); } }\n"
        ),
        "wrong_answer": "class P { static void Main() { System.Console.WriteLine(42); } }\n",
        "time_limit": "class P { static void Main() { long i = 0; while (true) i++; } }\n",
        "memory_limit": (
            "class P { static void Main() { var l = new System.Collections.Generic.List<byte[]>();"
            " while (true) { var b = new byte[1 << 20]; for (int i = 0; i < b.Length; i += 4096)"
            " b[i] = 1; l.Add(b); } } }\n"
        ),
        "runtime_error": 'class P { static void Main() { throw new System.Exception("x"); } }\n',
        "compile_error": 'class P { static void Main() { int x = "a"; } }\n',
    },
    "php": {
        "accepted": (
            '<?php\n[$a, $b] = array_map("intval", explode(" ", trim(fgets(STDIN))));\n'
            'echo $a + $b, "\\n";\n'
        ),
        "wrong_answer": "<?php\necho 42, PHP_EOL;\n",
        "time_limit": "<?php\nwhile (true) {}\n",
        "memory_limit": '<?php\n$s = str_repeat("a", 512 * 1024 * 1024);\necho strlen($s);\n',
        "runtime_error": "<?php\nexit(3);\n",
        "compile_error": "<?php\nfunction (\n",
    },
}

CASES = [(lang, verdict) for lang, by_verdict in SOLUTIONS.items() for verdict in by_verdict]


def _spec(language: str, code: str, **fields: object) -> JudgeSpec:
    return JudgeSpec.model_validate(
        {
            "code": code,
            "language": language,
            "tests": TESTS,
            "limits": {"cpu_time": 1, "wall_time": 3, "memory": "64M"},
            **fields,
        }
    )


@pytest.mark.parametrize(("language", "expected"), CASES, ids=[f"{a}-{b}" for a, b in CASES])
async def test_verdicts(runtime, language: str, expected: str):
    result = await judge(_spec(language, SOLUTIONS[language][expected]), runtime)
    assert result.status == expected, result
    if expected == "compile_error":
        assert result.tests == []
        assert result.compile is not None
        assert result.compile.stderr or result.compile.stdout
        return
    assert len(result.tests) == len(TESTS)
    statuses = [case.status for case in result.tests]
    if expected == "accepted":
        assert statuses == [Verdict.ACCEPTED] * len(TESTS)
        for case in result.tests:
            assert 0 < case.cpu_time < 1
            assert case.memory_peak > 0
    elif expected == "wrong_answer":
        assert Verdict.WRONG_ANSWER in statuses
        first = next(c for c in result.tests if c.status is Verdict.WRONG_ANSWER)
        assert first.message
    else:
        assert statuses[0] == expected
    if expected == "time_limit":
        assert result.tests[0].cpu_time >= 1 or result.tests[0].wall_time >= 3
    if expected == "runtime_error":
        case = result.tests[0]
        assert case.exit_code not in (0, None) or case.signal is not None


async def test_stop_on_failure_skips_the_rest(runtime):
    spec = _spec("python", "print(0)\n", stop_on_failure=True)
    result = await judge(spec, runtime, parallel=1)
    assert result.status is Verdict.WRONG_ANSWER
    assert [c.status for c in result.tests] == [
        Verdict.WRONG_ANSWER,
        Verdict.SKIPPED,
        Verdict.SKIPPED,
    ]


async def test_float_comparison_and_a_checker(runtime):
    spec = JudgeSpec(
        code="print(1 / 3)\n",
        tests=[TestCase(expected="0.333333333\n")],
        compare="float",
        float_tolerance=1e-6,
    )
    assert (await judge(spec, runtime)).status is Verdict.ACCEPTED
    # A checker accepting any output that is a number above its input.
    checker = Checker(
        code=(
            "import sys\n"
            "inp, out, ans = (open(p).read() for p in sys.argv[1:4])\n"
            "ok = float(out) > float(inp)\n"
            "print('fine' if ok else 'too small')\n"
            "sys.exit(0 if ok else 1)\n"
        )
    )
    spec = JudgeSpec(
        code="print(int(input()) + 1)\n",
        tests=[TestCase(stdin="5\n"), TestCase(stdin="7\n")],
        checker=checker,
    )
    result = await judge(spec, runtime)
    assert result.status is Verdict.ACCEPTED, result
    assert result.tests[0].message == "fine"
    bad = await judge(spec.model_copy(update={"code": "print(0)\n"}), runtime)
    assert bad.status is Verdict.WRONG_ANSWER
    assert bad.tests[0].message == "too small"


async def test_a_failing_checker_is_an_internal_error(runtime):
    spec = JudgeSpec(
        code="print(1)\n",
        tests=[TestCase()],
        checker=Checker(code="raise SystemExit(5)\n"),
    )
    result = await judge(spec, runtime)
    assert result.status is Verdict.INTERNAL_ERROR
    assert "checker failed" in (result.tests[0].message or "")


# testlib's quitp(P): exit 7, "points P" first; here P is the output over the answer.
POINTS_CHECKER = """
import sys
got, want = (float(open(f).read() or 0) for f in sys.argv[2:4])
print(f"points {min(got / want, 1)} of {want}", file=sys.stderr)
raise SystemExit(7)
"""


async def test_a_testlib_checkers_partial_scores(runtime):
    spec = JudgeSpec(
        code="print(input())\n",
        tests=[TestCase(name=f"t{i}", stdin=s, expected="4") for i, s in enumerate("124")],
        checker=Checker(code=POINTS_CHECKER),
        groups=[{"name": "all", "points": 30, "cases": ["t*"], "aggregation": "sum"}],
    )
    result = await judge(spec, runtime)
    assert [(c.status, c.partial) for c in result.tests] == [
        (Verdict.WRONG_ANSWER, 0.25),
        (Verdict.WRONG_ANSWER, 0.5),
        (Verdict.ACCEPTED, 1),
    ], result
    assert result.score == pytest.approx(17.5)  # 10 * (0.25 + 0.5 + 1)
    assert result.tests[0].message == "points 0.25 of 4.0"
    no_points = spec.model_copy(update={"checker": Checker(code="raise SystemExit(7)\n")})
    failed = await judge(no_points, runtime)
    assert failed.status is Verdict.INTERNAL_ERROR
    assert "without 'points P'" in (failed.tests[0].message or "")


async def test_extra_files_reach_every_test(runtime):
    spec = JudgeSpec(
        code="print(open('table.txt').read().split()[int(input())])\n",
        tests=[TestCase(stdin="0\n", expected="a\n"), TestCase(stdin="2\n", expected="c\n")],
        files={"table.txt": "a b c\n"},
    )
    assert (await judge(spec, runtime)).status is Verdict.ACCEPTED


# -- the command line -------------------------------------------------------------

SANDBOX = str(Path(sys.executable).with_name("sandbox"))


def _problem(tmp_path: Path) -> Path:
    tests = tmp_path / "tests"
    tests.mkdir()
    for n, (a, b) in enumerate([(1, 2), (5, 7), (10, 20)], start=1):
        (tests / f"{n}.in").write_text(f"{a} {b}\n")
        (tests / f"{n}.{'ans' if n == 3 else 'out'}").write_text(f"{a + b}\n")
    return tests


@pytest.mark.parametrize(
    ("source", "status", "verdict"),
    [
        (SOLUTIONS["cpp"]["accepted"], 0, "accepted"),
        (SOLUTIONS["cpp"]["wrong_answer"], 1, "wrong_answer"),
        (SOLUTIONS["cpp"]["compile_error"], 1, "compile_error"),
    ],
)
def test_judge_command(tmp_path: Path, source: str, status: int, verdict: str):
    tests = _problem(tmp_path)
    program = tmp_path / "sol.cpp"
    program.write_text(source)
    table = subprocess.run(
        [SANDBOX, "judge", str(program), "--tests", str(tests), "--time", "5"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert table.returncode == status, table.stderr
    assert f"verdict: {verdict}" in table.stdout
    as_json = subprocess.run(
        [SANDBOX, "judge", str(program), "--tests", str(tests), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert as_json.returncode == 0, as_json.stderr
    result = JudgeResult.model_validate_json(as_json.stdout)
    assert result.status == verdict
    if verdict != "compile_error":
        assert [case.name for case in result.tests] == ["1", "2", "3"]


def test_judge_command_usage_errors(tmp_path: Path):
    program = tmp_path / "a.py"
    program.write_text("print(1)\n")
    for argv, message in [
        (["--tests", str(tmp_path / "none")], "no such directory"),
        (["--tests", str(tmp_path)], "no test cases"),
        (["--tests", str(tmp_path), "--lang", "cobol"], "unknown language 'cobol'"),
    ]:
        out = subprocess.run(
            [SANDBOX, "judge", str(program), *argv], capture_output=True, text=True, timeout=60
        )
        assert out.returncode == 2, out
        assert message in out.stderr
    (tmp_path / "1.in").write_text("x")
    out = subprocess.run(
        [SANDBOX, "judge", str(program), "--tests", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "has no 1.out" in out.stderr


def test_every_language_is_installed_and_tells_its_version():
    """`sandbox languages --versions`: every shipped language, all of it on this host (the
    install step put it there), each version command answering from inside a sandbox."""
    listed = subprocess.run(
        [SANDBOX, "languages", "--json", "--versions"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert set(rows) == set(SOLUTIONS)  # each has its verdicts tried above
    for name, row in rows.items():
        assert row["missing"] == [], (name, row["missing"])
        if row["version"]:
            assert row["found"], name
            assert not row["found"].startswith("no version"), (name, row["found"])


async def test_groups_score_what_passes(runtime):
    """IOI-style subtasks: a solution right for small inputs only scores the small group."""
    tests = [
        TestCase(name="small/1", stdin="1 2\n", expected="3\n"),
        TestCase(name="small/2", stdin="5 7\n", expected="12\n"),
        TestCase(name="large/1", stdin="1000000 2000000\n", expected="3000000\n"),
    ]
    groups = [
        {"name": "small", "points": 40, "cases": ["small/*"]},
        {"name": "large", "points": 60, "cases": ["large/*"], "requires": ["small"]},
    ]
    only_small = "a, b = map(int, input().split())\nprint(a + b if a < 100 else 0)\n"
    result = await judge(
        JudgeSpec.model_validate({"code": only_small, "tests": tests, "groups": groups}), runtime
    )
    assert result.status is Verdict.WRONG_ANSWER
    assert (result.score, result.max_score) == (40, 100)
    assert [(g.name, g.score) for g in result.groups] == [("small", 40), ("large", 0)]


GRADER = """#include <iostream>
#include "solve.h"
int main() { long long a, b; std::cin >> a >> b; std::cout << solve(a, b) << '\\n'; }
"""


@pytest.mark.parametrize(
    ("language", "code", "files"),
    [
        pytest.param(
            "cpp",
            '#include "solve.h"\nlong long solve(long long a, long long b) { return a + b; }\n',
            {"grader.cpp": GRADER, "solve.h": "long long solve(long long a, long long b);\n"},
            id="cpp-grader",
        ),
        pytest.param(
            "java",
            "import java.util.*;\npublic class Solution { public static void main(String[] x) {"
            " Scanner s = new Scanner(System.in);"
            " System.out.println(Helper.add(s.nextLong(), s.nextLong())); } }\n",
            {"Helper.java": "class Helper { static long add(long a, long b) { return a + b; } }\n"},
            id="java-class-not-named-Main-and-a-second-file",
        ),
        pytest.param(
            "go",
            'package main\nimport "fmt"\nfunc main() { var a, b int64; fmt.Scan(&a, &b);'
            " fmt.Println(add(a, b)) }\n",
            {"add.go": "package main\nfunc add(a, b int64) int64 { return a + b }\n"},
            id="go-two-files",
        ),
        pytest.param(
            "python",
            "from helper import add\na, b = map(int, input().split())\nprint(add(a, b))\n",
            {"helper.py": "def add(a, b):\n    return a + b\n"},
            id="python-module",
        ),
    ],
)
async def test_a_program_of_several_files_and_a_problems_grader(runtime, language, code, files):
    """The compiled languages compile every source of theirs in /box: the submission's and
    the problem's (a grader with main, a header); a Java class is found by its name."""
    spec = _spec(language, code, files=files)
    result = await judge(spec, runtime)
    assert result.status is Verdict.ACCEPTED, result


async def test_a_submission_archive_is_judged(runtime):
    """A zip of the submission's files (in a top folder, as people zip them): unpacked,
    main.cpp the code, the rest compiled with it."""
    import base64
    import io
    import zipfile

    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("sol/main.cpp", GRADER)
        z.writestr("sol/solve.cpp", "long long solve(long long a, long long b) { return a + b; }\n")
        z.writestr("sol/solve.h", "long long solve(long long a, long long b);\n")
    spec = JudgeSpec.model_validate(
        {
            "archive": base64.b64encode(out.getvalue()).decode(),
            "language": "cpp",
            "tests": TESTS,
            "limits": {"cpu_time": 1, "wall_time": 3, "memory": "64M"},
        }
    )
    result = await judge(spec, runtime)
    assert result.status is Verdict.ACCEPTED, result


async def test_compiler_options_and_command_line_arguments(runtime):
    """compile_options reach the compiler ($COMPILE_OPTIONS); argv reach every case's run."""
    code = '#include <stdio.h>\nint main(int c, char **v) { printf("%d %s\\n", ANSWER, v[1]); }\n'
    spec = JudgeSpec(
        code=code,
        language="c",
        compile_options="-DANSWER=42 -Wall",
        argv=("first", "second"),
        tests=[TestCase(expected="42 first\n")],
    )
    result = await judge(spec, runtime)
    assert result.status is Verdict.ACCEPTED, result
    without = await judge(spec.model_copy(update={"compile_options": ""}), runtime)
    assert without.status is Verdict.COMPILE_ERROR  # ANSWER undeclared
    with pytest.raises(ValidationError, match="python takes no compiler options"):
        JudgeSpec(code="print(1)", compile_options="-O", tests=[TestCase()])
    with pytest.raises(ValidationError, match="compile_options"):
        JudgeSpec(code=code, language="c", compile_options="-O; rm -rf /", tests=[TestCase()])


@pytest.mark.parametrize("language", ["java", "kotlin", "javascript", "csharp", "go"])
async def test_a_runtimes_own_threads_are_not_the_submissions(runtime, language: str):
    """A job allowed 2 processes still starts its runtime (the JVM wants ~12 threads,
    Node.js ~7): languages.toml's extra_pids are the runtime's, on top of the job's."""
    spec = _spec(language, SOLUTIONS[language]["accepted"])
    result = await judge(spec.model_copy(update={"limits": Limits(pids=2, cpu_time=5)}), runtime)
    assert result.status is Verdict.ACCEPTED, result
