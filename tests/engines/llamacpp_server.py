"""llama-cpp-python's OpenAI server on the embedded GGUF, as ``make test-engines`` runs it (its venv's python).

``python llamacpp_server.py GGUF PORT``. Two settings are not the server's defaults, both needed here:
- the model is loaded with ``use_extra_bufts=False`` (no CLI flag exists for it): the default
  weight-repacking path segfaults on this machine's AMX CPU;
- ``interrupt_requests=False``: by default a second request kills the running stream.
The served name is the gateway's default model name, so both sides agree on ``model``.
"""

from __future__ import annotations

import sys

import llama_cpp.llama_cpp as native
import uvicorn
from llama_cpp.server.app import create_app
from llama_cpp.server.settings import ModelSettings, ServerSettings

_default_params = native.llama_model_default_params


def _no_extra_bufts() -> object:
    params = _default_params()
    params.use_extra_bufts = False
    return params


native.llama_model_default_params = _no_extra_bufts


def main() -> None:
    gguf, port = sys.argv[1], int(sys.argv[2])
    server = ServerSettings(host="127.0.0.1", port=port, interrupt_requests=False)
    model = ModelSettings(model=gguf, model_alias="smollm2-135m-instruct", n_ctx=2048, n_threads=2, verbose=True)
    app = create_app(server_settings=server, model_settings=[model])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="info")


if __name__ == "__main__":
    main()
