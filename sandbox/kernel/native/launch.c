/*
 * sandbox-launch: the child side of every container, in C.
 *
 * The supervisor (sandbox/runtime/runner.py, asyncio) starts one launcher per runtime
 * and asks it for containers over a SOCK_SEQPACKET control socket (argv[1]).
 * The launcher is single-threaded and small, so forking it per container
 * costs a few pages, not the 15 MB address space of a Python interpreter
 * (docs/adr/0008-native-launcher.md). It carries out a plan built by the pure
 * Python function sandbox.plan.build_plan and makes no policy of its own.
 *
 * Processes (the same shape as runc init or bubblewrap):
 *
 *   L  launcher   loop: "prepare" + fds -> fork C, send "spawned" + pidfd(C);
 *                 reap; close a container's job socket only once C is reaped,
 *                 so EOF on it means every process of the container is gone.
 *   H  holder     (short-lived) becomes the container's own host uid, sets the
 *                 ceilings of its per-user kernel counters (rlimits), unshares
 *                 the user namespace: the namespace is owned by that uid, not
 *                 by root, so what the job takes is charged to it alone.
 *   C  container  host root: mount namespace, overlay root on a tmpfs, binds,
 *                 /dev; joins the user namespace; writes its counter ceilings
 *                 (/proc/sys/user); unshares mnt, pid, ipc, uts, net; forks I.
 *   N  netstack   (network=true only) forked by C while host root: joins the
 *                 job's cgroup, execs pasta as the container's uid on I's
 *                 namespaces (sandbox/kernel/egress.py); C kills it when I is gone.
 *   I  init       pid 1: /proc, hostname, lo, pivot_root; forks J; becomes its
 *                 own uid; reaps; reports the job's exit; waits for "release".
 *   J  job        joins the cgroup; unshares the cgroup namespace; (with N:
 *                 waits for the default route); "ready";
 *                 waits for "run" + fds; files; session, stdio, rlimits, caps,
 *                 no_new_privs, seccomp (BPF compiled by the supervisor), execve.
 *
 * Plans arrive in memfds as NUL-terminated tokens (plan.py: to_wire), so any
 * argv or environment byte but NUL passes unescaped. Events go back as small
 * JSON objects, one per SEQPACKET message, as the Python side reads them
 * (sandbox/runtime/container.py). Every failing step reports {"event": "error",
 * "step", "message", "errno", "path"} and the process exits.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/sendfile.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <grp.h>
#include <linux/capability.h>

#define MAX_FDS 32
#define MAX_ITEMS 256
#define JOB_FDS 4 /* job plan (plan, seccomp, code, files), stdin, stdout, stderr */

static char *title_area;
static size_t title_size;

/* ---- events --------------------------------------------------------------- */

static void json_str(char *out, size_t cap, const char *s) {
    size_t n = 0;
    if (cap < 3) return;
    out[n++] = '"';
    for (; s && *s && n + 8 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            out[n++] = '\\';
            out[n++] = (char)c;
        } else if (c < 0x20) {
            n += (size_t)snprintf(out + n, cap - n, "\\u%04x", c);
        } else {
            out[n++] = (char)c;
        }
    }
    out[n++] = '"';
    out[n] = 0;
}

/* One message with up to 8 descriptors (SCM_RIGHTS). */
static void send_msg_fds(int sock, const char *msg, const int *fds, int n) {
    struct iovec iov = {.iov_base = (void *)msg, .iov_len = strlen(msg)};
    union {
        char buf[CMSG_SPACE(8 * sizeof(int))];
        struct cmsghdr align;
    } u;
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    if (n > 0 && n <= 8) {
        mh.msg_control = u.buf;
        mh.msg_controllen = CMSG_SPACE((size_t)n * sizeof(int));
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN((size_t)n * sizeof(int));
        memcpy(CMSG_DATA(c), fds, (size_t)n * sizeof(int));
    }
    while (sendmsg(sock, &mh, MSG_NOSIGNAL) < 0 && errno == EINTR) {
    }
}

static void send_msg(int sock, const char *msg, int fd) { send_msg_fds(sock, msg, &fd, fd >= 0); }

static void event(int sock, const char *fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    send_msg(sock, buf, -1);
}

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int job_sock = -1;
static const char *step = "setup";
static int fail_status = 1; /* J's is 127, as a shell's for a command that never ran */

/* Report the failed step with errno and path, then exit. */
static void __attribute__((noreturn)) fail(const char *path, const char *what) {
    int err = errno;
    char message[1024], msg_json[1200], path_json[1200], buf[2600];
    snprintf(message, sizeof(message), "%s: %s%s%s%s%s", step, what, err ? ": " : "",
             err ? strerror(err) : "", path ? ": " : "", path ? path : "");
    json_str(msg_json, sizeof(msg_json), message);
    if (path)
        json_str(path_json, sizeof(path_json), path);
    else
        strcpy(path_json, "null");
    snprintf(buf, sizeof(buf),
             "{\"event\": \"error\", \"step\": \"%s\", \"message\": %s, \"errno\": %d, \"path\": %s}",
             step, msg_json, err, path_json);
    if (job_sock >= 0) send_msg(job_sock, buf, -1);
    _exit(fail_status);
}

#define CHECK(expr, path, what)                \
    do {                                       \
        if ((expr) < 0) fail((path), (what));  \
    } while (0)

static void set_title(const char *title) {
    prctl(PR_SET_NAME, (unsigned long)title, 0, 0, 0);
    if (title_area && title_size > 0) {
        memset(title_area, 0, title_size);
        strncpy(title_area, title, title_size - 1);
    }
}

/* ---- plans ---------------------------------------------------------------- */

struct reader {
    char *p, *end;
};

static char *token(struct reader *r) {
    if (r->p >= r->end) return NULL;
    char *t = r->p;
    char *z = memchr(t, 0, (size_t)(r->end - t));
    if (!z) return NULL;
    r->p = z + 1;
    return t;
}

