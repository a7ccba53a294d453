"""`sandbox serve`: a resident warm runtime that `sandbox run` hands its jobs to.

As ``docker`` talks to ``dockerd``: a command that starts a runtime of its
own pays Python's and pydantic's imports, the host checks and a container
build (hundreds of milliseconds) for one job. With ``sandbox serve`` running,
``sandbox run`` imports nothing but the C module ``_socket``
(:func:`forward`), connects to ``<SANDBOX_RUN_DIR>/sandbox.sock``, and passes
its arguments with its standard input, output, error and working directory
as descriptors (SCM_RIGHTS). The server parses them with the command's own
parser, reads the files through the client's directory, runs the job on its
warm runtime, writes the output to the client's descriptors and answers with
the exit status. One parser, one set of rules: the job is exactly the one
``sandbox run`` would have run itself. Without a server, ``sandbox run``
runs the job itself, as before.

The socket is root's (mode 0600 in the root-only run dir): whoever may
connect may run jobs, as whoever may run ``sandbox run`` as root. The server
is one process; jobs from concurrent clients run concurrently.
"""

from __future__ import annotations

import os
import sys

from sandbox.paths import serve_socket

TYPE_CHECKING = False  # not typing's: the client imports no more than it needs
if TYPE_CHECKING:
    import socket
    from typing import Any

    from sandbox.runtime.runner import Runtime

__all__ = ["forward", "serve"]

# The client's descriptors, in this order: stdin, stdout, stderr, its working directory.
CLIENT_FDS = 4
MAX_REQUEST = 1 << 20


def forward(argv: list[str]) -> int | None:
    """Run ``sandbox ARGV`` (a ``run``) through `sandbox serve`; its exit status.

    Returns:
        None if no server listens (the caller runs the job itself).
    """
    # The C module: socket.py would import enum, selectors and collections
    # first, which costs more than the rest of the client together.
    import _socket

    path = serve_socket()
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    try:
        sock.connect(path)
    except OSError:  # none there, a stale socket, or not ours to use
        sock.close()
        return None
    cwd = os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        request = b"\0".join(os.fsencode(arg) for arg in argv)  # argv holds no NUL
        fds = b"".join(fd.to_bytes(4, sys.byteorder) for fd in (0, 1, 2, cwd))
        sock.sendmsg([request], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, fds)])
        sock.shutdown(_socket.SHUT_WR)
        reply = b"".join(iter(lambda: sock.recv(4096), b""))
    except OSError as exc:
        print(f"sandbox: the serve socket {path} failed: {exc.strerror}", file=sys.stderr)
        return 125
    finally:
        os.close(cwd)
        sock.close()
    try:
        return int(reply)  # the exit status, in decimal
    except ValueError:
        print(f"sandbox: no answer from {path} (is `sandbox serve` stopping?)", file=sys.stderr)
        return 125


def serve() -> int:
    """Listen on the serve socket until SIGTERM or SIGINT; return the exit status."""
    import asyncio
    import signal

    from sandbox.runtime.runner import Runtime

    async def main() -> None:
        async with Runtime() as runtime:
            path = serve_socket(runtime.settings.run_dir)
            listener = _listen(path)
            stop = asyncio.get_running_loop().create_future()
            for sig in (signal.SIGTERM, signal.SIGINT):
                asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
            clients: set[asyncio.Task[None]] = set()
            accept = asyncio.create_task(_accept(listener, runtime, clients))
            print(f"sandbox serve: listening on {path}", file=sys.stderr, flush=True)
            try:
                await stop
            finally:
                accept.cancel()
                listener.close()
                _remove(path)
                await asyncio.gather(*clients, return_exceptions=True)

    asyncio.run(main())
    return 0


