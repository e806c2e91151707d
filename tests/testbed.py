"""A testbed of real, isolated Debian 12 hosts for Ansible: one network namespace + overlay + sshd per host.

Stdlib only: `.ci/setup-testbed.sh` runs `python3 tests/testbed.py prepare` before the project's venv exists.

What a host is (see DESIGN.md, "What is real on our machines"):
- a Debian 12 `debootstrap --variant=minbase` rootfs, built once and cached under /var/cache/fjord-testbed,
  shared read-only by all hosts as the lower layer of a per-host overlay (upper dir under the run's state dir,
  a tmpfs: each host writes to RAM as it would to its own local disk, see STATE_IN_RAM);
- its own network namespace `fj3tb-<host>` with a veth into the bridge `fj3br0` on the controller: a real
  address per host (10.233.3.0/24, the controller is .1), no route out: packages come from the local apt
  mirror the testbed serves on the bridge address (an air-gapped site's mirror, built here from cached .debs);
- its own mount, UTS and PID namespaces (`unshare --kill-child`): PID 1 is a shell chrooted into the overlay
  (so Ansible sees no chroot, and `sysvinit` as the service manager) and every daemon a role starts dies
  with the host; `/proc/sys` is read-only (the kernel is the controller's) and CAP_SYS_TIME /
  CAP_SYS_MODULE / CAP_SYS_BOOT are dropped; `policy-rc.d` keeps package scripts from starting daemons;
- sshd, started by that shell: Ansible connects as root with the testbed's key.

Everything global carries the `fj3` prefix; `cleanup_leftovers()` removes what an interrupted run left, and a
lock file serialises concurrent testbeds (tests and benchmarks).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import http.server
import os
import shutil
import signal
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

CACHE = Path(os.environ.get("FJORD_TESTBED_CACHE", "/var/cache/fjord-testbed"))
STATE = Path("/var/tmp/fj3-testbed")
STATE_IN_RAM = os.environ.get("FJORD_TESTBED_STATE_ON_DISK", "") in ("", "0")
"""Mount a tmpfs on STATE, so the hosts' writable layers live in RAM (each host's first site.yml writes ~230 MiB),
as a host's own local disk would be, not on the controller's one disk. On this development VM a package install
on the shared disk spends most of its time in the kernel (overlay copy-up and dpkg's fsyncs through the virtual
disk): the RDMA packages took 3.8 s there (2.4 s of it system time) and 1.7 s (0.6 s) in RAM, on one idle host.
FJORD_TESTBED_STATE_ON_DISK=1 keeps STATE on disk (machines short of memory)."""
LOCK = Path("/run/fj3-testbed.lock")
DEBIAN_MIRROR = os.environ.get("FJORD_TESTBED_DEBIAN_MIRROR", "http://deb.debian.org/debian")
SUITE = "bookworm"
PREFIX = "fj3tb-"
BRIDGE = "fj3br0"
SUBNET = "10.233.3"
CONTROLLER = f"{SUBNET}.1"
ROOTFS_INCLUDE = (
    "openssh-server",
    "python3",
    "python3-apt",
    "procps",
    "iproute2",
    "kmod",
    "ca-certificates",
    "sudo",
)
"""In every host's image: what Ansible needs to manage it (sshd, python3, python3-apt for the apt module, sudo
for an operator account that becomes root)."""
OPERATOR = "fjord"
OPERATOR_ID = 1000
"""A non-root account on every host, reached with the testbed's key, with passwordless sudo: how operators let
Ansible in (`host_access.ssh_user` in the site, `become`). `Testbed.host_vars(user=OPERATOR)` connects as it."""

PACKAGES_FILE = Path(__file__).with_name("testbed_packages.txt")
"""What the local mirror serves: the packages the roles install on a GPU-less Debian 12 host (and their
dependencies, resolved against the host image)."""


def _run(*cmd: str, check: bool = True, quiet: bool = False, **kw: object) -> subprocess.CompletedProcess[str]:
    out = subprocess.DEVNULL if quiet else None
    return subprocess.run(list(cmd), check=check, text=True, stdout=out, stderr=out, **kw)  # type: ignore[call-overload, no-any-return]


def mirror_packages() -> list[str]:
    lines = PACKAGES_FILE.read_text(encoding="utf-8").splitlines()
    return sorted({w for line in lines for w in line.split("#", 1)[0].split()})


def _digest(*parts: object) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:12]


def rootfs_path() -> Path:
    return CACHE / f"rootfs-{SUITE}-{_digest(ROOTFS_INCLUDE)}"


def debs_path() -> Path:
    return CACHE / f"debs-{_digest(ROOTFS_INCLUDE, mirror_packages())}"


def ensure_rootfs() -> Path:
    """The host image, built once (~40 s with network) and reused: debootstrap minbase, no apt sources."""
    target = rootfs_path()
    if (target / ".fj3-complete").exists():
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="fj3-rootfs-", dir=CACHE))
    try:
        _run(
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(ROOTFS_INCLUDE)}",
            SUITE,
            str(tmp),
            DEBIAN_MIRROR,
            quiet=True,
        )
        # An air-gapped host image: no internet sources; the base role adds the site mirror.
        (tmp / "etc/apt/sources.list").write_text("", encoding="utf-8")
        for lists in (tmp / "var/lib/apt/lists").glob("*_*"):
            lists.unlink()
        for deb in (tmp / "var/cache/apt/archives").glob("*.deb"):
            deb.unlink()
        (tmp / "etc/hostname").write_text("testbed\n", encoding="utf-8")
        (tmp / ".fj3-complete").write_text("ok\n", encoding="utf-8")
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def ensure_debs() -> Path:
    """The .debs of the mirror: `apt-get install --download-only` in a throw-away overlay of the host image,
    so that exactly the packages and dependencies a fresh host lacks are fetched (once, then cached)."""
    target = debs_path()
    if (target / ".fj3-complete").exists():
        return target
    rootfs = ensure_rootfs()
    work = Path(tempfile.mkdtemp(prefix="fj3-debs-", dir=CACHE))
    try:
        for d in ("upper", "work", "root", "out"):
            (work / d).mkdir()
        root = work / "root"
        script = f"""set -e