static char *need(struct reader *r) {
    char *t = token(r);
    if (!t) {
        errno = EINVAL;
        fail(NULL, "truncated plan");
    }
    return t;
}

static long long num(struct reader *r) {
    char *t = need(r), *end;
    errno = 0;
    long long v = strtoll(t, &end, 10);
    if (errno || *end) {
        errno = EINVAL;
        fail(t, "bad number in plan");
    }
    return v;
}

static char *opt(char *s) { return *s ? s : NULL; }

struct mount_op {
    char *op, *target, *source, *fstype, *data;
    unsigned long flags;
    mode_t mode;
    int readonly;
};

struct container_plan {
    long long userns_base, userns_size;
    int namespaces, loopback;
    int shared_net; /* a loopback-only network namespace owned by the host, kept across jobs */
    int netns_given; /* the supervisor hands one (the first fd after the plan): join it */
    long long init_uid;
    char *hostname, *base;
    char *lowers[16];
    int n_lowers;
    long long disk_bytes, disk_inodes;
    int rlimit_res[16];
    long long rlimit_val[16];
    int n_rlimits;
    char *sysctl_name[32], *sysctl_value[32];
    int n_sysctls;
    struct mount_op mounts[MAX_ITEMS], proc[MAX_ITEMS / 4];
    int n_mounts, n_proc;
    char *netstack[MAX_ITEMS / 4 + 8]; /* a user-mode network stack's argv (pasta), or none */
    int n_netstack;
};

struct job_plan {
    char *workdir, *source;
    long long uid, gid, last_cap;
    unsigned long long caps;
    int rlimit_res[16];
    long long rlimit_soft[16], rlimit_hard[16];
    int n_rlimits;
    char *file_name[MAX_ITEMS];
    long long file_size[MAX_ITEMS];
    int file_exec[MAX_ITEMS];
    int n_files;
    char **argv, **env; /* NULL-terminated; as many as the plan has (execve bounds them) */
    int n_argv, n_env;
    long long seccomp_size, code_size;
    long long blob; /* offset of the seccomp program, then code, then files */
};

static char *map_fd(int fd, size_t *size) {
    struct stat st;
    CHECK(fstat(fd, &st), NULL, "fstat plan");
    *size = (size_t)st.st_size;
    if (*size == 0) {
        errno = EINVAL;
        fail(NULL, "empty plan");
    }
    char *p = mmap(NULL, *size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) fail(NULL, "mmap plan");
    return p;
}

static void read_mount(struct reader *r, struct mount_op *m) {
    m->op = need(r);
    m->target = need(r);
    m->source = opt(need(r));
    m->fstype = opt(need(r));
    m->flags = (unsigned long)num(r);
    m->data = opt(need(r));
    m->mode = (mode_t)num(r);
    m->readonly = (int)num(r);
}

static void parse_container(struct reader *r, struct container_plan *c) {
    memset(c, 0, sizeof(*c));
    c->userns_base = -1;
    for (char *k; (k = need(r)) && strcmp(k, "end") != 0;) {
        if (!strcmp(k, "userns")) {
            c->userns_base = num(r);
            c->userns_size = num(r);
        } else if (!strcmp(k, "ns")) {
            c->namespaces = (int)num(r);
        } else if (!strcmp(k, "hostname")) {
            c->hostname = need(r);
        } else if (!strcmp(k, "loopback")) {
            c->loopback = (int)num(r);
        } else if (!strcmp(k, "sharednet")) {
            c->shared_net = (int)num(r);
        } else if (!strcmp(k, "netns")) {
            c->netns_given = 1;
        } else if (!strcmp(k, "init_uid")) {
            c->init_uid = num(r);
        } else if (!strcmp(k, "base")) {
            c->base = need(r);
        } else if (!strcmp(k, "lower") && c->n_lowers < 16) {
            c->lowers[c->n_lowers++] = need(r);
        } else if (!strcmp(k, "disk")) {
            c->disk_bytes = num(r);
            c->disk_inodes = num(r);
        } else if (!strcmp(k, "ceiling") && c->n_rlimits < 16) {
            c->rlimit_res[c->n_rlimits] = (int)num(r);
            c->rlimit_val[c->n_rlimits++] = num(r);
        } else if (!strcmp(k, "sysctl") && c->n_sysctls < 32) {
            c->sysctl_name[c->n_sysctls] = need(r);
            c->sysctl_value[c->n_sysctls++] = need(r);
        } else if (!strcmp(k, "mount") && c->n_mounts < MAX_ITEMS) {
            read_mount(r, &c->mounts[c->n_mounts++]);
        } else if (!strcmp(k, "proc") && c->n_proc < MAX_ITEMS / 4) {
            read_mount(r, &c->proc[c->n_proc++]);
        } else if (!strcmp(k, "netstack") && c->n_netstack < MAX_ITEMS / 4) {
            c->netstack[c->n_netstack++] = need(r);
        } else {
            errno = EINVAL;
            fail(k, "unknown plan key");
        }
    }
    if (!c->base || !c->hostname || c->n_lowers == 0) {
        errno = EINVAL;
        fail(NULL, "incomplete container plan");
    }
}

/* Add `item` to a NULL-terminated array that grows by doubling. */
static char **append(char **array, int *n, char *item) {
    if ((*n & (*n + 1)) == 0 || *n == 0) { /* n+1 is a power of two: room for twice */
        array = realloc(array, sizeof(char *) * (size_t)(2 * (*n + 1) + 1));
        if (!array) fail(NULL, "realloc");
    }
    array[(*n)++] = item;
    array[*n] = NULL;
    return array;
}

