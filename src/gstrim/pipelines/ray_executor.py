"""The Ray executor (the optional extra `gstrim[ray]`): each job is a Ray task that declares what it uses,
its threads as CPUs and one GPU where it renders on CUDA, so that Ray places it on a node with room. A task
whose worker process dies (a node lost, a process killed) is retried by Ray and resumes from its run's last
checkpoint, because the dead worker's claim is stale (`claims`).

Every node must see the batch folder and the inputs at the same paths (a shared file system): that is
checked on every node before anything runs.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import os
import socket
import uuid
from pathlib import Path

from gstrim import progress, resources
from gstrim.errors import GstrimError
from gstrim.pipelines.jobs import Job, Report, perform

# retries after a worker dies (Ray's own default for tasks, stated so the behaviour is part of gstrim's)
MAX_RETRIES = 3
PROBE_PREFIX = ".gstrim-probe-"


def run_on_node(job: Job, threads: int) -> Report:
    import ray

    resources.set_node(ray.get_runtime_context().get_node_id())
    return perform(job, threads, quiet=True)


def missing_on_node(paths: list[str], probe: str, token: str) -> tuple[str, list[str]]:
    """(this host, the paths it cannot see, the probe file first when it cannot read what the driver wrote)."""
    missing = []
    try:
        if Path(probe).read_text() != token:
            missing.append(str(Path(probe).parent))
    except OSError:
        missing.append(str(Path(probe).parent))
    missing += [p for p in paths if not Path(p).exists()]
    return resources.where()["host"], missing


CONNECT_TIMEOUT_S = 5.0
PROBE_TIMEOUT_S = 120.0  # a node's answer to the shared-folder check (a task of no CPUs: it starts at once)


def reachable(address: str | None) -> None:
    """Refuse a HOST:PORT where nothing listens at once (Ray itself retries for minutes)."""
    host, sep, port = (address or "").rpartition(":")
    if not sep or not port.isdigit() or "://" in address:
        return  # none (a cluster of this machine), auto, or a ray:// client address: Ray's own checks
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise GstrimError(f"cannot join the Ray cluster at {address}: nothing answers there ({exc.strerror or exc}); "
                          "start it with `ray start --head`") from None


def auth_hint() -> str:
    """What to say when joining failed and the cluster may ask for its token: Ray 2.60's `ray start --head` turns
    token authentication on, and a driver given HOST:PORT only sends the token in token mode (measured: without
    it ray.init retries for ~10 s behind InvalidAuthToken warnings, then "Failed to connect")."""
    if os.environ.get("RAY_AUTH_MODE", "").lower() == "token":
        return ""
    has_token = (Path.home() / ".ray" / "auth_token").is_file() or "RAY_AUTH_TOKEN" in os.environ \
        or "RAY_AUTH_TOKEN_PATH" in os.environ
    return ("; if the cluster asks for a token (InvalidAuthToken above: Ray 2.60's `ray start --head` does), run "
            "gstrim with RAY_AUTH_MODE=token as its nodes (docs/cluster.md)") if has_token else ""


class RayExecutor:
    inline = False

    def __init__(self, address: str | None, threads: int, paths: list):
        try:
            import ray
        except ImportError:
            raise GstrimError("the ray executor needs Ray: pip install 'gstrim[ray]'") from None
        self.ray = ray
        self.started = not ray.is_initialized()
        if self.started:
            reachable(address)
        try:  # whatever fails from here on, what was started is shut down
            if self.started:
                try:
                    ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING,
                             configure_logging=True)
                except (ConnectionError, RuntimeError, ValueError) as exc:
                    raise GstrimError(f"cannot join the Ray cluster at {address}: {str(exc).splitlines()[0]}"
                                      f"{auth_hint()}") from None
            self.threads = threads
            nodes = [n for n in ray.nodes() if n.get("Alive")]
            most = max(n["Resources"].get("CPU", 0) for n in nodes)
            if threads > most:
                raise GstrimError(f"each run asks for {threads} CPUs (--threads) and no node of the Ray cluster has "
                                  f"more than {most:g}")
            self.gpus = any(n["Resources"].get("GPU", 0) > 0 for n in nodes)
            self.task = ray.remote(run_on_node)
            progress.log(f"ray executor: {len(nodes)} nodes, {ray.cluster_resources().get('CPU', 0):g} CPUs, "
                         f"{ray.cluster_resources().get('GPU', 0):g} GPUs; {threads} threads per run")
            self.check_nodes(nodes, [str(p) for p in paths])
        except BaseException:
            self.close()
            raise

    def check_nodes(self, nodes: list[dict], paths: list[str]) -> None:
        """Refuse a cluster where some node cannot see the output folder (paths[0]) or an input, or does not
        answer within PROBE_TIMEOUT_S."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        folder, token = Path(paths[0]), uuid.uuid4().hex
        probe = folder / f"{PROBE_PREFIX}{token}"
        made = not folder.exists()
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_text(token)
        try:
            check = self.ray.remote(missing_on_node)
            refs = {n["NodeID"]: check.options(num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(
                n["NodeID"], soft=False)).remote(paths, str(probe), token) for n in nodes}
            for node, ref in refs.items():
                try:
                    host, missing = self.ray.get(ref, timeout=PROBE_TIMEOUT_S)
                except self.ray.exceptions.GetTimeoutError:
                    raise GstrimError(f"Ray node {node[:8]} did not answer the shared-folder check in "
                                      f"{PROBE_TIMEOUT_S:.0f} s; is it alive (ray status)?") from None
                if missing:
                    raise GstrimError(f"Ray node {node[:8]} on {host} cannot see it: every node must share the "
                                      "output folder and the inputs at the same paths (docs/cluster.md)", missing[0])
        finally:
            probe.unlink(missing_ok=True)
            if made and not any(folder.iterdir()):
                folder.rmdir()  # nothing half-written when the check fails; the batch makes it again

    def room(self, running: int) -> bool:
        return True  # Ray queues tasks until a node has their resources

    def submit(self, job: Job) -> cf.Future:
        gpu = job.gpu if job.gpu is not None else self.gpus
        options = {"num_cpus": self.threads, "num_gpus": 1 if gpu else 0, "max_retries": MAX_RETRIES}
        return self.task.options(**options).remote(job, self.threads).future()

    def lost(self, future: cf.Future, exc: BaseException) -> bool:
        return False  # Ray has retried the task already

    def close(self) -> None:
        if self.started and self.ray.is_initialized():
            self.ray.shutdown()
