"""A throwaway Ray cluster on loopback (a head and more nodes, one CPU each) for tests and benchmarks.

Every node listens on 127.0.0.2 only (Ray would rewrite 127.0.0.1 to the machine's external
address), every port is picked free (two clusters can run side by side), authentication and
usage stats are off, and the object store is capped. `ray start --block` runs in its own
session; stop() ends exactly the processes of those sessions (never `ray stop`, which would end
every Ray of this user on the machine).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HOST = "127.0.0.2"
RAY_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "RAY_DISABLE_DOCKER_CPU_WARNING": "1"}
_WAIT_NODES = """
import sys, time, ray
ray.init(address=sys.argv[1], log_to_driver=False, logging_level="ERROR")
deadline = time.monotonic() + float(sys.argv[3])
while sum(n["Alive"] for n in ray.nodes()) < int(sys.argv[2]) and time.monotonic() < deadline:
    time.sleep(0.2)
print(sum(n["Alive"] for n in ray.nodes()))
"""


def free_port(host: str = HOST) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def ray_env(**extra) -> dict:
    """The environment for anything that talks to the cluster (ray start, drivers)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_ADDRESS")}
    return {**env, **RAY_ENV, **extra}


class LocalRayCluster:
    def __init__(self, nodes: int = 2, cpus_per_node: int = 1, object_store_mb: int = 200, env: dict | None = None):
        self.nodes, self.cpus, self.object_store_mb = nodes, cpus_per_node, object_store_mb
        self.env = ray_env(**(env or {}))
        self.temp: Path | None = None
        self.address = ""
        self.procs: list[subprocess.Popen] = []

    def _start_node(self, *args: str) -> None:
        log = open(self.temp / f"node{len(self.procs)}.log", "w")
        cmd = [str(Path(sys.executable).with_name("ray")), "start", *args, f"--node-ip-address={HOST}",
               f"--num-cpus={self.cpus}", "--num-gpus=0", f"--object-store-memory={self.object_store_mb * 1000 * 1000}",
               f"--node-manager-port={free_port()}", f"--object-manager-port={free_port()}",
               f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
               f"--metrics-export-port={free_port()}", f"--runtime-env-agent-port={free_port()}",
               "--disable-usage-stats", "--block"]
        self.procs.append(subprocess.Popen(cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                           stdin=subprocess.DEVNULL, start_new_session=True))
        log.close()

    def start(self, timeout: float = 180.0) -> "LocalRayCluster":
        # short: Ray's unix socket paths live below the temp dir and may not exceed 107 characters
        self.temp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))
        port = free_port()
        self.address = f"{HOST}:{port}"
        try:
            self._start_node("--head", f"--port={port}", "--include-dashboard=false", f"--temp-dir={self.temp}",
                             f"--dashboard-port={free_port()}")
            deadline = time.monotonic() + timeout
            while not self._accepts(port):
                if self.procs[0].poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the Ray head did not start: {self.log_tail()}")
                time.sleep(0.2)
            for _ in range(self.nodes - 1):
                self._start_node(f"--address={self.address}")
            seen = subprocess.run([sys.executable, "-c", _WAIT_NODES, self.address, str(self.nodes),
                                   str(max(1.0, deadline - time.monotonic()))], env=self.env, capture_output=True,
                                  text=True, timeout=timeout + 60)
            if seen.returncode != 0 or seen.stdout.strip() != str(self.nodes):
                raise RuntimeError(f"{seen.stdout.strip() or 0} of {self.nodes} Ray nodes came up: "
                                   f"{seen.stderr.strip()[-500:]} {self.log_tail()}")
        except BaseException:
            self.stop()
            raise
        return self

    @staticmethod
    def _accepts(port: int) -> bool:
        with socket.socket() as s:
            s.settimeout(0.5)
            return s.connect_ex((HOST, port)) == 0

    def log_tail(self) -> str:
        out = []
        for log in sorted(self.temp.glob("node*.log")) if self.temp else []:
            out.append(f"{log.name}: {log.read_text(errors='replace')[-800:]}")
        return " | ".join(out)

    def _session_pids(self) -> list[int]:
        """Processes in the sessions of our `ray start` processes (raylets, GCS, workers, agents)."""
        from footage_helpers import live_processes

        sessions = {p.pid for p in self.procs}
        return [pid for pid, _, fields in live_processes() if int(fields[3]) in sessions]

    def stop(self) -> None:
        for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            pids = self._session_pids()
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except OSError:
                    pass
            deadline = time.monotonic() + grace
            while self._session_pids() and time.monotonic() < deadline:
                for p in self.procs:
                    p.poll()  # reap ours, so they do not linger as zombies
                time.sleep(0.1)
        for p in self.procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        self.procs = []
        if self.temp is not None:
            shutil.rmtree(self.temp, ignore_errors=True)
            self.temp = None

    def __enter__(self) -> "LocalRayCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