static void parse_job(struct reader *r, struct job_plan *j, char *start) {
    memset(j, 0, sizeof(*j));
    for (char *k; (k = need(r)) && strcmp(k, "end") != 0;) {
        if (!strcmp(k, "workdir")) {
            j->workdir = need(r);
        } else if (!strcmp(k, "source")) {
            j->source = need(r);
        } else if (!strcmp(k, "uid")) {
            j->uid = num(r);
        } else if (!strcmp(k, "gid")) {
            j->gid = num(r);
        } else if (!strcmp(k, "caps")) {
            j->caps = (unsigned long long)num(r);
        } else if (!strcmp(k, "last_cap")) {
            j->last_cap = num(r);
        } else if (!strcmp(k, "rlimit") && j->n_rlimits < 16) {
            j->rlimit_res[j->n_rlimits] = (int)num(r);
            j->rlimit_soft[j->n_rlimits] = num(r);
            j->rlimit_hard[j->n_rlimits++] = num(r);
        } else if (!strcmp(k, "file") && j->n_files < MAX_ITEMS) {
            j->file_name[j->n_files] = need(r);
            j->file_size[j->n_files] = num(r);
            j->file_exec[j->n_files++] = (int)num(r);
        } else if (!strcmp(k, "argv")) {
            j->argv = append(j->argv, &j->n_argv, need(r));
        } else if (!strcmp(k, "env")) {
            j->env = append(j->env, &j->n_env, need(r));
        } else if (!strcmp(k, "seccomp")) {
            j->seccomp_size = num(r);
        } else if (!strcmp(k, "code")) {
            j->code_size = num(r);
        } else {
            errno = EINVAL;
            fail(k, "unknown plan key");
        }
    }
    j->blob = r->p - start;
    if (!j->workdir || !j->source || j->n_argv == 0) {
        errno = EINVAL;
        fail(NULL, "incomplete job plan");
    }
}

/* ---- mechanism ------------------------------------------------------------ */

static void write_file(const char *path, const char *data) {
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    CHECK(fd, path, "open");
    size_t len = strlen(data);
    if (write(fd, data, len) != (ssize_t)len) fail(path, "write");
    close(fd);
}

static void die_with_parent(pid_t expected_parent) {
    CHECK(prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0), NULL, "prctl(PR_SET_PDEATHSIG)");
    if (expected_parent && getppid() != expected_parent) _exit(1);
}

/* H: a process that becomes uid `owner`, sets the ceilings its user namespace
 * inherits, and unshares it; the caller (host root) writes the maps. The
 * namespace then belongs to `owner`: the kernel charges every per-user
 * counter a job raises inside it (ucounts) to `owner` in the initial
 * namespace, never to root. Returns an fd of the namespace. */
static int new_user_namespace(struct container_plan *c) {
    int ready[2], hold[2];
    CHECK(pipe2(ready, O_CLOEXEC), NULL, "pipe");
    CHECK(pipe2(hold, O_CLOEXEC), NULL, "pipe");
    pid_t pid = fork();
    CHECK(pid, NULL, "fork");
    uid_t owner = (uid_t)c->userns_base;
    if (pid == 0) {
        int err = 0;
        close(ready[0]);
        close(hold[1]);
        for (int i = 0; i < c->n_rlimits && !err; i++) {
            rlim_t v = c->rlimit_val[i] < 0 ? RLIM_INFINITY : (rlim_t)c->rlimit_val[i];
            struct rlimit rl = {v, v};
            if (setrlimit(c->rlimit_res[i], &rl) < 0) err = errno;
        }
        if (!err && (setgroups(0, NULL) < 0 || setresgid(owner, owner, owner) < 0 ||
                     setresuid(owner, owner, owner) < 0))
            err = errno;
        if (!err && unshare(CLONE_NEWUSER) < 0) err = errno;
        (void)!write(ready[1], &err, sizeof(err));
        char b;
        (void)!read(hold[0], &b, 1);
        _exit(err ? 1 : 0);
    }
    close(ready[1]);
    close(hold[0]);
    int err = 0;
    if (read(ready[0], &err, sizeof(err)) != sizeof(err)) err = EIO;
    close(ready[0]);
    int fd = -1;
    if (err == 0) {
        char path[64], map[96];
        snprintf(map, sizeof(map), "0 %lld %lld\n", c->userns_base, c->userns_size);
        snprintf(path, sizeof(path), "/proc/%d/uid_map", pid);
        write_file(path, map);
        snprintf(path, sizeof(path), "/proc/%d/gid_map", pid);
        write_file(path, map);
        snprintf(path, sizeof(path), "/proc/%d/ns/user", pid);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) err = errno;
    }
    close(hold[1]);
    waitpid(pid, NULL, 0);
    if (err) {
        errno = err;
        fail(NULL, "unshare(CLONE_NEWUSER) as the container's own uid");
    }
    return fd;
}

static void mount_checked(const char *src, const char *target, const char *fstype,
                          unsigned long flags, const char *data) {
    if (mount(src, target, fstype, flags, data) < 0) {
        char what[256];
        snprintf(what, sizeof(what), "mount %s %s on %s", fstype ? fstype : "bind",
                 src ? src : "", target);
        fail(target, what);
    }
}

static void mkdir_owned(const char *path, mode_t mode, uid_t owner) {
    if (mkdir(path, mode) < 0 && errno != EEXIST) fail(path, "mkdir");
    CHECK(chmod(path, mode), path, "chmod");
    if (owner) CHECK(chown(path, owner, owner), path, "chown");
}

static void makedirs(char *path, mode_t mode, uid_t owner) {
    if (mkdir(path, mode) < 0 && errno == ENOENT) { /* parents first, rarely needed */
        for (char *s = path + 1; *s; s++) {
            if (*s != '/') continue;
            *s = 0;
            if (mkdir(path, 0755) < 0 && errno != EEXIST) fail(path, "mkdir");
            *s = '/';
        }
    }
    mkdir_owned(path, mode, owner);
}

/* mount_base: a tmpfs of limits.disk, the image bound in as lower0.., the
 * overlay at root/ (relative option names: mountinfo shows no host path). */