mount -t overlay fj3-debs -o lowerdir={rootfs},upperdir={work}/upper,workdir={work}/work {root}
mount -t proc proc {root}/proc
mount --bind /dev {root}/dev
mount --bind {work}/out {root}/var/cache/apt/archives
cp /etc/resolv.conf {root}/etc/resolv.conf
echo 'deb {DEBIAN_MIRROR} {SUITE} main' > {root}/etc/apt/sources.list
chroot {root} apt-get -qq update
chroot {root} env DEBIAN_FRONTEND=noninteractive apt-get -qq install --download-only --no-install-recommends -y \
  {" ".join(mirror_packages())}
"""
        _run("unshare", "--mount", "--propagation", "private", "bash", "-c", script)
        target.mkdir(parents=True, exist_ok=True)
        for deb in (work / "out").glob("*.deb"):
            shutil.copy2(deb, target / deb.name)
        (target / ".fj3-complete").write_text("ok\n", encoding="utf-8")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def build_mirror(into: Path) -> Path:
    """A Debian repository (`deb [trusted=yes] <url> bookworm main`) of the cached .debs, indexed with
    apt-ftparchive: the local mirror an air-gapped site would serve."""
    debs = ensure_debs()
    pool = into / "pool/main"
    pool.mkdir(parents=True, exist_ok=True)
    for deb in debs.glob("*.deb"):
        dest = pool / deb.name
        if not dest.exists():
            os.link(deb, dest) if deb.stat().st_dev == into.stat().st_dev else shutil.copy2(deb, dest)
    binary = into / f"dists/{SUITE}/main/binary-amd64"
    binary.mkdir(parents=True, exist_ok=True)
    packages = _run("apt-ftparchive", "packages", "pool", cwd=into, capture_output=True).stdout
    (binary / "Packages").write_text(packages, encoding="utf-8")
    release = _run(
        "apt-ftparchive",
        "-o",
        f"APT::FTPArchive::Release::Suite={SUITE}",
        "-o",
        f"APT::FTPArchive::Release::Codename={SUITE}",
        "-o",
        "APT::FTPArchive::Release::Components=main",
        "-o",
        "APT::FTPArchive::Release::Architectures=amd64",
        "release",
        f"dists/{SUITE}",
        cwd=into,
        capture_output=True,
    ).stdout
    (into / f"dists/{SUITE}/Release").write_text(release, encoding="utf-8")
    return into


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


@dataclass
class Host:
    name: str
    address: str
    netns: str
    veth: str
    upper: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def init_pid(self) -> int:
        """PID (in the controller's namespace) of the host's PID 1, whose /proc/<pid>/root is its filesystem."""
        assert self.proc is not None
        for _ in range(100):
            kids = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
            if kids:
                return int(kids[0])
            time.sleep(0.05)
        raise RuntimeError(f"host {self.name}: no init process")

    def root(self) -> Path:
        """The host's filesystem as the host sees it, for checks and fault injection."""
        return Path(f"/proc/{self.init_pid()}/root")


@dataclass
class Testbed:
    """Running hosts, the key that reaches them and the mirror they install from."""

    hosts: list[Host]
    key: Path
    mirror_url: str
    state: Path
    rootfs: Path
    _server: _Server | None = field(default=None, repr=False)

    def ssh(self, host: Host, command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ssh", *self.ssh_options(), f"root@{host.address}", command],
            text=True,
            capture_output=True,
            check=check,
            timeout=60,
        )

    def ssh_options(self) -> list[str]:
        return [
            "-i",
            str(self.key),
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=5",
        ]

    def host_vars(self, user: str | None = "root") -> dict[str, dict[str, object]]:
        """Connection variables per host for an inventory (the key, no host-key checks: hosts are fresh), logging
        in as `user` (None: leave the user to the inventory, e.g. the site's host_access.ssh_user)."""
        args = "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"
        return {
            h.name: {
                "ansible_host": h.address,
                **({"ansible_user": user} if user else {}),
                "ansible_ssh_private_key_file": str(self.key),
                "ansible_ssh_common_args": args,
                "ansible_python_interpreter": "/usr/bin/python3",
            }
            for h in self.hosts
        }

    def prepare(self, host: Host) -> None:
        """A fresh upper layer: the image as debootstrap left it, plus root's key and policy-rc.d."""
        for part in ("upper", "work"):
            shutil.rmtree(self.state / host.name / part, ignore_errors=True)
        (host.upper / "root/.ssh").mkdir(parents=True, mode=0o700)
        (host.upper / "root").chmod(0o700)
        auth = host.upper / "root/.ssh/authorized_keys"
        auth.write_text(Path(f"{self.key}.pub").read_text(), encoding="utf-8")
        auth.chmod(0o600)
        self._add_operator(host)
        # As in container images: package scripts do not start daemons; the roles start what they manage.
        policy = host.upper / "usr/sbin/policy-rc.d"
        policy.parent.mkdir(parents=True)
        policy.write_text("#!/bin/sh\nexit 101\n", encoding="utf-8")
        policy.chmod(0o755)

    def _add_operator(self, host: Host) -> None:
        """The operator account (OPERATOR): passwd/shadow/group entries over the image's, a home with the
        testbed's key, passwordless sudo. Written into the fresh upper layer, as an image build would."""
        uid = OPERATOR_ID
        entries = {
            "passwd": f"{OPERATOR}:x:{uid}:{uid}:fjord operator:/home/{OPERATOR}:/bin/sh\n",
            "shadow": f"{OPERATOR}:*:19000:0:99999:7:::\n",
            "group": f"{OPERATOR}:x:{uid}:\n",
            "gshadow": f"{OPERATOR}:!::\n",
        }
        for name, line in entries.items():
            source, target = self.rootfs / "etc" / name, host.upper / "etc" / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if source.is_file():
                shutil.copy2(source, target)
            with open(target, "a", encoding="utf-8") as f:
                f.write(line)
        # sudo looks its own host name up (and warns on stderr when it cannot); the minbase image has no hosts file.
        image_hosts = self.rootfs / "etc/hosts"
        base = image_hosts.read_text(encoding="utf-8") if image_hosts.is_file() else "127.0.0.1\tlocalhost\n"
        (host.upper / "etc/hosts").write_text(f"{base}127.0.1.1\t{host.name}\n", encoding="utf-8")
        sudoers = host.upper / "etc/sudoers.d" / OPERATOR
        sudoers.parent.mkdir(parents=True, exist_ok=True)
        sudoers.write_text(f"{OPERATOR} ALL=(ALL:ALL) NOPASSWD: ALL\n", encoding="utf-8")
        sudoers.chmod(0o440)
        home = host.upper / "home" / OPERATOR
        (home / ".ssh").mkdir(parents=True, mode=0o700)
        (home / ".ssh/authorized_keys").write_text(Path(f"{self.key}.pub").read_text(), encoding="utf-8")
        (home / ".ssh/authorized_keys").chmod(0o600)
        for path in (home, home / ".ssh", home / ".ssh/authorized_keys"):
            os.chown(path, uid, uid)

    def reset(self, host: Host) -> None:
        """Power off, throw away everything the host wrote, boot again: a freshly installed host."""
        self.stop(host)
        self.prepare(host)
        self.start(host)

    def start(self, host: Host) -> None:
        """Boot (or reboot) a host: its namespaces, overlay, /proc, /dev, /run, then sshd; wait for SSH."""
        if host.alive:
            return
        root = self.state / host.name / "root"
        work = self.state / host.name / "work"
        for d in (root, work, host.upper):
            d.mkdir(parents=True, exist_ok=True)
        script = f"""set -e
R={root}
mount -t overlay {PREFIX}{host.name} -o lowerdir={self.rootfs},upperdir={host.upper},workdir={work} $R
mount -t proc proc $R/proc
mount --bind $R/proc/sys $R/proc/sys && mount -o remount,bind,ro $R/proc/sys
mount -t sysfs -o ro sysfs $R/sys
mount -t tmpfs -o mode=755,size=16m tmpfs $R/dev
for d in null:1:3 zero:1:5 full:1:7 random:1:8 urandom:1:9 tty:5:0; do
  IFS=: read n a b <<< "$d"; mknod -m 666 $R/dev/$n c $a $b
done
mkdir -p $R/dev/pts $R/dev/shm && mount -t devpts -o newinstance,ptmxmode=0666 devpts $R/dev/pts
ln -sf pts/ptmx $R/dev/ptmx
mount -t tmpfs -o mode=755,size=64m tmpfs $R/run && mkdir -p $R/run/sshd $R/run/lock
mount -t tmpfs -o mode=1777,size=256m tmpfs $R/tmp
echo {host.name} > $R/etc/hostname
hostname {host.name}
# PID 1 becomes a shell inside the host's root: Ansible sees no chroot and `sysvinit` as service manager.
exec setpriv --bounding-set -sys_time,-sys_module,-sys_boot chroot $R /bin/sh -c \
  '/usr/sbin/sshd -D -e -o UseDNS=no 2>>/run/fj3-sshd.log & wait'
"""
        with open(self.state / host.name / "init.log", "ab") as log:
            host.proc = subprocess.Popen(
                [
                    "ip",
                    "netns",
                    "exec",
                    host.netns,
                    "unshare",
                    "--mount",
                    "--uts",
                    "--pid",
                    "--fork",
                    "--kill-child",
                    "--propagation",
                    "private",
                    "bash",
                    "-c",
                    script,
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                start_new_session=True,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if host.proc.poll() is not None:
                tail = (self.state / host.name / "init.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"host {host.name} did not boot: {tail}")
            if self.ssh(host, "true", check=False).returncode == 0:
                return
            time.sleep(0.2)
        raise RuntimeError(f"host {host.name}: no SSH after 30 s")

    def stop(self, host: Host) -> None:
        """Power a host off: SIGKILL its PID 1 (the kernel then kills every process of the host)."""
        if host.proc is not None and host.proc.poll() is None:
            with contextlib.suppress(RuntimeError, FileNotFoundError, ProcessLookupError):
                init = host.init_pid()
                os.kill(init, signal.SIGKILL)
                _wait_gone(init)
            host.proc.terminate()
            try:
                host.proc.wait(10)
            except subprocess.TimeoutExpired:
                host.proc.kill()
                host.proc.wait(10)
        host.proc = None


def alive(pid: int) -> bool:
    """Whether a process runs (a zombie waiting for its parent does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def _wait_gone(pid: int, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)


def _netns_list() -> list[str]:
    out = _run("ip", "netns", "list", capture_output=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def cleanup_leftovers() -> None:
    """Remove what an interrupted testbed left: processes in our namespaces, the namespaces, the bridge,
    the state dir and its tmpfs (the overlays lived in the hosts' private mount namespaces and died with them)."""
    for ns in _netns_list():
        if not ns.startswith(PREFIX):
            continue
        pids = _run("ip", "netns", "pids", ns, capture_output=True, check=False).stdout.split()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        for _ in range(50):
            if not _run("ip", "netns", "pids", ns, capture_output=True, check=False).stdout.split():
                break
            time.sleep(0.1)
        _run("ip", "netns", "del", ns, check=False, quiet=True)
    if Path(f"/sys/class/net/{BRIDGE}").exists():
        _run("ip", "link", "del", BRIDGE, check=False, quiet=True)
    mounts = Path("/proc/self/mounts").read_text().splitlines()
    for line in reversed(mounts):
        point = line.split()[1]
        if point.startswith(str(STATE)):
            _run("umount", "-l", point, check=False, quiet=True)
    shutil.rmtree(STATE, ignore_errors=True)


def unavailable_reason() -> str | None:
    """Why a testbed cannot be built here, or None."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, overlay mounts)"
    for tool in ("debootstrap", "ip", "unshare", "setpriv", "ssh", "ssh-keygen", "apt-ftparchive"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (run .ci/setup-testbed.sh)"
    if not (rootfs_path() / ".fj3-complete").exists() and not (CACHE.parent.exists() and os.access(CACHE.parent, 2)):
        return f"no host image under {CACHE} and it cannot be built"
    return None


@contextlib.contextmanager
def testbed(names: list[str]) -> Iterator[Testbed]:
    """Build and start hosts `names`, serve the mirror; tear everything down on exit, also on failure."""
    LOCK.parent.mkdir(parents=True, exist_ok=True)
    with open(LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        cleanup_leftovers()
        rootfs = ensure_rootfs()
        STATE.mkdir(parents=True)
        bed: Testbed | None = None
        try:
            if STATE_IN_RAM:
                # Unmounted by cleanup_leftovers (every mount under STATE); the size caps it at half the RAM.
                _run("mount", "-t", "tmpfs", "-o", "mode=700,size=50%", "fj3-state", str(STATE))
                # The image too (~200 MiB, ~1 s): an overlay shows a lower file's inode flags (ext4's `e`),
                # which Ansible's backup copies then fail to set on a tmpfs upper ("chattr failed").
                _run("cp", "-a", str(rootfs), str(STATE / "image"))
                rootfs = STATE / "image"
            mirror = build_mirror(STATE / "mirror")
            key = STATE / "id_ed25519"
            _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key), quiet=True)
            _run("ip", "link", "add", BRIDGE, "type", "bridge")
            _run("ip", "addr", "add", f"{CONTROLLER}/24", "dev", BRIDGE)
            _run("ip", "link", "set", BRIDGE, "up")
            server = _Server((CONTROLLER, 0), functools.partial(_QuietHandler, directory=str(mirror)))
            threading.Thread(target=server.serve_forever, daemon=True).start()
            url = f"http://{CONTROLLER}:{server.server_address[1]}/debian"
            (mirror / "debian").mkdir(exist_ok=True)
            for part in ("pool", "dists"):
                link = mirror / "debian" / part
                if not link.exists():
                    link.symlink_to(mirror / part)
            hosts = []
            for i, name in enumerate(names):
                ns, veth = f"{PREFIX}{name}", f"fj3v{i}"
                _run("ip", "netns", "add", ns)
                _run("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
                _run("ip", "link", "set", veth, "master", BRIDGE, "up")
                address = f"{SUBNET}.{10 + i}"
                _run("ip", "-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
                _run("ip", "-n", ns, "link", "set", "eth0", "up")
                _run("ip", "-n", ns, "link", "set", "lo", "up")
                upper = STATE / name / "upper"
                hosts.append(Host(name, address, ns, veth, upper))
            bed = Testbed(hosts, key, url, STATE, rootfs, server)
            for h in hosts:
                bed.prepare(h)
                bed.start(h)
            yield bed
        finally:
            if bed is not None:
                for h in bed.hosts:
                    bed.stop(h)
                if bed._server is not None:
                    bed._server.shutdown()
                    bed._server.server_close()
            cleanup_leftovers()


def main(argv: list[str]) -> int:
    if argv[:1] == ["prepare"]:
        t = time.monotonic()
        print(f"host image: {ensure_rootfs()}")
        print(f"mirror debs: {ensure_debs()} ({len(list(debs_path().glob('*.deb')))} packages)")
        print(f"ready in {time.monotonic() - t:.1f} s")
        return 0
    if argv[:1] == ["cleanup"]:
        LOCK.parent.mkdir(parents=True, exist_ok=True)
        with open(LOCK, "w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                print("a testbed is running (lock held); nothing removed", file=sys.stderr)
                return 1
            cleanup_leftovers()
        return 0
    print("usage: testbed.py prepare|cleanup", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
