"""``sandbox``: run a program in a throwaway container, or check this host.

    sandbox run hello.py                       # prints what it prints, exits with its code
    sandbox run --json --memory 64M bomb.py    # the JobResult as one JSON object
    cat prog.py | sandbox run --stdin in.txt -
    sandbox submit --json prog.py              # the same, through Redis and a worker
    sandbox worker [CELERY ARGS...]            # start a worker
    sandbox api [--host H --port P]            # the Judge0-compatible HTTP API
    sandbox doctor [--json]
    sandbox image import|build|ls|rm|inspect ...
    sandbox pool status [--json]
    sandbox gc [--json]

Exit codes of ``run`` without ``--json``: the program's own exit code; 128+N
if it died of signal N; 124 when it ran out of time; 125 when the sandbox
failed; 2 for bad usage or a refused spec. With ``--json`` the code is 0
whenever a result was printed. Diagnostics go to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sandbox.cli.args import EXIT_SANDBOX, EXIT_USAGE, UsageError
from sandbox.cli.judge import add_commands as add_judge_commands
from sandbox.cli.judge import judge_command, languages_command
from sandbox.cli.ops import add_commands as add_ops_commands
from sandbox.cli.ops import exec_command, kill_command, ps_command
from sandbox.cli.run import (
    add_job_flags,
    add_run_command,
    fail,
    job_spec,
    known_language,
    language_of,
    report,
)

if TYPE_CHECKING:
    from sandbox.settings import Settings

__all__ = ["main"]


def _parser(parser_class: type[argparse.ArgumentParser] = argparse.ArgumentParser) -> Any:
    parser = parser_class(
        prog="sandbox", description="Run untrusted code in throwaway Linux containers."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    add_run_command(sub)
    submit = sub.add_parser(
        "submit",
        help="send a program to the workers through Redis and print its result",
        description="Like `run`, but through Redis (SANDBOX_REDIS_URL) and a worker.",
    )
    add_job_flags(submit)
    submit.add_argument(
        "--wait", type=float, default=600.0, metavar="SEC", help="seconds to wait for the result"
    )
    worker = sub.add_parser(
        "worker",
        help="start a worker (celery worker with our defaults; celery options pass through)",
        description="Check this host, then exec `celery -A worker.app:app worker ARGS...`.",
    )
    worker.add_argument("celery_args", nargs=argparse.REMAINDER, metavar="ARGS")
    api = sub.add_parser(
        "api",
        help="serve the Judge0 CE-compatible HTTP API (docs/api.md); needs no root",
        description="An HTTP server (uvicorn) that sends submissions to the workers through "
        "Redis. SANDBOX_API_* settings; without SANDBOX_API_AUTHN_TOKENS only a loopback bind.",
    )
    api.add_argument("--host", help="address to listen on (SANDBOX_API_HOST, 127.0.0.1)")
    api.add_argument("--port", type=int, help="port (SANDBOX_API_PORT, 2358)")

    add_judge_commands(sub, known_language)
    add_ops_commands(sub)
    health = sub.add_parser(
        "health",
        help="is this worker host healthy? (a live worker, Redis, a container start)",
        description="For container orchestrators: exit 0 if healthy, 1 if not.",
    )
    health.add_argument("--json", action="store_true", help="print the findings as JSON")
    doctor = sub.add_parser("doctor", help="check that this host can run sandboxes")
    doctor.add_argument("--json", action="store_true", help="print the findings as JSON")

    image = sub.add_parser("image", help="manage images").add_subparsers(
        dest="image_command", required=True, metavar="COMMAND"
    )
    imp = image.add_parser(
        "import",
        help="import a docker export / docker save / OCI archive",
        description="Import FILE (.tar or .tar.gz from `docker export`, `docker save` or an "
        "OCI image layout) as image NAME. Hostile archives are refused.",
    )
    imp.add_argument("name", metavar="NAME")
    imp.add_argument("file", metavar="FILE")
    imp.add_argument("--json", action="store_true", help="print the manifest as JSON")
    build = image.add_parser(
        "build",
        help="build an image with debootstrap (needs the Debian archive)",
        description="Build image NAME: a minimal Debian SUITE from debootstrap, with the "
        "packages of --include and of each --language (sandbox/languages.toml). A language's "
        "jobs run in it when they name it (image=NAME), or when a languages file "
        "(SANDBOX_LANGUAGES_FILE) sets the language's image to NAME.",
    )
    build.add_argument("name", metavar="NAME")
    build.add_argument("--debootstrap", metavar="SUITE", default="bookworm", help="(bookworm)")
    build.add_argument("--include", default="", metavar="PKG,...", help="extra packages")
    build.add_argument(
        "--language",
        action="append",
        default=[],
        metavar="LANG",
        help="the Debian packages of LANG's toolchain and runtime (repeatable)",
    )
    build.add_argument("--variant", default="minbase", help="debootstrap variant")
    build.add_argument("--mirror", metavar="URL", help="Debian mirror (default: debootstrap's)")
    build.add_argument("--json", action="store_true", help="print the manifest as JSON")
    ls = image.add_parser("ls", help="list images")
    ls.add_argument("--json", action="store_true", help="print the manifests as JSON")
    rm = image.add_parser("rm", help="remove an image")
    rm.add_argument("name", metavar="NAME")
    inspect = image.add_parser("inspect", help="print an image's manifest (JSON)")
    inspect.add_argument("name", metavar="NAME")

    pool = sub.add_parser("pool", help="the warm pool").add_subparsers(
        dest="pool_command", required=True, metavar="COMMAND"
    )
    status = pool.add_parser("status", help="counters of each running runtime's warm pool")
    status.add_argument("--json", action="store_true", help="print as JSON")

    gc = sub.add_parser("gc", help="reclaim what crashed runtimes left behind")
    gc.add_argument("--json", action="store_true", help="print what was removed as JSON")
    sub.add_parser(
        "serve",
        help="keep a warm runtime that `sandbox run` on this host hands its jobs to",
        description="Listen on <SANDBOX_RUN_DIR>/sandbox.sock (root only); `sandbox run` "
        "then runs its job here, warm, instead of starting a runtime of its own.",
    )
    return parser


def _run(args: argparse.Namespace) -> int:
    from sandbox.errors import SandboxError, SpecError
    from sandbox.result import JobResult
    from sandbox.runtime.shared import execute_sync

    spec = job_spec(args)
    try:
        result = execute_sync(spec, pool=False)
    except SpecError as exc:
        return fail(str(exc), EXIT_USAGE)
    except SandboxError as exc:
        result = JobResult.internal_error(str(exc))
    return report(result, args.json)


def _submit(args: argparse.Namespace) -> int:
    from celery.exceptions import TimeoutError as ResultTimeout

    from sandbox.result import JobResult
    from worker.tasks import run

    spec = job_spec(args)
    pending = run.delay(**spec.model_dump(mode="json", exclude_unset=True))
    try:
        data = pending.get(timeout=args.wait)
    except ResultTimeout:
        with contextlib.suppress(Exception):  # stop listening now, not at interpreter exit
            pending.backend.remove_pending_result(pending)
        return fail(f"no result within {args.wait:g} s (are workers running?)", EXIT_SANDBOX)
    return report(JobResult.model_validate(data), args.json)


def _worker(args: argparse.Namespace) -> int:
    import os

    from sandbox.runtime.host import prepare
    from sandbox.settings import Settings

    prepare(Settings())
    argv = [sys.executable, "-m", "celery", "-A", "worker.app:app", "worker", *args.celery_args]
    if not any(a.startswith(("--loglevel", "-l")) for a in args.celery_args):
        argv += ["--loglevel", "INFO"]
    os.execv(sys.executable, argv)


def _api(args: argparse.Namespace) -> int:
    from sandbox.api.server import serve

    return serve(host=args.host, port=args.port)


def _doctor(args: argparse.Namespace) -> int:
    from sandbox.runtime.host import run_checks
    from sandbox.runtime.shared import try_a_job
    from sandbox.settings import Settings

    checks = run_checks()
    ok = all(c.ok for c in checks if c.essential)
    if ok:  # the proof: one real job, end to end
        checks.append(try_a_job(Settings()))
        ok = checks[-1].ok
    if args.json:
        print(json.dumps({"ok": ok, "checks": [c.__dict__ for c in checks]}))
        return 0 if ok else 1
    for c in checks:
        mark = "ok  " if c.ok else ("FAIL" if c.essential else "warn")
        line = f"[{mark}] {c.name}: {c.detail}"
        if not c.ok and c.hint:
            line += f"\n       fix: {c.hint}"
        print(line)
    print("this host can run sandboxes" if ok else "this host cannot run sandboxes yet")
    return 0 if ok else 1


def _progress() -> Callable[[int, int], None]:
    """A progress line on stderr, redrawn at most 5 times a second (a TTY only)."""
    last = 0.0

    def show(done: int, total: int) -> None:
        nonlocal last
        now = time.monotonic()
        if not sys.stderr.isatty() or (now - last < 0.2 and done < total):
            return
        last = now
        pct = 100 * done // total if total else 100
        end = "\n" if done >= total else ""
        print(
            f"\rimporting: {pct:3d}% ({done >> 20} / {total >> 20} MiB)", end=end, file=sys.stderr
        )

    return show


def _print_manifest(manifest: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(manifest))
    else:
        print(
            f"{manifest['name']}: {manifest.get('source', '?')}, "
            f"{manifest.get('size', 0) >> 20} MiB, created {manifest.get('created', '?')}"
        )


def _image(args: argparse.Namespace) -> int:
    from sandbox.image.store import ImageStore
    from sandbox.settings import Settings

    store = ImageStore(Settings().state_dir)
    command = args.image_command
    if command == "ls":
        store.ensure_host()
        manifests = store.manifests()
        if args.json:
            print(json.dumps(manifests))
            return 0
        print(f"{'NAME':20} {'SOURCE':16} {'SIZE':>10}  CREATED")
        for m in manifests:
            size = f"{m.get('size', 0) / 2**20:.1f} MiB"
            print(f"{m['name']:20} {m.get('source', '?'):16} {size:>10}  {m.get('created', '?')}")
        return 0
    if command == "inspect":
        store.get(args.name)  # builds a built-in image on first use
        print(json.dumps(store.manifest(args.name), indent=2))
        return 0
    if command == "rm":
        store.remove(args.name)
        print(f"removed {args.name}", file=sys.stderr)
        return 0
    if command == "import":
        manifest = store.import_archive(args.name, Path(args.file), progress=_progress())
        _print_manifest(manifest, args.json)
        if manifest.get("dropped_devices") or manifest.get("stripped_setid"):
            print(
                f"sandbox: dropped {manifest.get('dropped_devices', 0)} device node(s), "
                f"stripped setuid/setgid from {len(manifest.get('stripped_setid', []))} file(s)",
                file=sys.stderr,
            )
        return 0
    from sandbox import languages

    include = tuple(p for p in args.include.split(",") if p)
    for name in args.language:
        try:
            packages = languages.get(name).packages
        except ValueError as exc:
            print(f"sandbox: --language: {exc}", file=sys.stderr)
            return 2
        include += tuple(p for p in packages if p not in include)
    manifest = store.build_debootstrap(
        args.name,
        args.debootstrap,
        include=include,
        variant=args.variant,
        mirror=args.mirror,
        output=lambda line: print(line, file=sys.stderr),
    )
    _print_manifest(manifest, args.json)
    return 0


def _pool(args: argparse.Namespace) -> int:
    from sandbox.paths import POOLS
    from sandbox.runtime.reclaim import owner_alive
    from sandbox.settings import Settings

    settings = Settings()
    rows = []
    for path in sorted((settings.run_dir / POOLS).glob("*.json")):
        owner = path.stem
        if not owner_alive(settings.run_dir, owner):
            continue
        with contextlib.suppress(OSError, ValueError):
            rows.append(json.loads(path.read_text()))
    if args.json:
        print(json.dumps(rows))
        return 0
    if not rows:
        print("no running runtime has a warm pool (it starts with the first job)", file=sys.stderr)
        return 0
    print(f"{'OWNER':18} {'PID':>7} {'READY':>5} {'HITS':>7} {'MISSES':>7} {'BUILD ms':>9}")
    for r in rows:
        avg = 1000 * r["build_seconds_total"] / r["builds"] if r["builds"] else 0.0
        print(
            f"{r['owner']:18} {r['pid']:>7} {r['ready']:>5} {r['hits']:>7} "
            f"{r['misses']:>7} {avg:>9.1f}"
        )
    return 0


def _health(args: argparse.Namespace) -> int:
    from worker.health import check

    checks = check()
    ok = all(c.ok for c in checks)
    if args.json:
        print(json.dumps({"ok": ok, "checks": [c.__dict__ for c in checks]}))
    else:
        for c in checks:
            print(f"[{'ok  ' if c.ok else 'FAIL'}] {c.name}: {c.detail}", file=sys.stderr)
            if not c.ok and c.hint:
                print(f"       {c.hint}", file=sys.stderr)
    return 0 if ok else 1


def _settings() -> Settings:
    """The host's settings, for commands that act on its running jobs (as root)."""
    from sandbox.runtime.host import require_capable
    from sandbox.settings import Settings

    settings = Settings()
    require_capable(settings)
    return settings