static void mount_overlay(struct container_plan *c, uid_t owner, char *root, size_t cap) {
    char path[4096], data[4096];
    mount_checked(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL);
    snprintf(data, sizeof(data), "size=%lld,nr_inodes=%lld,mode=0755", c->disk_bytes,
             c->disk_inodes);
    mount_checked("tmpfs", c->base, "tmpfs", MS_NOSUID | MS_NODEV, data);
    const char *dirs[] = {"upper", "work", "root"};
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof(path), "%s/%s", c->base, dirs[i]);
        CHECK(mkdir(path, 0755), path, "mkdir");
    }
    snprintf(path, sizeof(path), "%s/shm", c->base);
    CHECK(mkdir(path, 01777), path, "mkdir");
    CHECK(chmod(path, 01777), path, "chmod");
    if (owner) {
        CHECK(chown(path, owner, owner), path, "chown");
        snprintf(path, sizeof(path), "%s/upper", c->base);
        CHECK(chown(path, owner, owner), path, "chown");
    }
    size_t n = (size_t)snprintf(data, sizeof(data), "lowerdir=");
    for (int i = 0; i < c->n_lowers; i++) {
        snprintf(path, sizeof(path), "%s/lower%d", c->base, i);
        CHECK(mkdir(path, 0755), path, "mkdir");
        mount_checked(c->lowers[i], path, NULL, MS_BIND, NULL);
        n += (size_t)snprintf(data + n, sizeof(data) - n, "%slower%d", i ? ":" : "", i);
    }
    snprintf(data + n, sizeof(data) - n, ",upperdir=upper,workdir=work");
    snprintf(root, cap, "%s/root", c->base);
    int cwd = open(".", O_PATH | O_CLOEXEC);
    CHECK(chdir(c->base), c->base, "chdir");
    mount_checked("overlay", root, "overlay", MS_NOSUID | MS_NODEV, data);
    if (cwd >= 0) {
        (void)!fchdir(cwd);
        close(cwd);
    }
}

static int exists(const char *path) {
    struct stat st;
    return lstat(path, &st) == 0;
}

static int is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* The plan's mount steps (plan.py MountOp), in order, under root. */
static void apply_mounts(const char *root, struct mount_op *ops, int n, uid_t owner) {
    char target[4096], data[4096];
    for (int i = 0; i < n; i++) {
        struct mount_op *m = &ops[i];
        snprintf(target, sizeof(target), "%s%s", root, m->target);
        if (!strcmp(m->op, "mkdir")) {
            makedirs(target, m->mode, owner);
        } else if (!strcmp(m->op, "mountpoint")) {
            /* An image's own directory is left as it is: a chmod or chown
             * would copy it up into the overlay's upper layer, for a
             * directory the mount on it hides anyway. */
            struct stat st;
            if (lstat(target, &st) < 0) {
                makedirs(target, m->mode, owner);
            } else if (!S_ISDIR(st.st_mode)) {
                errno = ENOTDIR;
                fail(target, "mount point");
            }
        } else if (!strcmp(m->op, "file")) {
            int fd = open(target, O_CREAT | O_WRONLY | O_CLOEXEC, m->mode);
            CHECK(fd, target, "create");
            close(fd);
        } else if (!strcmp(m->op, "symlink")) {
            CHECK(symlink(m->source, target), target, "symlink");
            if (owner) CHECK(lchown(target, owner, owner), target, "lchown");
        } else if (!strcmp(m->op, "bind")) {
            mount_checked(m->source, target, NULL, MS_BIND | MS_REC, NULL);
            unsigned long flags = m->flags | (m->readonly ? MS_RDONLY : 0);
            /* Bind flags only take effect on a remount of the bind. */
            if (flags) mount_checked(NULL, target, NULL, MS_BIND | MS_REMOUNT | flags, NULL);
        } else if (!strcmp(m->op, "rebind")) {
            if (!exists(target)) continue; /* this kernel has no such file */
            mount_checked(target, target, NULL, MS_BIND | MS_REC, NULL);
            mount_checked(NULL, target, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | m->flags, NULL);
        } else if (!strcmp(m->op, "mask")) {
            if (is_dir(target)) {
                mount_checked("tmpfs", target, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV, "size=0");
            } else if (exists(target)) {
                /* /dev/null over a file reads empty; read-only, nosuid, noexec:
                 * every mount the job can see is nosuid (tests/security). */
                mount_checked("/dev/null", target, NULL, MS_BIND, NULL);
                mount_checked(NULL, target, NULL,
                              MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NOEXEC, NULL);
            }
        } else if (!strcmp(m->op, "mount")) {
            const char *d = m->data;
            if (owner && m->fstype && !strcmp(m->fstype, "tmpfs")) {
                snprintf(data, sizeof(data), "%s%suid=%u,gid=%u", d ? d : "", d ? "," : "",
                         owner, owner);
                d = data;
            }
            mount_checked(m->source, target, m->fstype, m->flags, d);
        } else {
            errno = EINVAL;
            fail(m->op, "unknown mount step");
        }
    }
}

static void bring_up_loopback(void) {
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    CHECK(s, NULL, "socket");
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    strcpy(ifr.ifr_name, "lo");
    CHECK(ioctl(s, SIOCGIFFLAGS, &ifr), NULL, "SIOCGIFFLAGS lo");
    ifr.ifr_flags |= IFF_UP;
    CHECK(ioctl(s, SIOCSIFFLAGS, &ifr), NULL, "SIOCSIFFLAGS lo");
    close(s);
}

/* Every disposition to its default, every signal unblocked: what a job
 * starts with. The launcher does this once; its children only undo what the
 * launcher itself changed (SIGINT ignored, SIGCHLD blocked). */
