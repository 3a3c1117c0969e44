"""Versioned releases on the real tritonserver in EXPLICIT model-control mode: a new version is loaded
while the old one serves; a broken version fails to load and the previous one keeps answering."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from build_engines.versions import DeployError, deploy, publish_version, versions
from config.settings import Settings
from server.triton.process import TritonPorts, TritonProcess

MODEL = "embedder"


def _embed(client: grpcclient.InferenceServerClient) -> str:
    data = np.array([[b"carte d'identit\xc3\xa9 vol\xc3\xa9e"]], dtype=np.object_)
    inputs = [grpcclient.InferInput("text", [1, 1], "BYTES"), grpcclient.InferInput("kind", [1, 1], "BYTES")]
    inputs[0].set_data_from_numpy(data)
    inputs[1].set_data_from_numpy(np.array([[b"query"]], dtype=np.object_))
    result = client.infer(MODEL, inputs, client_timeout=30)
    assert result.as_numpy("embedding").shape[0] == 1
    version: str = result.get_response().model_version
    return version


def test_publish_then_deploy_keeps_serving_through_a_broken_release(settings: Settings, tmp_path: Path) -> None:
    repository = tmp_path / "repository"
    assert publish_version(settings.repository_dir / MODEL, repository) == 1
    manifest = json.loads((repository / MODEL / "1" / "manifest.json").read_text())
    assert manifest["parameters"]["model_dir"] == str(settings.embedding_dir)
    assert manifest["built_from"]["source"]["sha256"]  # the weights the model was built from
    assert {"python", "tritonclient", "onnxruntime"} <= set(manifest["tools"])

    work = tmp_path / "triton"
    with TritonProcess(repository, work, TritonPorts.free(), log=work / "log.txt", explicit_models=[MODEL]) as triton:
        client = grpcclient.InferenceServerClient(triton.grpc_url)
        assert _embed(client) == "1"

        # Version 2, published with the CLI while version 1 serves.
        published = subprocess.run(
            [sys.executable, "-m", "build_engines", "publish", "--model", MODEL, "--repository", str(repository)],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        assert published.returncode == 0, published.stderr
        assert versions(repository / MODEL) == [1, 2]
        assert deploy(triton.grpc_url, MODEL) == "2"
        assert _embed(client) == "2"

        # Version 3 is broken: its load fails with Triton's reason and version 2 keeps answering.
        assert publish_version(settings.repository_dir / MODEL, repository) == 3
        (repository / MODEL / "3" / "model.py").write_text(
            "class TritonPythonModel:\n    def initialize(self, args):\n        raise RuntimeError('broken build')\n"
        )
        with pytest.raises(DeployError, match=r"(?s)version 3 .*broken build.*still serving version\(s\) 2"):
            deploy(triton.grpc_url, MODEL)
        assert _embed(client) == "2"
        assert client.is_model_ready(MODEL, "2") and not client.is_model_ready(MODEL, "3")
        client.close()
