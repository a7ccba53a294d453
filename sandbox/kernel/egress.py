"""Network egress for jobs that are allowed a network (``network=true``).

Such a job still gets a network namespace of its own; a user-mode network
stack (pasta, from Debian's ``passt``) gives it one interface, ``eth0``
10.0.2.100/24 with a default route via 10.0.2.2, and carries its TCP, UDP and
ICMP flows out through ordinary sockets of its own in the host's network
namespace. No veth, bridge, NAT or forwarding sysctl on the host: the job's
packets never enter the host's routing; only pasta's sockets do.

pasta runs as the container's own host uid (``--runas``, the uid that owns its
user namespace), in the job's cgroup (what it uses is the job's, and it dies
with it), with pasta's own isolation (an empty mount namespace, seccomp). The
launcher starts it (launch.c, process N) and kills it when the container ends.

Because every pasta socket belongs to a uid of the jobs' range, one nftables
table of ours (``inet sandbox_egress``, on the output hook; nothing else of the
host's firewall is touched) decides what egress may reach, by that uid:

- never the host itself (any local address, loopback included), nor private,
  shared, link-local, multicast or reserved ranges (the host's LAN, cloud
  metadata at 169.254.169.254, other hosts' services);
- at most ``network_connections`` connections at once per job, and at most
  ``network_rate`` bytes a second out (upload) per job.

pasta's own mapping of the gateway address to the host's loopback is off
(``--no-map-gw``), it forwards no port in either direction, and it forwards no
DNS: a job resolves nothing unless its image names a public resolver.
"""

from __future__ import annotations

import shutil
import subprocess

from sandbox.errors import SetupError

__all__ = ["STACK_ROOM", "TABLE", "install_firewall", "pasta_argv", "ruleset"]

TABLE = "sandbox_egress"
# pasta's own memory and processes, charged to the job's cgroup, added to
# its limits, by limit name (sandbox/resources.py; its buffers: ~26 MiB resident).
STACK_ROOM = {"memory": 64 * 2**20, "pids": 4}

ADDRESS, PREFIX, GATEWAY = "10.0.2.100", 24, "10.0.2.2"

# Not the public internet (RFC 6890 and its successors). The documentation
# ranges (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24) are routable nowhere;
# the tests' own "internet" lives there, in namespaces the tests make.
PRIVATE_V4 = (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
    "172.16.0.0/12", "192.0.0.0/24", "192.168.0.0/16", "198.18.0.0/15", "224.0.0.0/3",
)  # fmt: skip
PRIVATE_V6 = (
    "::/127", "::ffff:0:0/96", "64:ff9b::/96", "100::/64", "fc00::/7", "fe80::/10", "ff00::/8",
)  # fmt: skip


def pasta_argv(pasta: str) -> tuple[str, ...]:
    """pasta's command line, but for what only the launcher knows (--runas,
    --userns, --netns: the container's uid and its init's namespaces)."""
    return (
        pasta, "--foreground", "--quiet", "--config-net", "--ns-ifname", "eth0",
        "--address", ADDRESS, "--netmask", str(PREFIX), "--gateway", GATEWAY,
        "--no-map-gw", "--no-dhcp", "--no-dhcpv6", "--no-ndp", "--no-ra",
        "--tcp-ports", "none", "--udp-ports", "none", "--tcp-ns", "none", "--udp-ns", "none",
    )  # fmt: skip


def ruleset(uids: range, connections: int, rate: int) -> str:
    """The nftables table for jobs of host ``uids``, replaced as a whole (idempotent:
    add, flush, define): at most ``connections`` at once each, ``rate`` bytes a second up."""
    first, last = uids.start, uids.stop - 1
    rate = max(1, rate // 1024)
    return f"""
add table inet {TABLE}
delete table inet {TABLE}
table inet {TABLE} {{
    set private4 {{ type ipv4_addr; flags interval; elements = {{ {", ".join(PRIVATE_V4)} }} }}
    set private6 {{ type ipv6_addr; flags interval; elements = {{ {", ".join(PRIVATE_V6)} }} }}
    set connections {{ type uid; size 65536; flags dynamic; }}
    set upload {{ type uid; size 65536; flags dynamic; }}
    chain output {{
        type filter hook output priority filter; policy accept;
        meta skuid != {first}-{last} accept
        fib daddr type local reject
        ip daddr @private4 reject
        ip6 daddr @private6 reject
        ct state new add @connections {{ meta skuid ct count over {connections} }} reject
        add @upload {{ meta skuid limit rate over {rate} kbytes/second burst {rate} kbytes }} drop
    }}
}}
"""


def install_firewall(pasta: str, rules: str) -> None:
    """Load ``rules`` (:func:`ruleset`) into the host's (our network namespace's) nftables.

    Raises:
        SetupError: nft or pasta is missing, or the kernel refused the table.
    """
    nft = shutil.which("nft") or shutil.which("/usr/sbin/nft")  # sbin: not on every PATH
    if nft is None:
        raise SetupError(
            "SANDBOX_ALLOW_NETWORK needs nftables (apt-get install nftables; scripts/install does)",
            step="network",
        )
    if not shutil.which(pasta):
        raise SetupError(
            f"SANDBOX_ALLOW_NETWORK needs pasta at {pasta} "
            "(apt-get install passt; scripts/install does)",
            step="network",
        )
    done = subprocess.run(
        [nft, "-f", "-"], input=rules, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SetupError(f"cannot load the egress firewall: {done.stderr.strip()}", step="network")
