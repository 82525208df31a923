"""The model server: what every instance (and every local worker) runs.

* :func:`serve` runs it (``mlops-lb serve --port 8080``); :func:`worker_command` is the argv that starts one as a
  process; :func:`create_app` builds the FastAPI app (``POST /predict``, ``GET /health``, ``GET /metrics``).
* :func:`serve_llm` runs the LLM emulator (``mlops-lb serve --llm``): an OpenAI-compatible server whose
  engine (:class:`EngineParams`, :mod:`.llm_engine`) emulates continuous batching; :func:`llm_command` is its argv.
* :func:`load_model` loads the bundled demo model or a user's model file; :func:`demo_payloads` makes request bodies
  for the load generator.

Importing this package is light: FastAPI, uvicorn and scikit-learn load only when a function needs them.

Example::

    from mlops_lb.serving import worker_command, demo_payloads
    proc = subprocess.Popen(worker_command(port=8081, target_id="w1", slots=2, min_service_ms=20))
    bodies = demo_payloads(256)              # JSON bodies for POST /predict
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .llm_engine import EngineParams
from .model import ModelHandle, check_model, demo_payloads, load_model
from .server import llm_command, serve, serve_llm, worker_command

if TYPE_CHECKING:
    from .app import create_app

__all__ = [
    "EngineParams",
    "ModelHandle",
    "check_model",
    "create_app",
    "demo_payloads",
    "llm_command",
    "load_model",
    "serve",
    "serve_llm",
    "worker_command",
]


def __getattr__(name: str) -> Any:
    if name == "create_app":  # FastAPI is imported only by those who build the app
        from .app import create_app

        return create_app
    raise AttributeError(f"module 'mlops_lb.serving' has no attribute {name!r}")
