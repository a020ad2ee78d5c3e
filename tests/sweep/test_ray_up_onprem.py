"""`ray up` of cluster/onprem.yaml for real: SSH to this machine, a study, `ray down`.

The whole path of cluster/README.md's "Machines you own" section, run on one machine: an SSH
daemon of its own on 127.0.0.1 (a free port, a host key and a login key generated in a temporary
folder), an unprivileged user made for the cluster's SSH login with its own HOME, and a copy of
cluster/onprem.yaml pointed at 127.0.0.1. The copy installs nothing (its setup commands reuse
this Python, made readable to that user) but keeps the shipped environment lines and the
shipped start commands, only with free ports. Then, as the README says: the token, `ray up`,
`ray rsync-up` of the study, `ray exec` of `infovae-sweep run`, `ray rsync-down` of the study
folder and `ray down`.

Ray's `ray stop` (run by the start commands and by `ray down`) stops every Ray process of the
SSH user on the node: with a user of its own, it reaches only this cluster, and a Ray started
beside it by another user (this test's own ``ray.init``) must survive. Every process of that
user is ended by its id at the end, and the user removed.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import re
import secrets
import shutil
import socket
import stat
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
import pyarrow.parquet as pq
import pytest
import yaml

from sweep import names
from sweep.plan import plan_study, trials_left
from sweep.spec import load_study
from tests.sweep.studies import write_study

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "cluster" / "onprem.yaml"
# This Python's `ray` and `infovae-sweep` (in a venv over the system's packages, the `ray` of the
# packages' own Python).
SCRIPTS = Path(sysconfig.get_path("scripts"))
if not (SCRIPTS / "ray").exists() and shutil.which("ray"):
    SCRIPTS = Path(shutil.which("ray")).parent
STUDY = "onprem"
# Shipped setup lines kept in the copy: they set up the environment rather than install.
KEPT_SETUP = ("~/.bashrc", "auth_token")

# ssh's ProxyCommand to the daemon's port: Ray has no SSH port setting, and passes its SSH
# options to rsync unquoted, so the command is one path without arguments.
PROXY = """#!{python}
import os, socket, sys, threading
conn = socket.create_connection(("127.0.0.1", {port}))
def upstream():
    while data := os.read(0, 65536):
        conn.sendall(data)
    conn.shutdown(socket.SHUT_WR)
threading.Thread(target=upstream, daemon=True).start()
while data := conn.recv(65536):
    os.write(1, data)
"""

SSHD_CONFIG = """\
Port {port}
ListenAddress 127.0.0.1
HostKey {host_key}
PidFile {folder}/sshd.pid
AllowUsers {user}
PermitRootLogin no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
X11Forwarding no
PrintMotd no
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _run(args: list[str], what: str, timeout: float, **kwargs: Any) -> str:
    done = subprocess.run(
        args, capture_output=True, text=True, timeout=timeout, check=False, **kwargs
    )
    assert done.returncode == 0, f"{what} failed ({done.returncode}):\n{done.stdout[-4000:]}\n" \
        f"{done.stderr[-4000:]}"
    return done.stdout


def _user_processes(uid: int) -> list[psutil.Process]:
    mine = []
    for process in psutil.process_iter(["uids", "name"]):
        try:
            if process.info["uids"] and process.info["uids"].real == uid:
                mine.append(process)
        except psutil.Error:
            pass
    return mine


def _ray_processes(uid: int) -> list[str]:
    """The user's processes other than its SSH sessions (which close by themselves)."""
    left = []
    for process in _user_processes(uid):
        try:
            if process.status() != psutil.STATUS_ZOMBIE and process.name() != "sshd":
                left.append(f"{process.pid} {' '.join(process.cmdline())[:200]}")
        except psutil.NoSuchProcess:
            pass
    return left


def _make_traversable(paths: list[Path]) -> dict[Path, int]:
    """Let other users pass through (not list) the folders above ``paths``: this Python may live
    under root's HOME. Returns the changed folders with their modes, to restore."""
    changed: dict[Path, int] = {}
    for path in paths:
        for folder in [*reversed(path.resolve().parents), path.resolve()]:
            mode = folder.stat().st_mode
            if folder.is_dir() and not mode & stat.S_IXOTH and folder not in changed:
                changed[folder] = stat.S_IMODE(mode)
                folder.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)
    return changed


