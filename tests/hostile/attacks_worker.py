"""Attacks on a worker, as code: each function runs one attack against a real ``twistd market`` and
a real ``twistd worker`` (a :class:`Rig`) and returns its figures. ``test_worker_attacks.py`` runs
each briefly and asserts on the figures; a benchmark can run the same functions with larger
parameters.

The worker's own limits are what every attack is measured against: its whole process tree must
stay under ``--memory`` plus :data:`WORKER_ALLOWANCE_MB` (the worker's own baseline), the worker
must take the next lease and finish a normal job correctly, and the market's audit must be clean.
"""

from __future__ import annotations

import http.client
import http.server
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import threading
import time
import xmlrpc.client
from dataclasses import dataclass, field
from typing import Any

from market import tasklet
from market.jobs import submission, taskbundle
from market.store import accounts as sql
from market.store import jobs as jsql
from tests.hostile.support import HostileMarket, MemoryWatch, start_market, tree_rss_mb
from tests.servers import TWISTD, env, free_port, terminate

#: The worker's own baseline on top of its --memory: its Python process (Twisted, the RPC client,
#: the runtime; ~75 MB measured idle), bwrap and the sandbox's runner (~15 MB), and what it holds
#: of a slice's output (--output 4 MB here, a few copies while encoding it for XML-RPC).
WORKER_ALLOWANCE_MB = 150
#: An unused uid for the jobs: a fork bomb must not starve other sandboxes running as 'nobody'
#: (RLIMIT_NPROC counts per user), and this suite's must not collide with the sandbox suite's 100042.
JOB_UID = "100617"
NORMAL = "def main(n):\n    total = 0\n    for i in range(n):\n        total += i * i\n    return total\n"


# -- a market and a worker, through a proxy that can answer Fault 9 ------------------------------


class FaultProxy:
    """An HTTP/1.1 XML-RPC relay between the worker and the market that answers the next ``n``
    deliveries (``state``, ``result``, ``fail``) with Fault 9 (database unavailable) itself."""

    DELIVERIES = ("state", "result", "fail")

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.to_fail = 0
        self.faulted: list[tuple[float, str]] = []
        self.delivered: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                answer = proxy._relay(body, dict(self.headers))
                self.send_response(200)
                self.send_header("Content-Type", "text/xml")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="fault-proxy", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/RPC2"

    def start(self) -> FaultProxy:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def fail_next(self, n: int) -> None:
        with self._lock:
            self.to_fail = n

    def _relay(self, body: bytes, headers: dict[str, str]) -> bytes:
        method = _method_of(body)
        if method in self.DELIVERIES:
            with self._lock:
                fault = self.to_fail > 0
                if fault:
                    self.to_fail -= 1
            if fault:
                self.faulted.append((time.monotonic(), method))
                return xmlrpc.client.dumps(
                    xmlrpc.client.Fault(9, "the database is unavailable (test proxy); retry"), methodresponse=True
                ).encode()
        conn = http.client.HTTPConnection("127.0.0.1", self.target_port, timeout=60)
        try:
            conn.request("POST", "/RPC2", body, {"Content-Type": "text/xml", "Authorization": headers["Authorization"]})
            answer = conn.getresponse().read()
        finally:
            conn.close()
        if method in self.DELIVERIES:
            self.delivered.append((time.monotonic(), method))
        return answer


def _method_of(body: bytes) -> str:
    start = body.find(b"<methodName>")
    end = body.find(b"</methodName>")
    return body[start + 12 : end].decode(errors="replace").strip() if 0 <= start < end else ""