static void reset_signals(int all) {
    for (int sig = all ? 1 : SIGINT; sig < (all ? NSIG : SIGINT + 1); sig++) signal(sig, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
}

static void copy_range(int src, int dst, long long offset, long long size, const char *path) {
    off_t off = (off_t)offset;
    long long left = size;
    while (left > 0) {
        ssize_t sent = sendfile(dst, src, &off, (size_t)left);
        if (sent < 0 && errno == EINTR) continue;
        if (sent <= 0) {
            if (sent == 0) errno = EIO;
            fail(path, "copy");
        }
        left -= sent;
    }
}

static void drop_capabilities(struct job_plan *j) {
    step = "capabilities";
    for (int cap = 0; cap <= j->last_cap; cap++)
        if (!(j->caps & (1ULL << cap)))
            CHECK(prctl(PR_CAPBSET_DROP, cap, 0, 0, 0), NULL, "prctl(PR_CAPBSET_DROP)");
    CHECK(setgroups(0, NULL), NULL, "setgroups");
    CHECK(setresgid((gid_t)j->gid, (gid_t)j->gid, (gid_t)j->gid), NULL, "setresgid");
    CHECK(setresuid((uid_t)j->uid, (uid_t)j->uid, (uid_t)j->uid), NULL, "setresuid");
    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof(data));
    for (int i = 0; i < 2; i++) {
        data[i].effective = data[i].permitted = (uint32_t)(j->caps >> (32 * i));
        data[i].inheritable = 0; /* as runc since CVE-2022-24769 */
    }
    CHECK(syscall(SYS_capset, &hdr, data), NULL, "capset");
    CHECK(prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0), NULL, "prctl(PR_CAP_AMBIENT)");
    CHECK(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), NULL, "prctl(PR_SET_NO_NEW_PRIVS)");
}

static int recv_fds(int sock, char *buf, size_t cap, int *fds, int max_fds, int *n_fds) {
    union {
        char b[CMSG_SPACE(sizeof(int) * MAX_FDS)];
        struct cmsghdr align;
    } u;
    struct iovec iov = {.iov_base = buf, .iov_len = cap - 1};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.b,
                        .msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)max_fds)};
    ssize_t n;
    while ((n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR) {
    }
    *n_fds = 0;
    if (n < 0) return -1;
    buf[n] = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        int k = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        for (int i = 0; i < k; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
            if (*n_fds < max_fds)
                fds[(*n_fds)++] = fd;
            else
                close(fd);
        }
    }
    return (int)n;
}

/* ---- J: the job's process --------------------------------------------------- */

/* With a network stack: wait until it has given the namespace its default
 * route (the interface, its address and route are its last steps), so that
 * the job's first connect finds a network. */
static void wait_for_route(void) {
    step = "network";
    for (int i = 0; i < 10000; i++) { /* 10 s at 1 ms */
        FILE *f = fopen("/proc/net/route", "re");
        if (!f) fail("/proc/net/route", "open");
        char line[256];
        int found = 0;
        while (fgets(line, sizeof(line), f)) {
            char dev[32];
            unsigned long dest;
            if (sscanf(line, "%31s %lx", dev, &dest) == 2 && dest == 0) found = 1;
        }
        fclose(f);
        if (found) return;
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
    }
    errno = ETIMEDOUT;
    fail(NULL, "the network stack gave no route");
}

static int egress; /* the container has a network stack (pasta) */

static void __attribute__((noreturn)) job_process(int *cgroup_fds, int n_cgroup) {
    fail_status = 127;
    step = "cgroup";
    for (int i = 0; i < n_cgroup; i++) {
        if (write(cgroup_fds[i], "0", 1) != 1) fail(NULL, "join cgroup");
        close(cgroup_fds[i]);
    }
    step = "unshare";
    CHECK(unshare(CLONE_NEWCGROUP), NULL, "unshare(CLONE_NEWCGROUP)");
    if (egress) wait_for_route();
    event(job_sock, "{\"event\": \"ready\"}");

    char msg[64];
    int fds[JOB_FDS], n_fds;
    int n = recv_fds(job_sock, msg, sizeof(msg), fds, JOB_FDS, &n_fds);
    if (n <= 0 || strcmp(msg, "run") != 0 || n_fds != JOB_FDS) _exit(0); /* not needed */
    int plan_fd = fds[0], in = fds[1], out = fds[2], err = fds[3];

    step = "plan";
    size_t size;
    char *raw = map_fd(plan_fd, &size);
    struct reader r = {raw, raw + size};
    static struct job_plan j;
    parse_job(&r, &j, raw);
    long long seccomp_at = j.blob, code_at = seccomp_at + j.seccomp_size;
    long long files_at = code_at + j.code_size;
    long long total = files_at;
    for (int i = 0; i < j.n_files; i++) total += j.file_size[i];
    if (total > (long long)size || j.seccomp_size % (long long)sizeof(struct sock_filter)) {
        errno = EINVAL;
        fail(NULL, "plan sizes do not match its contents");
    }

    step = "workdir";
    char path[4096];
    snprintf(path, sizeof(path), "%s", j.workdir);
    makedirs(path, 0755, 0);
    CHECK(chown(j.workdir, (uid_t)j.uid, (gid_t)j.gid), j.workdir, "chown");
    int src = open(j.source, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    CHECK(src, j.source, "open");
    copy_range(plan_fd, src, code_at, j.code_size, j.source);
    CHECK(fchown(src, (uid_t)j.uid, (gid_t)j.gid), j.source, "fchown");
    close(src);
    step = "files";
    long long offset = files_at;
    for (int i = 0; i < j.n_files; i++) {
        if ((size_t)snprintf(path, sizeof(path), "%s/%s", j.workdir, j.file_name[i]) >= sizeof(path)) {
            errno = ENAMETOOLONG;
            fail(j.file_name[i], "file name");
        }
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                      j.file_exec[i] ? 0755 : 0644);
        CHECK(fd, path, "open");
        copy_range(plan_fd, fd, offset, j.file_size[i], path);
        CHECK(fchown(fd, (uid_t)j.uid, (gid_t)j.gid), path, "fchown");
        close(fd);
        offset += j.file_size[i];
    }

    step = "session";
    CHECK(setsid(), NULL, "setsid");
    step = "stdio";
    CHECK(dup2(in, 0), NULL, "dup2");
    CHECK(dup2(out, 1), NULL, "dup2");
    CHECK(dup2(err, 2), NULL, "dup2");
    /* The job socket moves to fd 3, closed by execve: the job never holds it. */
    if (job_sock != 3) {
        CHECK(dup3(job_sock, 3, O_CLOEXEC), NULL, "dup3");
        job_sock = 3;
    }
    /* The plan stays mapped (argv, env and the filter live there); its fd goes. */
    syscall(SYS_close_range, 4U, ~0U, 0U);
    step = "workdir";
    CHECK(chdir(j.workdir), j.workdir, "chdir");
    step = "rlimits";
    for (int i = 0; i < j.n_rlimits; i++) {
        struct rlimit rl = {
            j.rlimit_soft[i] < 0 ? RLIM_INFINITY : (rlim_t)j.rlimit_soft[i],
            j.rlimit_hard[i] < 0 ? RLIM_INFINITY : (rlim_t)j.rlimit_hard[i],
        };
        CHECK(setrlimit(j.rlimit_res[i], &rl), NULL, "setrlimit");
    }
    drop_capabilities(&j);
    if (j.seccomp_size > 0) {
        step = "seccomp";
        struct sock_filter *filter = malloc((size_t)j.seccomp_size); /* aligned */
        if (!filter) fail(NULL, "malloc");
        memcpy(filter, raw + seccomp_at, (size_t)j.seccomp_size);
        struct sock_fprog prog = {
            .len = (unsigned short)(j.seccomp_size / (long long)sizeof(struct sock_filter)),
            .filter = filter,
        };
        /* Last: from here on, only what the job may do. */
        CHECK(syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog), NULL, "seccomp");
    }
    step = "execve";
    static char *no_env[] = {NULL};
    if (!j.env) j.env = no_env;
    event(job_sock, "{\"event\": \"started\", \"t\": %lld}", now_ns());
    execve(j.argv[0], j.argv, j.env);
    fail(j.argv[0], "execve");
}