def _remove(path: str) -> None:
    import contextlib

    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _listen(path: str) -> socket.socket:
    """A listening socket at ``path``, root's only; a stale one (no server) is replaced."""
    import socket

    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except FileNotFoundError:
        pass
    except ConnectionRefusedError:
        os.unlink(path)  # a dead server's
    else:
        probe.close()
        raise SystemExit(f"sandbox serve: another server listens on {path}")
    finally:
        probe.close()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    old = os.umask(0o177)
    try:
        listener.bind(path)
    finally:
        os.umask(old)
    listener.listen(64)
    listener.setblocking(False)
    return listener


async def _accept(listener: socket.socket, runtime: Runtime, clients: set[Any]) -> None:
    import asyncio

    loop = asyncio.get_running_loop()
    while True:
        conn, _ = await loop.sock_accept(listener)
        task = asyncio.create_task(_client(conn, runtime))
        clients.add(task)
        task.add_done_callback(clients.discard)


async def _client(conn: socket.socket, runtime: Runtime) -> None:
    """One `sandbox run`: its request and descriptors in, its output and status out."""
    import asyncio

    fds: list[int] = []
    try:
        conn.setblocking(True)
        conn.settimeout(10)
        msg, fds = await asyncio.to_thread(_receive, conn)
        code = await _run(runtime, msg, fds)
        await asyncio.to_thread(conn.sendall, str(code).encode())
    except (OSError, ValueError) as exc:
        print(f"sandbox serve: a client failed: {exc}", file=sys.stderr, flush=True)
    finally:
        for fd in fds:
            os.close(fd)
        conn.close()


def _receive(conn: socket.socket) -> tuple[bytes, list[int]]:
    """The request (all of it, up to the client's shutdown) and its descriptors."""
    import array
    import socket

    fds = array.array("i")
    msg, ancdata, _, _ = conn.recvmsg(MAX_REQUEST, socket.CMSG_SPACE(CLIENT_FDS * fds.itemsize))
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
    chunks = [msg]
    while chunk := conn.recv(65536):
        chunks.append(chunk)
        if sum(map(len, chunks)) > MAX_REQUEST:
            raise ValueError("request too large")
    return b"".join(chunks), list(fds)


async def _run(runtime: Runtime, msg: bytes, fds: list[int]) -> int:
    """Parse, run and report as `sandbox run` does, on the client's descriptors."""
    from sandbox.cli import run as cli
    from sandbox.cli.args import EXIT_USAGE, UsageError

    argv = [os.fsdecode(arg) for arg in msg.split(b"\0")]
    if len(fds) != CLIENT_FDS or argv[:1] != ["run"]:
        raise ValueError("not a `sandbox run` request")
    stdin = os.fdopen(os.dup(fds[0]), "rb")
    out = os.fdopen(os.dup(fds[1]), "w")
    err = os.fdopen(os.dup(fds[2]), "w")
    cwd = f"/proc/self/fd/{fds[3]}"  # the client's directory (O_PATH)
    with stdin, out, err:
        try:
            args = _parser().parse_args(argv)
            spec = cli.job_spec(args, cwd=cwd, stdin_file=stdin)
        except UsageError as exc:
            return cli.fail(str(exc), EXIT_USAGE, err)
        return await _execute(runtime, spec, args.json, out, err)


def _parser() -> Any:
    """The parser of `sandbox run`, built once."""
    global _PARSER
    if _PARSER is None:
        from sandbox.cli import run

        _PARSER = run.StrictParser(prog="sandbox")
        run.add_run_command(_PARSER.add_subparsers(dest="command", required=True))
    return _PARSER


_PARSER: Any = None


async def _execute(runtime: Runtime, spec: Any, as_json: bool, out: Any, err: Any) -> int:
    from sandbox.cli import run as cli
    from sandbox.cli.args import EXIT_USAGE
    from sandbox.errors import SandboxError, SpecError
    from sandbox.result import JobResult

    try:
        result = await runtime.execute(spec)
    except SpecError as exc:
        return cli.fail(str(exc), EXIT_USAGE, err)
    except SandboxError as exc:
        result = JobResult.internal_error(str(exc))
    return cli.report(result, as_json, out, err)
