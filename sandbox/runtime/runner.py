"""The parent side: asyncio orchestration of jobs.

A :class:`Runtime` owns the host-wide pieces (settings, cgroup setup, the
default image, the launcher process, an owner lock). :meth:`Runtime.execute`
runs one job: build the plan, create the cgroup, ask the launcher for a
container, then watch it (events, output, wall and CPU time) and collect the
result. Whatever happens (success, a limit, an exception, a timeout,
cancellation) the container is killed if still running, awaited, and its
cgroup removed before ``execute`` returns or raises.

Nothing here blocks the event loop for long: descriptors are non-blocking and
watched with ``loop.add_reader``; cgroupfs reads are in-memory and short.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import resource
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from sandbox import languages, paths, verdict
from sandbox.errors import (
    SandboxError,
    SeccompError,
    SetupError,
    UnsupportedError,
)
from sandbox.image.store import Image, ImageStore
from sandbox.kernel import egress, native, seccomp
from sandbox.kernel.caps import last_capability
from sandbox.kernel.cgroups import Cgroup, CgroupLimits, CgroupSetup, detect_setup
from sandbox.kernel.cpus import parse_cpu_list
from sandbox.kernel.netns import NetNamespace
from sandbox.kernel.slots import Slot, Slots
from sandbox.plan import ContainerPlan, Plan, build_plan
from sandbox.resources import LIMITS
from sandbox.result import JobResult
from sandbox.runtime import host, jobs, reclaim
from sandbox.runtime.container import Container, destroy_cgroup, destroy_cgroup_now, memfd, within
from sandbox.runtime.output import Stream, collect_files, wait_drained
from sandbox.runtime.pool import PoolStats, RootfsPool
from sandbox.runtime.watch import CpuWatch, OomWatch
from sandbox.settings import Settings
from sandbox.spec import File, JobSpec, Limits

__all__ = ["Runtime"]

log = logging.getLogger("sandbox")
job_log = logging.getLogger("sandbox.jobs")

# A job's record (`sandbox ps`, `exec`, `kill`) is written once it has run
# this long: most jobs end sooner, and nobody could have reached them anyway.
PUBLISH_AFTER = 0.05


class Runtime:
    """Runs jobs on this host. Open it once, run many jobs, close it.

    Usage::

        async with Runtime() as rt:
            result = await rt.execute(JobSpec(code="print(1)"))

    Jobs from one event loop may run concurrently. With a warm pool
    (``pool_size`` > 0) containers are built ahead, on the loop that ran the
    first job; used from another loop, the runtime starts a new pool there.
    """

    def __init__(self, settings: Settings | None = None, *, pool_size: int | None = None) -> None:
        self.settings = settings or Settings()
        self.pool_size = self.settings.pool_size if pool_size is None else pool_size
        self.owner = f"{os.getpid()}-{secrets.token_hex(3)}"
        self._counter = itertools.count(1)
        self._job_ids = itertools.count(1)
        self._cgroups: CgroupSetup | None = None
        # Cgroups of finished jobs, emptied and reset, for the next containers
        # (docs/adr/0008): reusing one costs a few reads, a new one two mkdirs
        # and two rmdirs per hierarchy.
        self._idle_cgroups: list[Cgroup] = []
        self.cgroups_reused = 0
        # Loopback-only network namespaces that jobs left untouched (ADR 0013):
        # joining one costs a setns, a new one ~1.2 ms of kernel work.
        self._idle_netns: list[NetNamespace] = []
        self.netns_reused = 0
        self._teardowns: set[asyncio.Task[None]] = set()  # of finished jobs' containers
        self._images = ImageStore(self.settings.state_dir)
        self._image_cache: dict[str, tuple[int, Image]] = {}
        self._plans: dict[tuple[object, ...], ContainerPlan] = {}  # build_plan's memo
        self._lock_fd = -1
        self._control: socket.socket | None = None
        self._launcher: subprocess.Popen[bytes] | None = None
        self._pool: RootfsPool | None = None
        self._pool_loop: asyncio.AbstractEventLoop | None = None
        self._stats_written = 0.0
        self._last_cap = last_capability()
        self._cpus: Slots | None = None
        self._usable_cpus: int | None = None
        self._id_ranges: Slots | None = None

    # -- lifecycle ---------------------------------------------------------

    def open(self) -> None:
        """Check the host, claim our state, reclaim a crashed runtime's leftovers.

        It also raises this process's soft limit on open files to its hard
        limit (as Go's runtime does): every cgroup kept for reuse holds its
        files open, a dozen on a v1 host, and systemd's soft default is 1024.

        Raises:
            UnsupportedError: the host cannot run sandboxes (says how to fix it).
        """
        if self._control is not None:
            return
        host.require_capable(self.settings)
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        s = self.settings
        for path in (
            s.run_dir / paths.MOUNTS,
            s.run_dir / paths.OWNERS,
            s.run_dir / paths.POOLS,
            s.state_dir,
        ):
            path.mkdir(parents=True, exist_ok=True)
        self._cgroups = detect_setup(s.cgroup_root, s.cgroup_parent)
        self._cgroups.ensure_parent()
        if s.pin_cpus:
            if not self._cgroups.can_pin():
                raise UnsupportedError(
                    "SANDBOX_PIN_CPUS is set, but the cpuset controller is not available to us",
                    hint="enable cpuset (cgroup v2: echo +cpuset > "
                    f"{s.cgroup_root}/cgroup.subtree_control) or unset SANDBOX_PIN_CPUS",
                )
            self._cpus = Slots(s.run_dir / paths.CPUS, _pinnable(s.pin_cpus))
        if s.userns:
            self._id_ranges = Slots(s.run_dir / paths.USERNS, tuple(range(s.userns_ranges)))
        if s.allow_network:
            rules = egress.ruleset(s.job_uids(), s.network_connections, s.network_rate)
            egress.install_firewall(s.network_stack, rules)
        launcher = native.path()
        self._lock_fd = reclaim.claim_owner(s.run_dir, self.owner)
        reclaim.collect(s, self._cgroups)
        self._images.ensure_host()
        self._start_launcher(launcher)

    def close(self) -> None:
        """Kill ready containers, stop the launcher, release the owner lock."""
        if self._pool is not None:
            self._pool.discard()
            self._pool = None
        while self._idle_cgroups:
            destroy_cgroup_now(self._idle_cgroups.pop())
        while self._idle_netns:
            self._idle_netns.pop().close()
        if self._control is not None:
            self._control.close()
            self._control = None
        if self._launcher is not None:
            try:
                self._launcher.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._launcher.kill()
                self._launcher.wait()
            self._launcher = None
        if self._lock_fd >= 0:
            with contextlib.suppress(OSError):
                os.unlink(self._stats_path())
            # The owner lock goes only if none of our cgroups is left (a job's,
            # killed as we closed, still going): a lock file that remains, free,
            # tells gc they are a dead runtime's; without one they would look
            # like another run dir's, which gc never touches (sandbox/runtime/reclaim.py).
            if not self._own_cgroups_left():
                with contextlib.suppress(OSError):
                    os.unlink(self.settings.run_dir / paths.OWNERS / f"{self.owner}.lock")
            os.close(self._lock_fd)
            self._lock_fd = -1

    def _own_cgroups_left(self) -> bool:
        if self._cgroups is None:
            return False
        try:
            names = self._cgroups.children()
        except (OSError, SandboxError):
            return True  # unknown: keep the lock file, gc will look
        return any(name.rsplit(".", 1)[0] == self.owner for name in names)

    def forget(self) -> None:
        """In a forked child: close our copies of the parent's descriptors, nothing else.

        The launcher sees its control socket close only when every copy is
        closed; the containers, cgroups and lock stay the parent's.
        """
        if self._control is not None:
            os.close(self._control.detach())
            self._control = None
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1
        self._launcher = None
        self._pool = None
        self._idle_cgroups = []
        while self._idle_netns:  # our copies; the parent keeps its own
            self._idle_netns.pop().close()
        self._teardowns = set()

    async def aclose(self) -> None:
        """Finish the teardowns, drain the warm pool (waiting for its containers to
        exit), then :meth:`close`."""
        await self._finish_teardowns()
        if self._pool is not None and self._pool_loop is asyncio.get_running_loop():
            await self._pool.drain()
            self._pool = None
        self.close()

    async def __aenter__(self) -> Runtime:
        self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _start_launcher(self, launcher: str) -> None:
        """Start the native launcher (sandbox/kernel/native/launch.c): it forks our containers."""
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._launcher = subprocess.Popen(
                [launcher, str(child.fileno())],
                pass_fds=(child.fileno(),),
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # terminal signals are the supervisor's to handle
                env={},
            )
        finally:
            child.close()
        parent.setblocking(False)
        self._control = parent

    def _control_socket(self) -> socket.socket:
        if self._control is None:
            self.open()
        elif self._launcher is not None and self._launcher.poll() is not None:
            log.error("sandbox launcher exited with %s; restarting it", self._launcher.returncode)
            self._control.close()
            self._start_launcher(native.path())
        assert self._control is not None
        return self._control

    def _image(self, name: str) -> Image:
        """The image ``name``, cached while its directory is the same one."""
        try:
            inode = os.stat(self._images.root / name).st_ino
        except OSError:
            inode = -1
        cached = self._image_cache.get(name)
        if cached is not None and cached[0] == inode:
            return cached[1]
        image = self._images.get(name)
        self._image_cache[name] = (os.stat(self._images.root / name).st_ino, image)
        return image

    async def _spawn(self, plan: ContainerPlan) -> Container:
        """A new container in a new cgroup of ours (the container owns the cgroup).

        With user namespaces it also gets a range of host ids of its own, held
        while it lives: two containers of this host never share a host uid.
        """
        control = self._control_socket()
        assert self._cgroups is not None
        id_range = None
        root_owner = None
        if plan.userns is not None and self._id_ranges is not None:
            id_range = await self._id_ranges.acquire()
            root_owner = self.settings.host_id(0, id_range.id)
        try:
            if self._idle_cgroups:
                cgroup = self._idle_cgroups.pop()
                self.cgroups_reused += 1
            else:
                cgroup = self._cgroups.create(f"{self.owner}.{next(self._counter)}")
        except BaseException:
            if id_range is not None:
                id_range.release()
            raise
        netns = None
        if plan.shared_net and self._idle_netns:
            netns = self._idle_netns.pop()
            self.netns_reused += 1
        try:
            container = await Container.spawn(
                control, plan, cgroup, self._recycle, root_owner, netns
            )
        except BaseException:
            with contextlib.suppress(OSError):
                cgroup.destroy()
            if id_range is not None:
                id_range.release()
            raise
        container.id_range = id_range
        return container

    async def _recycle(self, container: Container) -> None:
        """Keep a finished container's cgroup and network namespace for the next
        ones, or remove them.

        Raises:
            CleanupError: the cgroup stayed busy (see
                :func:`~sandbox.runtime.container.destroy_cgroup`).
        """
        netns, container.netns = container.netns, None
        if netns is not None:
            if (
                self._control is not None
                and len(self._idle_netns) < self.idle_cgroup_cap
                and netns.untouched()
            ):
                netns.jobs += 1
                self._idle_netns.append(netns)
            else:
                netns.close()
        cgroup = container.cgroup
        try:
            reusable = len(self._idle_cgroups) < self.idle_cgroup_cap and cgroup.recycle()
        except (OSError, SandboxError) as exc:
            log.debug("cgroup %s not reusable: %s", cgroup.name, exc)
            reusable = False
        if reusable and self._control is not None:
            self._idle_cgroups.append(cgroup)
        else:
            await destroy_cgroup(cgroup)

    @property
    def pool_max(self) -> int:
        """Ready containers per plan that misses may grow the pool to
        (``SANDBOX_POOL_MAX``; by default 4 per job slot).

        A steady stream of jobs at ``slots`` at a time keeps about
        ``slots x (1 + build time / job time)`` containers taken or building.
        """
        return max(self.pool_size, self.settings.pool_max or 4 * self.slots)

    @property
    def idle_cgroup_cap(self) -> int:
        """Emptied cgroups kept at most: what a burst of jobs and pool builds uses at once."""
        return 2 * (self.pool_size + self.slots)

    def idle_cgroups(self) -> list[str]:
        """Names of the emptied cgroups kept for the next containers (not any job's)."""
        return [c.name for c in self._idle_cgroups]

    def idle_fds(self) -> set[int]:
        """Descriptors the idle cgroups and network namespaces hold open (v2: memory.peak)."""
        held = {fd for c in self._idle_cgroups for fd in c.held_fds()}
        return held | {fd for n in self._idle_netns for fd in n.held_fds()}

    def _container_source(self) -> Callable[[ContainerPlan], Awaitable[Container]]:
        if self.pool_size <= 0:
            return self._spawn
        loop = asyncio.get_running_loop()
        if self._pool is None or self._pool_loop is not loop:
            if self._pool is not None:
                self._pool.discard()  # its loop is gone or elsewhere
            sizes = self.settings.pool_sizes
            self._pool = RootfsPool(
                self._spawn,
                self.pool_size,
                size_for=lambda plan: sizes.get(plan.image_id.split(":")[0], self.pool_size),
                max_size=self.pool_max,
                setup_timeout=self.settings.setup_timeout,
            )
            self._pool_loop = loop
        return self._pool.take

    # -- warm pool ---------------------------------------------------------

    @property
    def pool_loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop the warm pool lives on, if it has started."""
        return self._pool_loop if self._pool is not None else None

    @property
    def launcher_pid(self) -> int | None:
        """The launcher process's pid, if it runs."""
        return self._launcher.pid if self._launcher is not None else None

    async def pool_settled(self) -> None:
        """Wait until every finished job's container is gone and the warm pool is
        not building (it refills after each job)."""
        await self._finish_teardowns()
        if self._pool is not None and self._pool_loop is asyncio.get_running_loop():
            await self._pool.settled()

    async def _finish_teardowns(self) -> None:
        loop = asyncio.get_running_loop()
        while mine := [t for t in self._teardowns if t.get_loop() is loop]:
            await asyncio.gather(*mine, return_exceptions=True)

    def pool_containers(self) -> list[Container]:
        """The warm pool's containers (ready or being built): not any job's."""
        return self._pool.containers() if self._pool is not None else []

    @property
    def slots(self) -> int:
        """Jobs worth running at once: the pinned CPUs, or the CPUs this process may use."""
        if self._cpus:
            return len(self._cpus.ids)
        if self._usable_cpus is None:
            self._usable_cpus = max(1, len(os.sched_getaffinity(0)))
        return self._usable_cpus

    def pool_stats(self) -> PoolStats | None:
        """Counters of the warm pool, or None before its first job or when disabled."""
        return self._pool.stats() if self._pool is not None else None

    def _stats_path(self) -> Path:
        return self.settings.run_dir / paths.POOLS / f"{self.owner}.json"

    def _publish_stats(self) -> None:
        """Write the pool's counters for `sandbox pool status`, at most once a second."""
        now = time.monotonic()
        stats = self.pool_stats()
        if stats is None or now - self._stats_written < 1.0:
            return
        self._stats_written = now
        data = {"owner": self.owner, "pid": os.getpid(), "size": self.pool_size, **asdict(stats)}
        with contextlib.suppress(OSError):
            paths.write_atomically(self._stats_path(), json.dumps(data))

    # -- one job -----------------------------------------------------------

    async def execute(
        self, spec: JobSpec, *, task_id: str | None = None, stdio: tuple[int, int] | None = None
    ) -> JobResult:
        """Run one job in a fresh container and return its result.

        Args:
            spec: the job.
            task_id: the Celery task it serves, for `sandbox ps` and the logs.
            stdio: descriptors for the job's stdin and stdout instead of
                ``spec.stdin`` and the captured stdout (an interactive
                problem's pipes to its interactor). The runtime owns them from
                here: it closes them once the job holds them, or on any error,
                so that the other end sees EOF when the job ends. The result's
                stdout is then empty.

        Returns:
            The result; limits hit are statuses, not exceptions.

        Raises:
            SpecError: the spec exceeds what this host allows.
            UnsupportedError: the host cannot run sandboxes.
            SetupError: the container could not be built.
        """
        try:
            self._control_socket()
            image = self._image(spec.image or languages.get(spec.language).image)
            plan = build_plan(
                spec, self.settings, image, last_cap=self._last_cap, containers=self._plans
            )
            container = await self._container_source()(plan.container)
        except BaseException:
            for fd in stdio or ():
                os.close(fd)
            raise
        slot = None
        job: _Job | None = None
        ended = False
        try:
            if self._cpus is not None:
                slot = await self._cpus.acquire()
            job = _Job(
                f"{self.owner}-{next(self._job_ids)}", spec, plan, image.name, task_id, stdio
            )
            stdio = None  # the job's now: _run closes them
            result = await self._run(container, job, str(slot.id) if slot else "")
            self._log_job(container, job, result)
            ended = True
            return result
        finally:
            for fd in stdio or ():  # never handed to the job (the slot's wait was cancelled)
                os.close(fd)
            if job is not None and job.published:
                jobs.remove(self.settings.run_dir, job.id)
            teardown = self._teardown(container, slot, plan.container)
            if ended:
                # The result is complete: the rest (the init's exit, the kernel's
                # teardown of the namespaces, reaping, the cgroup) is off the
                # caller's path. pool_settled() and aclose() wait for it.
                task = asyncio.create_task(teardown)
                self._teardowns.add(task)
                task.add_done_callback(self._teardown_done)
            else:  # an error or a cancellation: all is gone before it propagates
                await asyncio.shield(teardown)

    async def _teardown(self, container: Container, slot: Slot | None, plan: ContainerPlan) -> None:
        """After a job: refill the pool, wait for the container to be gone, recycle
        its cgroup and network namespace.

        The refill starts as the job ends, not once its container is gone: the
        build then overlaps the teardown, and a steady stream of jobs finds
        the pool ready (the replacement no longer waits out the init's exit and
        the reaping).
        """
        try:
            if self._pool is not None and self._pool_loop is asyncio.get_running_loop():
                self._pool.refill(plan)
                self._publish_stats()
            await container.remove()
        finally:
            if slot is not None:
                slot.release()

    def _teardown_done(self, task: asyncio.Task[None]) -> None:
        self._teardowns.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("container teardown failed: %s", task.exception())

    async def _run(self, container: Container, task: _Job, cpuset: str) -> JobResult:
        spec, lim, job = task.spec, task.plan.limits, task.plan.job
        cgroup = container.cgroup
        outputs: tuple[dict[str, bytes], dict[str, str]] = ({}, {})
        child_fds: list[int] = list(task.stdio or ())  # closed with ours, below
        streams: list[Stream] = []
        captured = task.stdio is None
        cpu_watch: CpuWatch | None = None
        publish: asyncio.TimerHandle | None = None
        oom_watch: OomWatch | None = None
        try:
            await container.wait_ready(self.settings.setup_timeout)
            kill = container.kill
            if captured:
                out_r, out_w = os.pipe2(os.O_CLOEXEC)
                child_fds.append(out_w)
                streams.append(Stream(out_r, lim.output, lambda: kill(verdict.OUTPUT)))
            else:
                assert task.stdio is not None
                out_w = task.stdio[1]
            err_r, err_w = os.pipe2(os.O_CLOEXEC)
            child_fds.append(err_w)
            streams.append(Stream(err_r, lim.output, lambda: kill(verdict.OUTPUT)))
            wire = job.to_wire(
                spec.code.encode(),
                b"".join(file.data() for file in spec.files.values()),
                _seccomp_filter(job.seccomp_profile) if container.plan.seccomp else b"",
            )
            plan_fd = memfd("job", wire)
            child_fds.append(plan_fd)
            if captured:
                stdin_fd = memfd("stdin", spec.stdin.encode())
                child_fds.append(stdin_fd)
            else:
                assert task.stdio is not None
                stdin_fd = task.stdio[0]
            # A network stack in the cgroup (egress.py) has room of its own.
            extra = egress.STACK_ROOM if container.plan.netstack else {}
            cgroup.set_limits(
                CgroupLimits(
                    memory_bytes=lim.memory + extra.get("memory", 0),
                    cpus=lim.cpus,
                    cpuset=cpuset,
                    files={
                        limit.cgroup_file: getattr(lim, limit.name) + extra.get(limit.name, 0)
                        for limit in LIMITS
                        if limit.cgroup_file
                    },
                )
            )
            cgroup.reset_accounting()
            oom_watch = OomWatch(cgroup, lambda: kill(verdict.MEMORY), container.exited)
            # The launcher's order (launch.c, JOB_FDS): job plan, stdin, stdout, stderr.
            await container.run([plan_fd, stdin_fd, out_w, err_w])
            for fd in child_fds:
                os.close(fd)
            child_fds.clear()

            started_ns = 0
            if await within(container.started, self.settings.setup_timeout):
                started_ns = container.started.result()
            else:
                container.kill("setup")
            if started_ns:
                publish = asyncio.get_running_loop().call_later(
                    PUBLISH_AFTER, self._publish_job, container, task
                )
                cpu_watch = CpuWatch(
                    cgroup, int(lim.cpu_time * 1e9), lambda: kill(verdict.CPU_TIME)
                )
                remaining = lim.wall_time - (time.monotonic_ns() - started_ns) / 1e9
                if not await within(container.exited, max(remaining, 0)):
                    container.kill(verdict.WALL_TIME)
            if job.collect:
                outputs = await asyncio.to_thread(collect_files, container, job, lim.output)
            container.release()
            await wait_drained(container.exited, streams, container)
        except BaseException:
            container.kill("cancelled")
            with contextlib.suppress(Exception):
                await asyncio.shield(wait_drained(container.done, streams, container))
            raise
        finally:
            if publish is not None:
                publish.cancel()
            if cpu_watch is not None:
                cpu_watch.close()
            if oom_watch is not None:
                oom_watch.close()
            for fd in child_fds:
                os.close(fd)
            for stream in streams:
                stream.close()
        killed = task.published and jobs.kill_requested(self.settings.run_dir, task.id)
        told: list[Stream | None] = [*streams] if captured else [None, *streams]
        return self._result(container, told, lim, outputs, killed)

    def _log_job(self, container: Container, task: _Job, result: JobResult) -> None:
        """One line per finished job on ``sandbox.runtime.jobs`` (fields for the JSON format)."""
        if not job_log.isEnabledFor(logging.INFO):
            return  # nothing to build on the hot path
        fields: dict[str, object] = {
            "job": task.id,
            "task_id": task.task_id,
            "language": task.spec.language,
            "image": task.image,
            "status": result.status.value,
            "exit_code": result.exit_code,
            "signal": result.signal,
            "wall_time": result.wall_time,
            "cpu_time": result.cpu_time,
            "memory_peak": result.memory_peak,
            "limits": task.plan.limits.model_dump(mode="json"),
        }
        if self.settings.log_debug:
            fields |= {
                "code": task.spec.code,
                "stdin": task.spec.stdin,
                "stdout": result.stdout,
                "stderr": result.stderr,
            }
        job_log.info(
            "job %s %s: %s in %.3f s (cpu %.3f s, %d bytes)",
            fields["job"],
            task.task_id or "-",
            result.status.value,
            result.wall_time,
            result.cpu_time,
            result.memory_peak,
            extra={"fields": fields},
        )

    def _publish_job(self, container: Container, task: _Job) -> None:
        """The running job's record, for `sandbox ps`, `exec` and `kill`."""
        job, cgroup = task.plan.job, container.cgroup
        record = jobs.JobRecord(
            id=task.id,
            cgroup=cgroup.name,
            owner=self.owner,
            task_id=task.task_id,
            image=task.image,
            language=task.spec.language,
            started=time.time() - PUBLISH_AFTER,
            init_pid=container.init_pid,
            uid=job.uid,
            gid=job.gid,
            capabilities=job.capabilities,
            last_cap=job.last_cap,
            rlimits=job.rlimits,
            seccomp_profile=job.seccomp_profile if container.plan.seccomp else None,
            env=job.env,
            workdir=job.workdir,
            cpu_base_ns=cgroup.cpu_base_ns(),
            host_uid_base=container.root_owner,
            limits=task.plan.limits.model_dump(mode="json"),
        )
        try:
            jobs.write(self.settings.run_dir, record)
            task.published = True
        except OSError as exc:  # operators lose sight of it; the job itself is fine
            log.warning("cannot publish job %s: %s", task.id, exc)

    def _result(
        self,
        job: Container,
        streams: list[Stream | None],  # stdout (None: not captured), stderr
        lim: Limits,
        outputs: tuple[dict[str, bytes], dict[str, str]],
        killed: bool,
    ) -> JobResult:
        cgroup = job.cgroup
        if job.kill_reason == "setup":
            raise SetupError(
                f"container setup took longer than {self.settings.setup_timeout:g} s", step="setup"
            )
        job.raise_setup_error()
        if job.exit is None and job.kill_reason is None:
            raise SetupError(f"container ended without a result (events: {job.events})")
        stats = cgroup.stats()
        exit_code = job.exit.get("exit_code") if job.exit else None
        sig = job.exit.get("signal") if job.exit else signal.SIGKILL
        cpu_time = stats.cpu_ns / 1e9
        started = job.started.result() if job.started.done() else 0
        ended = job.ended_ns or time.monotonic_ns()
        wall_time = (ended - started) / 1e9 if started else 0.0
        return JobResult(
            status=verdict.decide_status(
                operator_kill=killed,
                kill_reason=job.kill_reason,
                oom_kills=stats.oom_kills,
                exit_code=exit_code,
                cpu_time=cpu_time,
                cpu_time_limit=lim.cpu_time,
            ),
            stdout=streams[0].data.decode(errors="replace") if streams[0] else "",
            stderr=streams[1].data.decode(errors="replace") if streams[1] else "",
            exit_code=exit_code,
            signal=sig,
            oom_killed=stats.oom_kills > 0,
            timed_out=verdict.time_limit_hit(
                kill_reason=job.kill_reason, cpu_time=cpu_time, cpu_time_limit=lim.cpu_time
            ),
            pids_limit_hit=stats.pids_limit_hits > 0,
            output_truncated=any(s.truncated for s in streams if s),
            wall_time=round(wall_time, 6),
            cpu_time=round(cpu_time, 6),
            memory_peak=stats.memory_peak,
            files={name: File.of(data) for name, data in outputs[0].items()},
            files_skipped=outputs[1],
        )


@dataclass
class _Job:
    """One job on its way through :meth:`Runtime._run`."""

    id: str  # <owner>-<n>: unique on this host, unlike its recycled cgroup's name
    spec: JobSpec
    plan: Plan
    image: str
    task_id: str | None
    stdio: tuple[int, int] | None = None  # its own stdin and stdout (execute's stdio)
    published: bool = False  # its record is written (after PUBLISH_AFTER)


def _pinnable(cpu_list: str) -> tuple[int, ...]:
    """The CPUs of ``cpu_list`` (SANDBOX_PIN_CPUS), all of which we may run on.

    Raises:
        UnsupportedError: a CPU this process may not use.
    """
    cpus = parse_cpu_list(cpu_list)
    usable = os.sched_getaffinity(0)
    foreign = [c for c in cpus if c not in usable]
    if foreign:
        raise UnsupportedError(
            f"SANDBOX_PIN_CPUS names CPU {foreign[0]}, which this host does not let us use",
            hint=f"choose among {sorted(usable)}",
        )
    return cpus


def _seccomp_filter(profile: str) -> bytes:
    """The compiled BPF of a profile (once per process).

    Raises:
        SeccompError: libseccomp is missing or refused a rule.
    """
    try:
        return seccomp.compiled(profile)
    except (seccomp.SeccompUnavailable, OSError) as exc:
        raise SeccompError(f"seccomp: {exc}", step="seccomp") from exc