/* ---- I: pid 1 of the container ---------------------------------------------- */

static void __attribute__((noreturn)) container_init(struct container_plan *c, int lifeline,
                                                     int *cgroup_fds, int n_cgroup) {
    CHECK(prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0), NULL, "prctl(PR_SET_PDEATHSIG)");
    /* The parent may have died between fork and prctl: the lifeline's write
     * end is only the parent's, EOF says it is gone (getppid is 0 here). */
    char b;
    int fl = fcntl(lifeline, F_GETFL);
    fcntl(lifeline, F_SETFL, fl | O_NONBLOCK);
    if (read(lifeline, &b, 1) == 0) _exit(1);
    close(lifeline);
    set_title("sandbox-init"); /* what the job sees as pid 1, not a host path */
    char root[4096];
    snprintf(root, sizeof(root), "%s/root", c->base);
    if (c->userns_base >= 0) {
        /* A locked mount cannot be pivot_root's new root; a bind made here is not locked. */
        step = "rootfs";
        mount_checked(root, root, NULL, MS_BIND | MS_REC, NULL);
    }
    step = "mount";
    apply_mounts(root, c->proc, c->n_proc, 0);
    step = "hostname";
    CHECK(sethostname(c->hostname, strlen(c->hostname)), NULL, "sethostname");
    if (c->loopback) {
        step = "loopback";
        bring_up_loopback();
    }
    step = "pivot_root";
    CHECK(chdir(root), root, "chdir");
    CHECK(syscall(SYS_pivot_root, ".", "."), root, "pivot_root");
    CHECK(umount2(".", MNT_DETACH), root, "umount");
    CHECK(chdir("/"), "/", "chdir");

    pid_t pid = fork();
    CHECK(pid, NULL, "fork");
    if (pid == 0) job_process(cgroup_fds, n_cgroup);
    for (int i = 0; i < n_cgroup; i++) close(cgroup_fds[i]);
    /* Init needs no privilege to reap and report: a uid of its own, out of a
     * root job's reach (no prlimit, ptrace or oom_score_adj of its init). */
    step = "user";
    uid_t uid = (uid_t)c->init_uid;
    CHECK(setgroups(0, NULL), NULL, "setgroups");
    CHECK(setresgid(uid, uid, uid), NULL, "setresgid");
    CHECK(setresuid(uid, uid, uid), NULL, "setresuid");
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0); /* cleared by the uid change */
    prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);        /* keeps /proc/1 owned by uid */
    int status = 0;
    for (;;) { /* reap everything; stop when the job's main process is gone */
        pid_t reaped = waitpid(-1, &status, 0);
        if (reaped == pid) break;
        if (reaped < 0 && errno != EINTR) _exit(1);
    }
    long long ended = now_ns();
    if (WIFSIGNALED(status))
        event(job_sock, "{\"event\": \"exit\", \"signal\": %d, \"t\": %lld}", WTERMSIG(status),
              ended);
    else
        event(job_sock, "{\"event\": \"exit\", \"exit_code\": %d, \"t\": %lld}",
              WEXITSTATUS(status), ended);
    /* The supervisor may read the job's files through our root first: "release" or EOF. */
    char buf[16];
    while (recv(job_sock, buf, sizeof(buf), 0) < 0 && errno == EINTR) {
    }
    _exit(0); /* the kernel now kills whatever is left in the namespace */
}

/* ---- N: the network stack of a container with egress -------------------------- */

/* Forked by C while C is still host root in the host's network namespace:
 * waits for I's pid, joins the job's cgroup (what it uses is the job's, and
 * it dies with it), and execs the user-mode stack (pasta). The stack needs
 * /dev/net/tun, which hosts may keep root-only: a /dev of our own, in a mount
 * namespace of N's own, holds a node it can open after it drops to the
 * container's uid (--runas). Its sockets are opened in the host's network
 * namespace as that uid, and the host's firewall (sandbox/kernel/egress.py) filters
 * them by it; its tap device is in the job's. */