def _serve(args: argparse.Namespace) -> int:
    from sandbox.cli import daemon

    return daemon.serve()


def _gc(args: argparse.Namespace) -> int:
    from sandbox.runtime.host import require_capable
    from sandbox.runtime.reclaim import collect
    from sandbox.settings import Settings

    settings = Settings()
    require_capable(settings)
    report = collect(settings)
    if args.json:
        print(json.dumps(report.__dict__))
    elif report.empty:
        print("nothing to reclaim", file=sys.stderr)
    else:
        print(
            f"reclaimed {len(report.cgroups)} cgroup(s), {len(report.owners)} dead runtime(s), "
            f"{len(report.job_records)} job record(s), "
            f"{len(report.image_dirs)} image staging dir(s)",
            file=sys.stderr,
        )
    for error in report.errors:
        print(f"sandbox: {error}", file=sys.stderr)
    return 1 if report.errors else 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``sandbox`` command."""
    from sandbox.errors import SandboxError

    raw = sys.argv[1:] if argv is None else argv
    if raw[:1] == ["worker"] and "-h" not in raw[1:2] and "--help" not in raw[1:2]:
        # Everything after `worker` is celery's, options first included.
        args = argparse.Namespace(command="worker", celery_args=raw[1:])
    else:
        args = _parser().parse_args(raw)
    commands: dict[str, Callable[[argparse.Namespace], int]] = {
        "run": _run,
        "submit": _submit,
        "worker": _worker,
        "api": _api,
        "doctor": _doctor,
        "image": _image,
        "pool": _pool,
        "gc": _gc,
        "judge": lambda a: judge_command(a, language_of(a.file, a.lang)),
        "languages": languages_command,
        "health": _health,
        "serve": _serve,
        "ps": lambda a: ps_command(a, _settings()),
        "exec": lambda a: exec_command(a, _settings()),
        "kill": lambda a: kill_command(a, _settings()),
    }
    try:
        return commands[args.command](args)
    except KeyboardInterrupt:
        return 130
    except UsageError as exc:
        return fail(str(exc), EXIT_USAGE)
    except SandboxError as exc:
        code = EXIT_USAGE if isinstance(exc, ValueError) else 1
        return fail(str(exc), code)