def _start_sshd(folder: Path, user: str) -> tuple[subprocess.Popen, int]:
    """This test's own SSH daemon on 127.0.0.1: skips when none can be started here."""
    if os.geteuid() != 0:
        pytest.skip("an SSH daemon that logs in another user needs root")
    sshd = shutil.which("sshd", path=f"{os.environ.get('PATH', '')}:/usr/sbin:/usr/local/sbin")
    if sshd is None:
        pytest.skip("no SSH daemon (sshd): install openssh-server")
    host_key = folder / "host_ed25519"
    _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)], "ssh-keygen", 30)
    port = _free_port()
    config = folder / "sshd_config"
    config.write_text(SSHD_CONFIG.format(port=port, host_key=host_key, folder=folder, user=user))
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation folder
    log = folder / "sshd.log"
    daemon = subprocess.Popen(
        [sshd, "-D", "-e", "-f", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
        start_new_session=True,
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if daemon.poll() is not None:
            pytest.skip(f"the SSH daemon could not be started: {log.read_text()[-500:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return daemon, port
        except OSError:
            time.sleep(0.1)
    daemon.kill()
    pytest.skip("the SSH daemon did not listen within 15 s")


def _with_free_ports(commands: list[str], ports: dict[str, int]) -> list[str]:
    """The shipped commands with each port number replaced by a free one (the same number by
    the same free port), so that this cluster meets no other Ray on this machine."""

    def replace(match: re.Match[str]) -> str:
        number = match.group(2)
        ports.setdefault(number, _free_port())
        return f"{match.group(1)}{ports[number]}"

    pattern = re.compile(r"(--[a-z-]*port=|\$RAY_HEAD_IP:)(\d+)")
    return [pattern.sub(replace, command) for command in commands]


def _cluster_file(folder: Path, name: str, user: str, proxy: Path, key: Path) -> Path:
    config = yaml.safe_load(SHIPPED.read_text(encoding="utf-8"))
    config["cluster_name"] = name
    config["provider"].update(head_ip="127.0.0.1", worker_ips=[])
    config["auth"] = {"ssh_user": user, "ssh_private_key": str(key),
                      "ssh_proxy_command": str(proxy)}
    kept = [c for c in config["setup_commands"] if any(k in c for k in KEPT_SETUP)]
    assert len(kept) == 2, "the shipped environment lines changed"
    venv = "~/infovae-sweep-venv"
    # This Python instead of a new install: a venv over its packages, with its two commands.
    config["setup_commands"] = [
        f"test -x {venv}/bin/python || {sys.executable} -m venv --system-site-packages "
        f"--without-pip {venv}",
        f"ln -sf {SCRIPTS / 'ray'} {SCRIPTS / 'infovae-sweep'} {venv}/bin/",
        *kept,
    ]
    ports: dict[str, int] = {}
    for key_name in ("head_start_ray_commands", "worker_start_ray_commands"):
        config[key_name] = _with_free_ports(config[key_name], ports)
    path = folder / "onprem.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _ray_cli(args: list[str], what: str, launcher_home: Path, timeout: float) -> str:
    # HOME: the token `ray get-auth-token --generate` writes and file_mounts copies ("~/.ray");
    # the temporary folders: where the launcher keeps the cluster's state and its config cache.
    temp = str(launcher_home / "tmp")
    env = dict(os.environ, HOME=str(launcher_home), RAY_TMPDIR=temp, TMPDIR=temp,
               RAY_USAGE_STATS_ENABLED="0")
    return _run([str(SCRIPTS / "ray"), *args], what, timeout, env=env)


def _forget_ssh_connections(name: str) -> None:
    """The folder of Ray's SSH connection sockets for this cluster (its path is Ray's)."""
    from getpass import getuser

    from ray.autoscaler._private.command_runner import HASH_MAX_LENGTH

    user_hash = hashlib.sha256(getuser().encode()).hexdigest()[:HASH_MAX_LENGTH]
    cluster_hash = hashlib.sha256(name.encode()).hexdigest()[:HASH_MAX_LENGTH]
    shutil.rmtree(f"/tmp/ray_ssh_{user_hash}/{cluster_hash}", ignore_errors=True)
    try:
        os.rmdir(f"/tmp/ray_ssh_{user_hash}")  # only when no other cluster's sockets are there
    except OSError:
        pass


@pytest.fixture
def beside():
    """A Ray started by another user (root, this process) on the same machine."""
    import ray

    assert not ray.is_initialized()
    ray.init(address="local", include_dashboard=False, num_cpus=1, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_ray_up_onprem(beside):
    base = Path(tempfile.mkdtemp(prefix="ivs-onprem-", dir="/tmp"))  # short: Ray's socket paths
    base.chmod(0o755)
    user = f"ivs{secrets.token_hex(4)}"
    name = f"infovae-test-{user}"
    home = base / "home"
    launcher_home = base / "launcher"
    (launcher_home / "tmp").mkdir(parents=True)
    restore: dict[Path, int] = {}
    daemon: subprocess.Popen | None = None
    uid: int | None = None
    beside_raylets = [p for p in psutil.Process().children(recursive=True) if p.name() == "raylet"]
    assert len(beside_raylets) == 1
    try:
        _run(["useradd", "--create-home", "--home-dir", str(home), "--shell", "/bin/bash",
              "--password", "*", "--user-group", user], "useradd", 30)
        uid = pwd.getpwnam(user).pw_uid
        restore = _make_traversable([Path(sys.base_prefix), Path(sys.prefix), SCRIPTS, ROOT])
        reach = subprocess.run(
            ["runuser", "-u", user, "--", sys.executable, "-c", "import ray, sweep, torch"],
            capture_output=True, text=True, cwd=home, check=False,
        )
        assert reach.returncode == 0, f"{user} cannot import this Python's packages:\n" \
            f"{reach.stderr[-2000:]}"

        ssh = base / "ssh"
        ssh.mkdir(mode=0o700)
        daemon, port = _start_sshd(ssh, user)
        key = ssh / "login_ed25519"
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], "ssh-keygen", 30)
        user_ssh = home / ".ssh"
        user_ssh.mkdir(mode=0o700, exist_ok=True)
        (user_ssh / "authorized_keys").write_text(Path(f"{key}.pub").read_text())
        _run(["chown", "-R", f"{user}:{user}", str(user_ssh)], "chown", 30)
        proxy = ssh / "proxy"
        proxy.write_text(PROXY.format(python=sys.executable, port=port))
        proxy.chmod(0o700)
        cluster = _cluster_file(base, name, user, proxy, key)

        studies = base / "studies"
        studies.mkdir()
        write_study(studies, STUDY, trials=2, seeds=1, epochs=2)
        fetched = base / "fetched" / STUDY

        _ray_cli(["get-auth-token", "--generate"], "ray get-auth-token", launcher_home, 60)
        _ray_cli(["up", "-y", str(cluster)], "ray up", launcher_home, 240)
        _ray_cli(["rsync-up", str(cluster), f"{studies}/", "studies/"], "ray rsync-up",
                 launcher_home, 60)
        _ray_cli(["exec", str(cluster), f"infovae-sweep run studies/{STUDY}.yaml --address auto"
                  " --single-node --results ~/infovae-results"], "ray exec", launcher_home, 300)
        fetched.parent.mkdir()
        _ray_cli(["rsync-down", str(cluster), f"infovae-results/{STUDY}/", f"{fetched}/"],
                 "ray rsync-down", launcher_home, 60)
        running = _ray_processes(uid)
        assert any("raylet" in line for line in running), f"no raylet of {user}: {running}"
        _ray_cli(["down", "-y", str(cluster)], "ray down", launcher_home, 120)

        assert _ray_processes(uid) == [], "Ray processes of the cluster outlived `ray down`"
        assert beside_raylets[0].is_running(), "`ray down` stopped another user's Ray"
        assert beside.get(beside.remote(lambda: 42).remote()) == 42

        spec = load_study(studies / f"{STUDY}.yaml")
        trials = pq.read_table(fetched / names.TRIALS_FILE).to_pandas()
        assert trials[names.TRIAL_ID].is_unique
        assert len(trials) == plan_study(spec).total_trials
        assert trials_left(spec, trials) == 0
        assert (trials[names.STATUS] == names.COMPLETED).all()
        assert (fetched / names.REPORT_FILE).stat().st_size > 0
    finally:
        if uid is not None:
            for process in _user_processes(uid):
                try:
                    process.kill()
                except psutil.NoSuchProcess:
                    pass
            psutil.wait_procs(_user_processes(uid), timeout=10)
        if daemon is not None:
            daemon.kill()
            daemon.wait(timeout=10)
        for folder, mode in restore.items():
            folder.chmod(mode)
        if uid is not None:
            subprocess.run(["userdel", user], capture_output=True, check=False)
            shutil.rmtree(f"/tmp/ray-{uid}", ignore_errors=True)
        _forget_ssh_connections(name)
        shutil.rmtree(base, ignore_errors=True)
