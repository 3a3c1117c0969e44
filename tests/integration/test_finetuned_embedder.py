"""The embedder's fine-tuning end to end, on a few pairs: the command (mined pairs, the build environment's
training, export, int8, checks), its reproducibility, and the fine-tuned model served by the real tritonserver
exactly like the base one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import msgspec
import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from build_engines.buildenv import ensure_build_venv
from build_engines.cli import render
from build_engines.deployment import Deployment
from build_engines.finetune.pairs import mine_pairs, write_bundle
from build_engines.gemma.build import PREFIXES, GemmaBuild, build_env
from config.settings import Settings
from corpus.index import load_index
from inference.embedding import Encoder
from server.triton.process import TritonPorts, TritonProcess
from tests.support.paths import ROOT

TEXTS = ["ma carte d'identité a été volée", "mon patron veut me licencier"]


@pytest.fixture(scope="module")
def finetuned(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("finetuned") / "model"
    command = [sys.executable, "-m", "build_engines", "finetune-embedder", "--max-pairs", "24", "--seed", "1"]
    result = subprocess.run(
        [*command, "--out", str(out)], capture_output=True, text=True, cwd=ROOT, timeout=900, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def test_the_command_builds_a_checked_model_directory(settings: Settings, finetuned: Path) -> None:
    meta = json.loads((finetuned / "embedder.json").read_text())
    tuning = meta["finetune"]
    assert tuning["pairs"] == 24 and tuning["steps"] == 1 and tuning["trained_layers"] == 2
    assert sum(tuning["pair_kinds"].values()) == 24
    assert meta["export"]["fine_tuned_tensors"] > 0
    assert meta["int8"]["check_vs_fp32"]["min_cosine"] >= 0.99
    assert meta["smoke_check"]["stolen_id_passage"] > meta["smoke_check"]["car_registration_passage"]
    base = Encoder(settings.embedding_dir).encode(TEXTS, "query")
    tuned = Encoder(finetuned).encode(TEXTS, "query")
    cosines = np.sum(base * tuned, axis=1)
    assert np.all(cosines < 0.99999), "the fine-tuned weights did not change the vectors"
    assert np.all(cosines > 0.9), "one step at a small learning rate moved the vectors far"


def test_training_is_reproducible(settings: Settings, tmp_path: Path) -> None:
    index = load_index(settings.resolved_index_dir)
    write_bundle(mine_pairs(index.fiches, seed=2, max_pairs=8), index.fiches, tmp_path / "bundle")
    build = GemmaBuild(settings.cache_dir)
    python = ensure_build_venv(build.venv, print)
    options = {"layers": 1, "epochs": 1, "batch": 4, "lr": 1e-4, "seed": 2, "threads": 2, "passage_tokens": 128}
    options |= {"query_prefix": PREFIXES["query"], "passage_prefix": PREFIXES["passage"]}
    weights = []
    for run in ("a", "b"):
        command = [str(python), "-m", "build_engines.finetune.train", str(build.checkpoint), str(tmp_path / "bundle")]
        command += [str(tmp_path / run), json.dumps(options)]
        result = subprocess.run(command, capture_output=True, text=True, env=build_env(), timeout=600, check=False)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        weights.append((tmp_path / run / "weights.safetensors").read_bytes())
    assert weights[0] == weights[1]


@pytest.fixture(scope="module")
def query_tower(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("query-tower") / "model"
    command = [sys.executable, "-m", "build_engines", "finetune-embedder", "--query-tower", "--max-pairs", "24"]
    result = subprocess.run(
        [*command, "--seed", "1", "--out", str(out)], capture_output=True, text=True, cwd=ROOT, timeout=900, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def test_the_query_tower_is_trained_for_the_index(settings: Settings, query_tower: Path) -> None:
    meta = json.loads((query_tower / "embedder.json").read_text())
    index = load_index(settings.resolved_index_dir)
    assert meta["query_tower"]["index_model"] == index.manifest.embedding_model
    assert meta["finetune"]["side"] == "query" and meta["finetune"]["pairs"] == 24 and meta["finetune"]["steps"] == 1
    assert meta["int8"]["check_vs_fp32"]["min_cosine"] >= 0.99


def test_triton_serves_queries_with_the_tower_and_passages_with_the_base_model(
    settings: Settings, query_tower: Path, tmp_path: Path
) -> None:
    default = Deployment.default(settings)
    deployment = msgspec.structs.replace(
        default, embedder=msgspec.structs.replace(default.embedder, query_model_dir=query_tower)
    )
    repository = render(settings, deployment, tmp_path / "repository")
    served = {}
    with TritonProcess(repository, tmp_path / "triton", TritonPorts.free(), log=tmp_path / "triton.log") as triton:
        client = grpcclient.InferenceServerClient(triton.grpc_url)
        for kind in ("query", "passage"):
            inputs = [grpcclient.InferInput("text", [2, 1], "BYTES"), grpcclient.InferInput("kind", [2, 1], "BYTES")]
            inputs[0].set_data_from_numpy(np.array([[t.encode()] for t in TEXTS], dtype=np.object_))
            inputs[1].set_data_from_numpy(np.full((2, 1), kind.encode(), dtype=np.object_))
            served[kind] = client.infer("embedder", inputs, client_timeout=60).as_numpy("embedding")
    base = Encoder(settings.embedding_dir)
    tower = Encoder(query_tower).encode(TEXTS, "query")
    assert np.all(np.sum(served["query"] * tower, axis=1) > 0.999)
    assert np.all(np.sum(served["passage"] * base.encode(TEXTS, "passage"), axis=1) > 0.999)
    assert np.all(np.sum(tower * base.encode(TEXTS, "query"), axis=1) < 0.99999), "the tower changed nothing"


def test_triton_serves_the_finetuned_model(settings: Settings, finetuned: Path, tmp_path: Path) -> None:
    default = Deployment.default(settings)
    deployment = msgspec.structs.replace(
        default, embedder=msgspec.structs.replace(default.embedder, model_dir=finetuned, query_model_dir=None)
    )
    repository = render(settings, deployment, tmp_path / "repository")
    with TritonProcess(repository, tmp_path / "triton", TritonPorts.free(), log=tmp_path / "triton.log") as triton:
        client = grpcclient.InferenceServerClient(triton.grpc_url)
        data = np.array([[t.encode()] for t in TEXTS], dtype=np.object_)
        inputs = [grpcclient.InferInput("text", [2, 1], "BYTES"), grpcclient.InferInput("kind", [2, 1], "BYTES")]
        inputs[0].set_data_from_numpy(data)
        inputs[1].set_data_from_numpy(np.full((2, 1), b"query", dtype=np.object_))
        served = client.infer("embedder", inputs, client_timeout=60).as_numpy("embedding")
    expected = Encoder(finetuned).encode(TEXTS, "query")
    assert np.all(np.sum(served * expected, axis=1) > 0.999)