@dataclass
class Rig:
    """A market, a proxy and one worker with stated limits, and the member who attacks."""

    hostile: HostileMarket
    proxy: FaultProxy
    proc: subprocess.Popen
    log: str
    staging: str
    memory_mb: int
    slice_seconds: float
    disk_mb: int
    output_mb: int
    baseline_mb: float = 0.0
    figures: list[dict[str, Any]] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def bound_mb(self) -> float:
        """What the worker's whole process tree may reach: its --memory plus its own baseline."""
        return self.memory_mb + WORKER_ALLOWANCE_MB

    def alive(self) -> bool:
        return self.proc.poll() is None

    def logtext(self) -> str:
        return open(self.log).read() if os.path.exists(self.log) else ""

    def member(self) -> xmlrpc.client.ServerProxy:
        return self.hostile.member()

    def submit_job(self, source: str, entry: str, args: list, price: int = 100, name: str = "job") -> int:
        prepared = submission.prepare(source, entry, args)
        return self.hostile.db.transact(submission.submit, self.hostile.account_id, prepared, name, price, time.time())

    def submit_task(self, spec: dict, archive: bytes, price: str = "0.01", name: str = "task", data: bytes = b""):
        bundle = taskbundle.pack(spec, archive, data or None)
        return self.member().task(self.hostile.account_id, xmlrpc.client.Binary(bundle), price, name)

    def job(self, job_id: int) -> dict[str, Any]:
        return self.hostile.db.transact(jsql.job_row, job_id)

    def leases(self, job_id: int) -> list[dict[str, Any]]:
        return self.hostile.db.transact(
            lambda tx: tx.all("SELECT * FROM leases WHERE job_id = ? ORDER BY id", (job_id,))
        )

    def wait_over(self, job_id: int, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            row = self.job(job_id)
            if row["status"] in ("finished", "cancelled"):
                return row
            if row["status"] == "held":
                raise AssertionError(f"job {job_id} is held: its owner cannot pay a slice")
            if not self.alive():
                raise AssertionError("the worker died:\n" + self.logtext()[-3000:])
            time.sleep(0.1)
        raise AssertionError(f"job {job_id} did not end in {timeout} s: {self.job(job_id)}")

    def balance(self, account_id: int) -> int:
        return self.hostile.db.transact(sql.balance, account_id)


def start_rig(
    tmp_path,
    *,
    memory_mb: int = 256,
    slice_seconds: float = 2.0,
    disk_mb: int = 64,
    output_mb: int = 4,
    nofreeze_strikes: int = 2,
    user: str | None = None,
) -> Rig:
    """A market (grace 10 s, a window of 0.2 s), a Fault-9 proxy in front of it, and a worker with
    the stated limits running jobs as an unused uid, in a staging directory of its own; returns
    once the worker has measured its speed and is idle (its baseline is then measured)."""
    hostile = start_market(
        tmp_path,
        "--window",
        "0.2",
        "--threshold",
        "1",
        "--test-job-size",
        "30",
        "--grace",
        "10",
        "--nofreeze-strikes",
        str(nofreeze_strikes),
        # a settled market: the worker is not under watch, so its slices are the --slice it asks
        # for (a watched worker gets 1/8 of it: the billing figures below count 2 s slices)
        "--watch-slices",
        "0",
    )
    proxy = FaultProxy(hostile.port).start()
    # world-readable and root-owned, as the sandbox needs (pytest's tmp dirs are 0700)
    staging = tempfile.mkdtemp(prefix="market-hostile-", dir="/var/tmp")
    os.chmod(staging, 0o755)
    log = os.path.join(str(tmp_path), "worker.log")
    uid_args = ["--user", user or JOB_UID] if os.geteuid() == 0 else []
    argv = [
        *TWISTD,
        "-n",
        "--pidfile=",
        f"--logfile={log}",
        "worker",
        "--server",
        proxy.url,
        "--client",
        str(hostile.client_id),
        "--token",
        hostile.client_token,
        "--slice",
        f"{slice_seconds:g}",
        "--memory",
        str(memory_mb),
        "--disk",
        str(disk_mb),
        "--output",
        str(output_mb),
        *uid_args,
    ]
    environment = env()
    environment["MARKET_SANDBOX_DIR"] = staging
    proc = subprocess.Popen(
        argv, cwd=str(tmp_path), env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )
    rig = Rig(hostile, proxy, proc, log, staging, memory_mb, slice_seconds, disk_mb, output_mb)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if not rig.alive():
            raise RuntimeError("the worker exited:\n" + rig.logtext()[-3000:])
        speed = hostile.db.transact(
            lambda tx: tx.scalar("SELECT COUNT(*) FROM speeds WHERE client_id = ?", (hostile.client_id,))
        )
        if speed:
            break
        time.sleep(0.1)
    else:
        raise RuntimeError("the worker did not measure its speed in 60 s:\n" + rig.logtext()[-3000:])
    time.sleep(0.5)
    rig.baseline_mb = tree_rss_mb(rig.pid)
    return rig


def stop_rig(rig: Rig) -> None:
    terminate(rig.proc, 20)
    rig.proxy.stop()
    rig.hostile.market.stop()
    shutil.rmtree(rig.staging, ignore_errors=True)


def normal_job_finishes(rig: Rig, n: int = 3000, timeout: float = 30.0) -> bool:
    """After an attack: the worker takes the next lease and a normal job finishes correctly."""
    job_id = rig.submit_job(NORMAL, "main", [n], name="normal")
    row = rig.wait_over(job_id, timeout)
    return row["outcome"] == "finished" and tasklet.decode_result(bytes(row["result"])) == sum(i * i for i in range(n))


def _attack(rig: Rig, name: str, run) -> dict[str, Any]:
    """Run ``run()`` (which returns figures) while watching the worker's whole process tree."""
    started = time.monotonic()
    with MemoryWatch(rig.pid, every=0.02, tree=True) as memory:
        figures = run()
    figures.update(
        attack=name,
        seconds=round(time.monotonic() - started, 2),
        peak_tree_mb=round(memory.peak, 1),
        bound_mb=rig.bound_mb,
        baseline_mb=round(rig.baseline_mb, 1),
        worker_alive=rig.alive(),
    )
    rig.figures.append(figures)
    return figures


def _archive(files: dict[str, str]) -> bytes:
    """A tar.gz task filesystem; every file executable."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _task_figures(rig: Rig, job_id: int, timeout: float) -> dict[str, Any]:
    row = rig.wait_over(job_id, timeout)
    output = bytes(row["result"] or b"")
    return {"outcome": row["outcome"], "message": row["error"] or "", "output_bytes": len(output), "output": output}


# -- the attacks -----------------------------------------------------------------------------------


def huge_limits_task(rig: Rig, ask_mb: int = 1024, ask_output: int = 256 << 20, timeout: float = 60) -> dict:
    """A task asking for far more than the worker gives: ``ask_mb`` of memory (so as much disk:
    100 %), ``ask_output`` bytes of output and ten minutes; it fills /tmp, allocates 90 % of what it
    asked in one process, then writes output for ever."""
    spec = {
        "environment": "busybox",
        "taskfs": "hog",
        "limits": {"time": 600, "memory": ask_mb, "disk": 100, "output": ask_output},
    }
    script = f"""#!/bin/sh
dd if=/dev/zero of=/tmp/fill bs=1048576 2>/dev/null
echo "disk $(wc -c < /tmp/fill)"
rm -f /tmp/fill
if dd if=/dev/zero of=/dev/null bs={ask_mb * 9 // 10}M count=20 2>/dev/null
then echo "memory granted"
else echo "memory refused"
fi
yes
"""
    archive = _archive({"control": "/task/run.sh\n", "run.sh": script})

    def run() -> dict:
        figures = _task_figures(rig, rig.submit_task(spec, archive, name="huge limits"), timeout)
        text = figures.pop("output")[:4096].decode(errors="replace")
        disk = [int(line.split()[1]) for line in text.splitlines() if line.startswith("disk ")]
        figures["disk_written_mb"] = round(disk[0] / (1 << 20), 1) if disk else None
        figures["memory_line"] = next((line for line in text.splitlines() if line.startswith("memory")), None)
        return figures

    return _attack(rig, "task asking for huge memory, disk and output", run)


def forking_memory_task(rig: Rig, children: int = 12, child_mb: int = 200, timeout: float = 60) -> dict:
    """A shell task that starts ``children`` processes each holding ``child_mb`` (dd's buffer),
    every one under the per-process limit it asked for, together far over it."""
    limits = {"time": 60, "memory": 4096, "disk": 1, "output": 4096}
    spec = {"environment": "busybox", "taskfs": "forks", "limits": limits}
    script = f"""#!/bin/sh
i=0
while [ $i -lt {children} ]; do
  dd if=/dev/zero of=/dev/null bs={child_mb}M count=1000000 2>/dev/null &
  i=$((i+1))
done
echo started {children}
wait
echo done
"""
    archive = _archive({"control": "/task/run.sh\n", "run.sh": script})

    def run() -> dict:
        figures = _task_figures(rig, rig.submit_task(spec, archive, name="forks"), timeout)
        figures["output"] = figures["output"][:200].decode(errors="replace")
        return figures

    return _attack(rig, f"task forking {children} children of {child_mb} MB", run)


NESTED_USERNS = r"""
import ctypes, json, os, struct, subprocess, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
CLONE_NEWUSER, SIGCHLD = 0x10000000, 17
found = {}

def errno_of(rc):
    return "ok" if rc == 0 else os.strerror(ctypes.get_errno())

found["unshare"] = errno_of(libc.unshare(CLONE_NEWUSER))
pid = libc.syscall(56, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0)  # clone
if pid == 0:
    os._exit(0)
found["clone"] = "ok" if pid > 0 else errno_of(pid)
if pid > 0:
    os.waitpid(pid, 0)
args = ctypes.create_string_buffer(struct.pack("QQQQQQQQ", CLONE_NEWUSER, 0, 0, 0, SIGCHLD, 0, 0, 0))
pid = libc.syscall(435, args, 64)  # clone3
if pid == 0:
    os._exit(0)
found["clone3"] = "ok" if pid > 0 else errno_of(pid)
if pid > 0:
    os.waitpid(pid, 0)
try:
    found["unshare -U"] = subprocess.run(["unshare", "-U", "true"], capture_output=True).returncode
except OSError as e:
    found["unshare -U"] = str(e)
found["escaped"] = any(found[k] == "ok" for k in ("unshare", "clone", "clone3")) or found["unshare -U"] == 0
# then a fork bomb in whatever namespace it got: how many processes can it hold at once?
kids = 0
for _ in range(%(forks)d):
    try:
        child = os.fork()
    except OSError:
        break
    if child == 0:
        os.execv("/usr/bin/sleep", ["sleep", "3"])
    kids += 1
found["forked"] = kids
print(json.dumps(found), flush=True)
"""


def nested_userns_task(rig: Rig, forks: int = 500, timeout: float = 60) -> dict:
    """A task that tries every way into a nested user namespace (unshare, clone and clone3 with
    CLONE_NEWUSER, the unshare program), where RLIMIT_NPROC might not follow it, then forks as
    many processes as it can."""
    limits = {"time": 30, "memory": 256, "disk": 1, "output": 4096}
    spec = {"environment": "python", "taskfs": "userns", "limits": limits}
    archive = _archive({"control": "/usr/bin/python3 /task/ns.py\n", "ns.py": NESTED_USERNS % {"forks": forks}})

    def run() -> dict:
        figures = _task_figures(rig, rig.submit_task(spec, archive, name="userns"), timeout)
        text = figures.pop("output").decode(errors="replace").strip()
        try:
            figures.update(json.loads(text.splitlines()[-1]))
        except (ValueError, IndexError):
            figures["printed"] = text[:500]
        return figures

    return _attack(rig, "nested user namespace, then a fork bomb", run)


def squashfs_bomb(unpacked_mb: int, path: str) -> str:
    """A squashfs image of a few hundred KB that unpacks to ``unpacked_mb`` (64 MB files of a
    repeated line; made by mksquashfs from pseudo files, nothing written on the way)."""
    src = tempfile.mkdtemp(prefix="bomb-")
    try:
        with open(os.path.join(src, "control"), "w") as f:
            f.write("/task/run.sh\n")
        pseudo = []
        for i in range(max(1, unpacked_mb // 64)):
            pseudo += ["-p", f"blob{i} f 644 0 0 yes squashfs-bomb | head -c {64 << 20}"]
        subprocess.run(
            ["mksquashfs", src, path, "-noappend", "-quiet", "-no-progress", *pseudo],
            check=True,
            stdout=subprocess.DEVNULL,
            timeout=120,
        )
    finally:
        shutil.rmtree(src, ignore_errors=True)
    return path


def squashfs_bomb_task(rig: Rig, unpacked_mb: int = 256, timeout: float = 60) -> dict:
    """A task whose squashfs task filesystem is small but unpacks to ``unpacked_mb`` (over the
    worker's --disk); the figure is how much the worker wrote to its disk for it."""
    image = squashfs_bomb(unpacked_mb, os.path.join(rig.staging, "bomb.sfs"))
    with open(image, "rb") as f:
        archive = f.read()
    os.unlink(image)
    limits = {"time": 10, "memory": 32, "disk": 50, "output": 1024}
    spec = {"environment": "busybox", "taskfs": "bomb.sfs", "limits": limits}
    tasks = os.path.join(rig.staging, "tasks")
    written = {"peak": 0}
    stop = threading.Event()

    def watch_disk() -> None:
        while not stop.is_set():
            total = 0
            for dirpath, _, filenames in os.walk(tasks):
                for name in filenames:
                    try:
                        total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
                    except OSError:
                        pass
            written["peak"] = max(written["peak"], total)
            stop.wait(0.05)

    def run() -> dict:
        watcher = threading.Thread(target=watch_disk, daemon=True)
        watcher.start()
        try:
            figures = _task_figures(rig, rig.submit_task(spec, archive, name="bomb"), timeout)
        finally:
            stop.set()
            watcher.join(5)
        figures.pop("output")
        figures.update(image_kb=len(archive) // 1024, unpacked_mb=unpacked_mb)
        figures["disk_written_mb"] = round(written["peak"] / (1 << 20), 1)
        return figures

    return _attack(rig, f"squashfs bomb ({unpacked_mb} MB)", run)


TASKLET_HOG = """
def find_os():
    u = "_" + "_"
    top = getattr((), u + "class" + u)
    base = getattr(top, u + "base" + u)
    listing = getattr(base, u + "subclasses" + u)
    classes = listing()
    for cls in classes:
        init = getattr(cls, u + "init" + u)
        names = getattr(init, u + "globals" + u, None)
        if names is not None and "fork" in names and "waitpid" in names:
            return names
    return None


def hog(children, child_mb, block_mb):
    found = {"fork": "not reachable", "children": 0, "allocated_mb": 0}
    names = find_os()
    if names is not None:
        fork = names["fork"]
        leave = names["_exit"]
        for i in range(children):
            try:
                pid = fork()
            except OSError as e:
                found["fork"] = "refused: " + str(e)
                break
            if pid == 0:
                held = b"x" * (child_mb * 1048576)
                for k in range(30000000):
                    pass
                leave(0)
            found["fork"] = "forked"
            found["children"] = found["children"] + 1
        for k in range(5000000):
            pass
    blocks = []
    try:
        while len(blocks) < 4096:
            blocks.append(b"x" * (block_mb * 1048576))
    except MemoryError:
        pass
    found["allocated_mb"] = len(blocks) * block_mb
    return found
"""


def tasklet_hog_job(rig: Rig, children: int = 6, child_mb: int = 200, timeout: float = 60) -> dict:
    """A market job that reaches os.fork through the object graph (the validator is not a security
    boundary), starts ``children`` processes each holding ``child_mb``, then allocates until
    MemoryError in its own process."""

    def run() -> dict:
        job_id = rig.submit_job(TASKLET_HOG, "hog", [children, child_mb, 16], name="hog")
        row = rig.wait_over(job_id, timeout)
        figures: dict[str, Any] = {"outcome": row["outcome"], "message": row["error"] or ""}
        if row["outcome"] == "finished":
            figures.update(tasklet.decode_result(bytes(row["result"])))
        return figures

    return _attack(rig, "market job that allocates and forks", run)


def fault9_delivery(rig: Rig, faults: int = 2, n: int = 2000, timeout: float = 60) -> dict:
    """The market answers Fault 9 (database unavailable) to the worker's next ``faults``
    deliveries (state/result/fail) of a normal job; the figures say whether the work was kept."""

    def run() -> dict:
        rig.proxy.fail_next(faults)
        faulted_before = len(rig.proxy.faulted)
        job_id = rig.submit_job(NORMAL, "main", [n], name="delivery")
        row = rig.wait_over(job_id, timeout)
        leases = rig.leases(job_id)
        return {
            "outcome": row["outcome"],
            "correct": row["outcome"] == "finished"
            and tasklet.decode_result(bytes(row["result"])) == sum(i * i for i in range(n)),
            "faults_answered": len(rig.proxy.faulted) - faulted_before,
            "lease_statuses": [lease["status"] for lease in leases],
            "lost_leases": sum(1 for lease in leases if lease["status"] in ("expired", "rejected")),
        }

    return _attack(rig, f"Fault 9 on {faults} deliveries", run)


STUCK = """def work(n):
    total = 0
    for i in range(3):
        total += sum(range(n))
    return total
"""


def nofreeze_job(rig: Rig, price: int = 100, timeout: float = 90) -> dict:
    """A market job whose one long built-in call never reaches a freeze point: each slice runs out
    and is billed; after the market's ``nofreeze-strikes`` it ends with the reason."""

    def run() -> dict:
        owner_before = rig.balance(rig.hostile.account_id)
        host_before = rig.balance(rig.hostile.owner_id)
        job_id = rig.submit_job(STUCK, "work", [10**12], price=price, name="stuck")
        row = rig.wait_over(job_id, timeout)
        leases = rig.leases(job_id)
        return {
            "outcome": row["outcome"],
            "message": row["error"] or "",
            "slices": row["slices"],
            "slice_statuses": [lease["slice_status"] for lease in leases],
            "executed_s": row["executed_ms"] / 1000,
            "owner_paid": owner_before - rig.balance(rig.hostile.account_id),
            "host_earned": rig.balance(rig.hostile.owner_id) - host_before,
            "leases_paid": sum(int(lease["paid"] or 0) for lease in leases),
        }

    return _attack(rig, "job with no freeze point", run)