static void __attribute__((noreturn)) network_stack(struct container_plan *c, int ready,
                                                    int *cgroup_fds, int n_cgroup, uid_t owner) {
    step = "netstack";
    pid_t init = 0;
    if (read(ready, &init, sizeof(init)) != sizeof(init)) _exit(1); /* no init: no job */
    close(ready);
    for (int i = 0; i < n_cgroup; i++) {
        if (write(cgroup_fds[i], "0", 1) != 1) fail(NULL, "join cgroup");
        close(cgroup_fds[i]);
    }
    CHECK(unshare(CLONE_NEWNS), NULL, "unshare(CLONE_NEWNS)");
    mount_checked(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL);
    mount_checked("tmpfs", "/dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=755,size=64k");
    CHECK(mkdir("/dev/net", 0755), "/dev/net", "mkdir");
    umask(0);
    CHECK(mknod("/dev/net/tun", S_IFCHR | 0666, makedev(10, 200)), "/dev/net/tun", "mknod");
    CHECK(mknod("/dev/null", S_IFCHR | 0666, makedev(1, 3)), "/dev/null", "mknod");
    static char runas[64], userns[64], netns[64];
    snprintf(runas, sizeof(runas), "%u:%u", owner, owner);
    snprintf(userns, sizeof(userns), "/proc/%d/ns/user", init);
    snprintf(netns, sizeof(netns), "/proc/%d/ns/net", init);
    char *argv[MAX_ITEMS / 4 + 8];
    int n = 0;
    for (int i = 0; i < c->n_netstack; i++) argv[n++] = c->netstack[i];
    argv[n++] = "--runas";
    argv[n++] = runas;
    argv[n++] = "--userns";
    argv[n++] = userns;
    argv[n++] = "--netns";
    argv[n++] = netns;
    argv[n] = NULL;
    static char *no_env[] = {NULL};
    execve(argv[0], argv, no_env);
    fail(argv[0], "execve");
}

/* ---- the shared network namespace ---------------------------------------- */

/* Made by C as host root when the supervisor has none to hand: owned by the
 * host's user namespace, so nothing in the container can change it (no
 * address, route, firewall rule or sysctl: that needs CAP_NET_ADMIN over its
 * owner), only open sockets in it. C sends the supervisor the namespace and
 * its counter files, opened here (a /proc/net file is bound to the namespace
 * it was opened in): it keeps the namespace for a next container only while
 * they say no socket is left and no counter moved (sandbox/kernel/netns.py). */
static const char *const NET_FILES[] = {"sockstat", "sockstat6", "snmp", "snmp6", "netstat", "dev"};

static void new_shared_net(void) {
    CHECK(unshare(CLONE_NEWNET), NULL, "unshare(CLONE_NEWNET)");
    bring_up_loopback();
    int fds[8], n = 0;
    char names[128] = "ns", path[64];
    fds[n++] = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    CHECK(fds[0], "/proc/thread-self/ns/net", "open");
    for (size_t i = 0; i < sizeof(NET_FILES) / sizeof(*NET_FILES); i++) {
        snprintf(path, sizeof(path), "/proc/thread-self/net/%s", NET_FILES[i]);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0 && errno == ENOENT) continue; /* no IPv6 on this host */
        CHECK(fd, path, "open");
        fds[n++] = fd;
        strcat(names, " ");
        strcat(names, NET_FILES[i]);
    }
    char msg[256];
    snprintf(msg, sizeof(msg), "{\"event\": \"netns\", \"files\": \"%s\"}", names);
    send_msg_fds(job_sock, msg, fds, n);
    for (int i = 0; i < n; i++) close(fds[i]);
}

/* ---- C: the container's parent ---------------------------------------------- */

static void __attribute__((noreturn)) run_container(int plan_fd, int *cgroup_fds, int n_cgroup,
                                                    pid_t launcher) {
    die_with_parent(launcher);
    set_title("sandbox-container");
    step = "plan";
    size_t size;
    char *raw = map_fd(plan_fd, &size);
    close(plan_fd);
    struct reader r = {raw, raw + size};
    static struct container_plan c;
    parse_container(&r, &c);
    uid_t owner = c.userns_base >= 0 ? (uid_t)c.userns_base : 0;
    int netns = -1;
    if (c.netns_given) { /* the first descriptor after the plan */
        if (n_cgroup < 1) {
            errno = EINVAL;
            fail(NULL, "no network namespace with the plan");
        }
        netns = cgroup_fds[0];
        cgroup_fds++;
        n_cgroup--;
    }

    int userns = -1;
    if (c.userns_base >= 0) {
        step = "userns";
        userns = new_user_namespace(&c);
    }
    step = "unshare";
    CHECK(unshare(CLONE_NEWNS), NULL, "unshare(CLONE_NEWNS)");
    step = "rootfs";
    char root[4096];
    mount_overlay(&c, owner, root, sizeof(root));
    step = "mount";
    apply_mounts(root, c.mounts, c.n_mounts, owner);
    int net_ready = -1;
    pid_t netstack = 0;
    if (c.n_netstack > 0) {
        int p[2];
        CHECK(pipe2(p, O_CLOEXEC), NULL, "pipe");
        netstack = fork();
        CHECK(netstack, NULL, "fork");
        if (netstack == 0) {
            close(p[1]);
            network_stack(&c, p[0], cgroup_fds, n_cgroup, owner);
        }
        close(p[0]);
        net_ready = p[1];
        egress = 1;
    }
    if (c.shared_net) { /* while host root: the namespace's owner is the host's */
        step = "netns";
        if (netns >= 0) {
            CHECK(setns(netns, CLONE_NEWNET), NULL, "setns(CLONE_NEWNET)");
            close(netns);
        } else {
            new_shared_net();
        }
    }
    if (userns >= 0) {
        step = "userns";
        CHECK(setns(userns, CLONE_NEWUSER), NULL, "setns(CLONE_NEWUSER)");
        close(userns);
        CHECK(setgroups(0, NULL), NULL, "setgroups");
        CHECK(setresgid(0, 0, 0), NULL, "setresgid");
        CHECK(setresuid(0, 0, 0), NULL, "setresuid");
        die_with_parent(launcher); /* cleared by the uid change */
        /* Per-namespace ceilings of the counters the job can raise (inotify,
         * fanotify, namespaces): written as root of the new namespace, they
         * are its own; the host's per-user limits apply to the owner above. */
        step = "ucounts";
        char path[256];
        for (int i = 0; i < c.n_sysctls; i++) {
            snprintf(path, sizeof(path), "/proc/sys/user/%s", c.sysctl_name[i]);
            int fd = open(path, O_WRONLY | O_CLOEXEC);
            if (fd < 0 && errno == ENOENT) continue; /* an older kernel has no such counter */
            CHECK(fd, path, "open");
            size_t len = strlen(c.sysctl_value[i]);
            if (write(fd, c.sysctl_value[i], len) != (ssize_t)len) fail(path, "write");
            close(fd);
        }
    }
    step = "unshare";
    CHECK(unshare(c.namespaces), NULL, "unshare");
    int life[2];
    CHECK(pipe2(life, O_CLOEXEC), NULL, "pipe");
    pid_t pid = fork();
    CHECK(pid, NULL, "fork");
    if (pid == 0) {
        close(life[1]);
        container_init(&c, life[0], cgroup_fds, n_cgroup);
    }
    close(life[0]);
    for (int i = 0; i < n_cgroup; i++) close(cgroup_fds[i]);
    if (net_ready >= 0) { /* N may attach to I's namespaces now */
        if (write(net_ready, &pid, sizeof(pid)) != sizeof(pid)) fail(NULL, "netstack");
        close(net_ready);
    }
    /* A pidfd of I, opened while I is our unreaped child: the supervisor kills
     * the container through it; we reap I before we exit. */
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    char msg[64];
    snprintf(msg, sizeof(msg), "{\"event\": \"init\", \"pid\": %d}", pid);
    if (pidfd >= 0) {
        send_msg(job_sock, msg, pidfd);
        close(pidfd);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (netstack > 0) { /* the stack ends with the job (our uid now is its uid) */
        kill(netstack, SIGKILL);
        while (waitpid(netstack, NULL, 0) < 0 && errno == EINTR) {
        }
    }
    _exit(WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1);
}

/* ---- L: the launcher's loop --------------------------------------------------- */

struct child {
    pid_t pid;
    int job_fd;
};
static struct child *children;
static size_t n_children, cap_children;

static void reap(void) {
    for (;;) {
        pid_t pid = waitpid(-1, NULL, WNOHANG);
        if (pid <= 0) return;
        for (size_t i = 0; i < n_children; i++) {
            if (children[i].pid != pid) continue;
            close(children[i].job_fd); /* EOF for the supervisor: all is gone */
            children[i] = children[--n_children];
            break;
        }
    }
}

static void spawn(int control, int sfd, int *fds, int n_fds) {
    int job = fds[0];
    pid_t self = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        close(control);
        close(sfd);
        for (size_t i = 0; i < n_children; i++) close(children[i].job_fd);
        reset_signals(0);
        /* Not the supervisor's stdout and stderr: nothing of a container
         * writes there, and a root job that could read its init's fds finds
         * /dev/null. Errors go over the job socket. */
        int null = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (null >= 0) {
            dup2(null, 0);
            dup2(null, 1);
            dup2(null, 2);
            if (null > 2) close(null);
        }
        job_sock = job;
        run_container(fds[1], fds + 2, n_fds - 2, self);
    }
    for (int i = 1; i < n_fds; i++) close(fds[i]);
    if (pid < 0) {
        step = "fork";
        int err = errno;
        char buf[256];
        snprintf(buf, sizeof(buf),
                 "{\"event\": \"error\", \"step\": \"fork\", \"message\": \"fork: %s\", "
                 "\"errno\": %d, \"path\": null}",
                 strerror(err), err);
        send_msg(job, buf, -1);
        close(job);
        return;
    }
    if (n_children == cap_children) {
        cap_children = cap_children ? cap_children * 2 : 64;
        children = realloc(children, cap_children * sizeof(*children));
        if (!children) abort();
    }
    children[n_children++] = (struct child){pid, job};
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    char msg[64];
    snprintf(msg, sizeof(msg), "{\"event\": \"spawned\", \"pid\": %d}", pid);
    send_msg(job, msg, pidfd);
    if (pidfd >= 0) close(pidfd);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s CONTROL_FD (started by sandbox.runtime.runner)\n", argv[0]);
        return 2;
    }
    int control = atoi(argv[1]);
    title_area = argv[0];
    title_size = (size_t)(argv[argc - 1] + strlen(argv[argc - 1]) - argv[0]) + 1;
    set_title("sandbox-launch");
    umask(022); /* what the containers' directories and files get, whoever started us */
    prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); /* orphaned inits are ours to reap */
    reset_signals(1);
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, NULL);
    signal(SIGINT, SIG_IGN); /* terminal signals are the supervisor's to handle */
    int sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
    if (sfd < 0) {
        perror("signalfd");
        return 1;
    }
    fcntl(control, F_SETFD, FD_CLOEXEC);
    for (;;) {
        struct pollfd p[2] = {{control, POLLIN, 0}, {sfd, POLLIN, 0}};
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR) continue;
            break;
        }
        if (p[1].revents) {
            struct signalfd_siginfo si;
            while (read(sfd, &si, sizeof(si)) == sizeof(si)) {
            }
            reap();
        }
        if (!p[0].revents) continue;
        char msg[32];
        int fds[MAX_FDS], n_fds;
        int n = recv_fds(control, msg, sizeof(msg), fds, MAX_FDS, &n_fds);
        if (n <= 0) break; /* the supervisor is gone */
        if (strcmp(msg, "prepare") != 0 || n_fds < 2) {
            for (int i = 0; i < n_fds; i++) close(fds[i]);
            continue;
        }
        spawn(control, sfd, fds, n_fds);
    }
    /* Unreaped children: their pids are still theirs. Containers die with C
     * (PR_SET_PDEATHSIG), so a killed supervisor leaves no process behind. */
    for (size_t i = 0; i < n_children; i++) kill(children[i].pid, SIGKILL);
    return 0;
}
