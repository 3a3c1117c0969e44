"""The one settings tree. Read once at start-up (``Settings.from_env``) and passed down.

Every field maps to one environment variable ``ALBERT_<FIELD>``; nothing else in the project reads the
environment for configuration. Each field belongs to one section (``SECTIONS``), which says where it takes
effect: ``paths``, ``gateway``, ``search`` and ``answers`` when the gateway starts; ``ingest`` and ``build``
when set-up builds the models, the Triton repository and the index. Set-up records the values it built with
(``Settings.set_up_record``); the gateway refuses to start when the environment sets one of those to another
value (``check_set_up``): it would not take effect. ``docs/settings.md`` is generated from this file
(``python -m config.reference``).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import msgspec

__all__ = [
    "EMBEDDER_DEFAULTS",
    "SECTIONS",
    "SET_UP_SECTIONS",
    "EmbedderDefaults",
    "Settings",
    "SettingsError",
    "check_set_up",
    "set_up_values",
]


class SettingsError(ValueError):
    pass


class EmbedderDefaults(msgspec.Struct, frozen=True):
    """Retrieval choices that depend on the embedding model, each measured for it (benchmarks/README.md):
    cosines, and how much to trust them against BM25, differ from one model to another."""

    fusion: Literal["scores", "rrf"]
    dense_weight: float
    expand_dense_query: bool
    """Embed the query with its acronym and everyday-word expansions (e5 gains from them; EmbeddingGemma
    loses: it reads them better unaided)."""
    min_dense_cosine: float
    """The coverage rule's threshold (``Settings.min_dense_cosine`` unless ``relevance_min_dense`` is set),
    calibrated on the dev split, the situational set, one-word queries and the off-topic set
    (docs/architecture.md, "Answers")."""
    passage_max_tokens: int
    grounding_min_semantic: float
    """The grounding check's cosine threshold (``Settings.grounding_min_semantic`` overrides it)."""


EMBEDDER_DEFAULTS = {
    "e5-small": EmbedderDefaults(
        fusion="rrf",
        dense_weight=1.0,
        expand_dense_query=True,
        min_dense_cosine=0.857,
        passage_max_tokens=256,
        grounding_min_semantic=0.9,  # not calibrated: e5 cosines of unrelated French sentences reach 0.8
    ),
    "embeddinggemma": EmbedderDefaults(
        fusion="scores",
        dense_weight=5.0,
        expand_dense_query=False,
        min_dense_cosine=0.34,
        passage_max_tokens=128,
        grounding_min_semantic=0.72,
    ),
}


SECTIONS: dict[str, tuple[str, ...]] = {
    "paths": ("cache_dir", "index_dir", "model_interface", "generator_tokenizer_dir"),
    "gateway": (
        "http_host",
        "http_port",
        "http_head_timeout_s",
        "drain_s",
        "access_log",
        "log_questions",
        "grpc_host",
        "grpc_port",
        "grpc_max_receive_bytes",
        "grpc_max_send_bytes",
        "grpc_max_concurrent_streams",
        "grpc_keepalive_s",
        "grpc_tls_cert",
        "grpc_tls_key",
        "grpc_tls_client_ca",
        "triton_grpc_url",
        "triton_http_port",
        "triton_metrics_port",
        "triton_timeout_s",
        "triton_restarts",
        "answers_max_active",
        "answers_max_waiting",
        "search_max_active",
        "search_max_waiting",
        "embed_batch_max",
        "embed_batch_wait_ms",
        "cache_entries",
    ),
    "search": (
        "max_query_chars",
        "default_k",
        "max_k",
        "audience_filter",
        "other_audience_penalty",
        "other_audience_weight",
        "fusion",
        "lexical_boost",
        "dense_weight",
        "dense_query_expansion",
        "dense_feedback",
        "candidates",
        "rrf_k",
        "excerpts_per_fiche",
    ),
    "answers": (
        "answer_mode",
        "answer_fiches",
        "answer_prompt_tokens",
        "answer_default_max_tokens",
        "answer_max_tokens",
        "answer_min_supported",
        "answer_unsupported",
        "grounding_min_lexical",
        "grounding_min_semantic",
        "relevance_min_dense",
        "relevance_min_lexical",
        "generator_timeout_s",
    ),
    "ingest": ("embedder", "embedder_finetuned", "query_tower", "finetune_pairs", "passage_max_tokens", "dense_scope"),
    "build": (
        "embedding_precision",
        "embed_threads",
        "generator_model",
        "generator_threads",
        "generator_workers",
        "generator_max_queue",
    ),
}
"""Every field in exactly one section (tests/unit/config/test_settings.py), in the order docs/settings.md lists them."""

SET_UP_SECTIONS = ("ingest", "build")
"""The sections that take effect when set-up runs (``python -m build_engines setup``), not when the gateway starts."""


def _default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "albert-france-services"


def _decode(kind: type, value: Any) -> Any:
    if kind is Path and isinstance(value, str):
        return Path(value).expanduser()
    raise NotImplementedError


class Settings(msgspec.Struct, kw_only=True, frozen=True):
    cache_dir: Path = msgspec.field(default_factory=_default_cache)
    """Root of everything set-up produces: downloads, models, the rendered Triton repository, the index."""

    index_dir: Path | None = None
    """Search index directory; defaults to ``<cache_dir>/index``."""

    http_host: str = "127.0.0.1"
    """Address the HTTP gateway binds to."""

    http_port: int = 8080
    """Port of the HTTP gateway."""

    triton_grpc_url: str = "127.0.0.1:8001"
    """Triton's gRPC endpoint (host:port) used for inference."""

    triton_http_port: int = 8000
    """Triton's HTTP port (used by ``python -m server serve`` when it starts tritonserver)."""

    triton_metrics_port: int = 8002
    """Triton's metrics port (used by ``python -m server serve`` when it starts tritonserver)."""

    triton_timeout_s: float = 10.0
    """Deadline of one inference call to Triton; past it the request fails with 503 instead of hanging."""

    answers_max_active: int | None = None
    """Answers the gateway works on at the same time (retrieval, quoting or drafting, checking); default, from
    the rendered deployment's model interface: the embedding model's instances for quoted answers (1 on the
    CPU default), the generator's concurrent sequences for drafted ones (2 on the CPU default). See
    ``server/admission.py``."""

    answers_max_waiting: int = 1
    """Answers that may wait for one of those slots; one more gets 429 ``answers_overloaded`` at once, with a
    ``Retry-After`` estimated from the line ahead and the measured time per answer. Each one waiting adds
    about a service time to the wait of the next: under a burst on the CPU default, admitted answers took
    2.7 s (p50) with 0 waiting, 4.5 s with 1, 11.2 s with 2, for the same throughput (benchmarks/README.md,
    resilience)."""

    search_max_active: int = 64
    """Searches worked on at the same time (its own bound, larger: advisors still search while answers are
    saturated). Two full micro-batches (``embed_batch_max``, 32) in flight: at 16, 64 concurrent searches
    took 18 embedding calls instead of fewer than 16 (tests/integration/test_micro_batching.py)."""

    search_max_waiting: int = 256
    """Searches that may wait for a slot; one more gets 429 ``search_overloaded`` at once."""

    http_head_timeout_s: float = 10.0
    """A connection that has not sent a complete request head (request line and headers) this long after
    connecting, or after its previous response, is closed (slow or silent clients; server/http/protocol.py)."""

    drain_s: float = 30.0
    """On SIGTERM or Ctrl-C, how long requests in progress (streamed answers included) may take to finish
    before the gateway closes them; then tritonserver stops."""

    triton_restarts: int = 5
    """``python -m server serve``: times in a row the supervisor restarts a tritonserver that died (backoff
    1, 2, 4... s, reset after 5 minutes of good health); after that the process exits with an error so that
    an outer supervisor (systemd, Kubernetes) takes over."""

    access_log: bool = True
    """One log line per HTTP request: request id, method, path, status, duration, body sizes — never the query
    string or a body (``server/http/access_log.py``). /metrics counts requests either way."""

    log_questions: bool = False
    """Log every question (search and answers, HTTP and gRPC) with its audience. Off by default: questions
    carry what the person said (names, addresses, numbers); an operator turns it on knowingly."""

    model_interface: Path | None = None
    """The rendered repository's albert_interface.json: which Triton models and tensors the gateway calls
    (written by ``python -m build_engines render``); defaults to the one in the cache's repository."""

    embed_batch_max: int = 32
    """Most query texts the gateway sends to the embedding model in one call (micro-batching; capped by the
    model's max_batch_size from the interface file). 1 turns micro-batching off."""

    embed_batch_wait_ms: float = 2.0
    """Longest a query waits for others to share its embedding call — only while an earlier call is still
    in Triton (a query that arrives when nothing is in flight leaves at once)."""

    cache_entries: int = 4096
    """Query embeddings and retrieval results kept (each: least recently used first out); 0 turns the
    caches off."""

    max_query_chars: int = 2000
    """Longest accepted question, in characters."""

    default_k: int = 5
    """Fiches returned by /v1/search when k is not given."""

    max_k: int = 50
    """Largest accepted k."""

    audience_filter: Literal["prefer", "strict"] = "prefer"
    """How a request's audience acts: ``prefer`` ranks fiches of every audience and demotes those outside the
    requested one (questions cross audiences: a consumer rule filed under professionnels, a start-up aid under
    particuliers); ``strict`` returns only its fiches."""

    other_audience_penalty: float = 0.05
    """``prefer`` with score fusion: subtracted from the score of a fiche outside the requested audience (the
    scores are cosines plus at most ``1.5 x lexical_boost``)."""

    other_audience_weight: float = 0.5
    """``prefer`` with rank fusion: factor on the fused score of a fiche outside the requested audience."""

    fusion: Literal["scores", "rrf"] | None = None
    """How the dense and BM25 scores are fused (server/search/retrieval/search.py); default: the chosen embedder's
    (EmbeddingGemma: scores, e5: rrf)."""

    lexical_boost: float = 0.1
    """Score fusion: weight of the whole-fiche BM25 score (divided by the query's best) added to the cosine;
    the best unit's BM25 score counts half as much."""

    dense_weight: float | None = None
    """Rank fusion: weight of the dense ranking (the two BM25 rankings weigh 1); default: the chosen embedder's
    (EmbeddingGemma 5, e5 1)."""

    dense_query_expansion: bool | None = None
    """Embed the query with its acronym and everyday-word expansions (BM25 always gets them); default: the
    chosen embedder's (e5 yes, EmbeddingGemma no)."""

    dense_feedback: float = 0.0
    """Pseudo-relevance feedback on the dense side: the query vector moves towards the mean head of its three
    best fiches by this weight before scoring again; 0 turns it off (0.3 lost 5 points of recall@5 on the dev
    split: benchmarks/README.md)."""

    candidates: int = 200
    """Depth of every ranking before fusion: fiches of each ranking (rrf), fused fiches (scores), and units
    ranked for excerpts."""

    rrf_k: int = 30
    """Reciprocal-rank-fusion constant: score = sum 1 / (rrf_k + rank)."""

    excerpts_per_fiche: int = 2
    """Best-matching chunks returned with each fiche."""

    embed_threads: int = 2
    """onnxruntime intra-op threads of one embedding model instance (Triton and ingestion)."""

    embedder: Literal["embeddinggemma", "e5-small"] = "embeddinggemma"
    """The embedding model served and used for ingestion: EmbeddingGemma-300m (768-d; the stronger one: recall@5
    0.89 against 0.61 for the e5 pipeline on the dev split, benchmarks/README.md) or multilingual-e5-small
    (384-d, faster). Changing it rebuilds the index."""

    embedder_finetuned: bool = False
    """Serve EmbeddingGemma fine-tuned on pairs mined from the corpus (and ``finetune_pairs``): set-up indexes
    with the model ``python -m build_engines finetune-embedder`` last trained, or trains one when there is none.
    Off by default: on the dev split, where choices are made, it did not beat the base model (0.87 against 0.89
    recall@5), and the training takes 29 minutes on two cores (a GPU host should need minutes)
    (benchmarks/README.md)."""

    query_tower: bool = True
    """Embed questions with EmbeddingGemma's query side fine-tuned against the index's own fiche vectors (the
    fiches stay embedded by the base model, so the index is not rebuilt): set-up trains it after indexing
    (11 minutes on two cores) and the served embedder uses it for queries only. On by default: chosen on the
    select set (recall@5 equal, MRR@10 +0.027), test 0.858 / 0.673 against 0.800 / 0.618 (benchmarks/README.md).
    Applies to the base EmbeddingGemma over fiche heads; ignored with ``embedder=e5-small``,
    ``embedder_finetuned`` (that model re-embeds the fiches) or another ``dense_scope``."""

    finetune_pairs: Path | None = None
    """Extra training pairs for the fine-tuned embedder, JSONL ``{"query": ..., "fiche_id": ...}`` (e.g. the
    fiches advisors chose for their questions)."""

    embedding_precision: Literal["int8", "fp32"] = "int8"
    """Weights of the embedding model's ONNX file (int8: cosine >= 0.99 to fp32, EmbeddingGemma
    40 ms per query on two cores instead of 70; fp32 for GPU hosts)."""

    passage_max_tokens: int | None = None
    """Tokens of a passage that are embedded at ingestion (the lexical index sees the whole chunk); default: the
    chosen embedder's (EmbeddingGemma 128: fiche heads embed in half the time of 256 at the same recall on the
    dev split; e5 256)."""

    dense_scope: Literal["heads", "topics", "chunks", "all"] = "heads"
    """What gets a dense vector: fiche heads only (the CPU default); heads and topics (title with description,
    every heading path — chapters, situations, cases — and related question: 46,916 short texts); heads and
    every chunk (``chunks``: 37,758 more rows); or heads, topics and chunks (``all``). The wider scopes are for
    GPU hosts; benchmarks/README.md has what each gives and costs."""

    generator_model: Literal["qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"] = "qwen2.5-coder-0.5b"
    """The CPU generator that set-up builds and renders (Qwen2.5-Coder-Instruct, int4 onnxruntime-genai).
    The 1.5B is about 3 times slower; benchmarks/README.md, "Answer quality", compares them."""

    generator_threads: int = 2
    """onnxruntime intra-op threads of the CPU generator (written into its genai_config.json at build)."""

    generator_workers: int = 2
    """Sequences the CPU generator decodes at the same time (each with ``generator_threads`` threads).
    2 on two cores: time to first token at concurrency 4 is about 30 % lower than with 1 (benchmarks/)."""

    generator_max_queue: int = 16
    """Generation requests waiting in Triton for a worker; more are refused (429) instead of piling up."""

    generator_timeout_s: float = 120.0
    """Longest time an answer may take (queue + prompt + generation); past it: 504, and generation stops."""

    generator_tokenizer_dir: Path | None = None
    """Tokenizer and chat template of the served generator; defaults to the checkpoint named in the
    model interface file."""

    answer_prompt_tokens: int = 768
    """Token budget of the generator's prompt (instructions + excerpts + question); the prompt's
    prefill time grows with it (CPU: about 190 tokens/s on 2 cores)."""

    answer_fiches: int = 3
    """Retrieved fiches whose excerpts go into the prompt (the others still appear in the bundle)."""

    answer_mode: Literal["quoted", "drafted", "auto"] = "quoted"
    """What the answer is. ``quoted``: the fiches' sentences that match the situation, verbatim, each cited
    (no generation). ``drafted``: the generator's draft, checked sentence by sentence against the sources.
    ``auto``: the checked draft, or the quoted answer when the draft fails the checks (fewer than
    ``answer_min_supported`` of its sentences supported). Chosen by ``python -m benchmarks.answer_quality``
    (benchmarks/README.md, "Answer quality")."""

    answer_min_supported: float = 0.75
    """``auto`` mode: the share of the draft's sentences that must be supported for the draft to be shown."""

    answer_unsupported: Literal["remove", "mark"] = "remove"
    """A drafted sentence that no source supports is removed, or kept and marked "(non vérifié)"."""

    grounding_min_lexical: float = 0.5
    """A source supports a sentence when it holds at least this share of the sentence's content words..."""

    grounding_min_semantic: float | None = None
    """...and its closest sentence reaches this cosine with it (the same numbers and the same polarity are
    required too). Default: the chosen embedder's value (cosines of different models are not comparable)."""

    answer_default_max_tokens: int = 320
    """Answer length when the request does not say (tokens)."""

    answer_max_tokens: int = 1024
    """Largest max_tokens a request may ask for."""

    relevance_min_dense: float | None = None
    """The fiches cover a question when its best dense cosine (query vs fiche heads) reaches this...

    ...or its best whole-fiche BM25 score reaches ``relevance_min_lexical``; otherwise the answer says the
    fiches do not cover it, without generating. Default: the value calibrated for the chosen embedder
    (docs/architecture.md, "Answers"); cosines of different models are not comparable."""

    relevance_min_lexical: float = 9.0
    """See ``relevance_min_dense``."""

    grpc_host: str = "127.0.0.1"
    """Address of the gRPC API (``albert.v1.AnswerService``), served by the gateway process."""

    grpc_port: int = 50051
    """Port of the gRPC API; 0 turns it off."""

    grpc_max_receive_bytes: int = 64 * 1024
    """Largest request message (the HTTP body limit is the same)."""

    grpc_max_send_bytes: int = 16 * 1024 * 1024
    """Largest response message."""

    grpc_max_concurrent_streams: int = 256
    """Concurrent calls on one HTTP/2 connection."""

    grpc_keepalive_s: float = 60.0
    """Interval of the server's keepalive pings on idle connections."""

    grpc_tls_cert: Path | None = None
    """PEM certificate chain of the gRPC server; with ``grpc_tls_key``, the API is served over TLS."""

    grpc_tls_key: Path | None = None
    """PEM private key of the gRPC server."""

    grpc_tls_client_ca: Path | None = None
    """PEM CA bundle: when set, clients must present a certificate it signed (mutual TLS)."""

    def __post_init__(self) -> None:
        bounds = {
            "answers_max_active": (1 if self.answers_max_active is None else self.answers_max_active, 1),
            "answers_max_waiting": (self.answers_max_waiting, 0),
            "search_max_active": (self.search_max_active, 1),
            "search_max_waiting": (self.search_max_waiting, 0),
            "triton_restarts": (self.triton_restarts, 0),
        }
        for name, (value, least) in bounds.items():
            if value < least:
                raise SettingsError(f"ALBERT_{name.upper()} must be at least {least}, got {value}")
        if self.drain_s < 0:
            raise SettingsError(f"ALBERT_DRAIN_S must not be negative, got {self.drain_s}")
        if self.http_head_timeout_s <= 0:
            raise SettingsError(f"ALBERT_HTTP_HEAD_TIMEOUT_S must be positive, got {self.http_head_timeout_s}")
        if self.embedder_finetuned and self.embedder != "embeddinggemma":
            raise SettingsError("ALBERT_EMBEDDER_FINETUNED applies to ALBERT_EMBEDDER=embeddinggemma only")

    @property
    def resolved_model_interface(self) -> Path:
        return self.model_interface or self.repository_dir / "albert_interface.json"

    @property
    def resolved_index_dir(self) -> Path:
        return self.index_dir or self.cache_dir / "index"

    @property
    def models_dir(self) -> Path:
        return self.cache_dir / "models"

    @property
    def embedding_dir(self) -> Path:
        """The built embedding model directory (model.onnx, tokenizer.json, embedder.json) for the chosen
        embedder and precision."""
        name = (
            "e5"
            if self.embedder == "e5-small"
            else "embeddinggemma-ft"
            if self.embedder_finetuned
            else "embeddinggemma"
        )
        return self.models_dir / f"{name}-{self.embedding_precision}"

    @property
    def query_embedding_dir(self) -> Path | None:
        """The query tower's model directory when ``query_tower`` applies (queries only; passages use
        ``embedding_dir``)."""
        applies = self.embedder == "embeddinggemma" and not self.embedder_finetuned and self.dense_scope == "heads"
        return (
            self.models_dir / f"embeddinggemma-query-{self.embedding_precision}"
            if self.query_tower and applies
            else None
        )

    def embedding_model_id(self, meta: dict[str, Any]) -> str:
        """What an index records as its embedding model, from the model directory's ``embedder.json``: the
        embedder, its precision, the ONNX file's hash and the passage length."""
        model_sha = meta["files"]["model.onnx"]["sha256"]
        return f"{self.embedder}-{self.embedding_precision}:{model_sha[:16]}:max{self.passage_tokens}"

    @property
    def embedder_defaults(self) -> EmbedderDefaults:
        """What was tuned for the chosen embedder (used where the matching setting is left unset)."""
        return EMBEDDER_DEFAULTS[self.embedder]

    @property
    def passage_tokens(self) -> int:
        """``passage_max_tokens``, or the chosen embedder's default."""
        return self.passage_max_tokens or self.embedder_defaults.passage_max_tokens

    @property
    def min_dense_cosine(self) -> float:
        """``relevance_min_dense``, or the chosen embedder's calibrated value."""
        if self.relevance_min_dense is not None:
            return self.relevance_min_dense
        return self.embedder_defaults.min_dense_cosine

    @property
    def set_up_record(self) -> Path:
        """What set-up built the served repository with: the values of its sections' fields (JSON, next to the
        model interface file; a repository rendered by other means has none), read by ``check_set_up``."""
        return self.resolved_model_interface.with_name("albert_set_up.json")

    @property
    def repository_dir(self) -> Path:
        """The rendered Triton model repository that tritonserver serves."""
        return self.cache_dir / "model_repository"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name in cls.__struct_fields__:
            key = f"ALBERT_{name.upper()}"
            if key in environ:
                values[name] = environ[key]
        values.update(overrides)
        try:
            return msgspec.convert(values, cls, strict=False, dec_hook=_decode)
        except msgspec.ValidationError as exc:
            # msgspec names the field as "$.http_port"; say which variable to fix.
            message = re.sub(r"`?\$\.(\w+)`?", lambda m: f"ALBERT_{m.group(1).upper()}", str(exc))
            raise SettingsError(f"invalid setting: {message}") from exc


def set_up_values(settings: Settings) -> dict[str, Any]:
    """The values of the set-up sections' fields, as set-up records them."""
    values: dict[str, Any] = msgspec.to_builtins(settings, enc_hook=str)
    return {name: values.get(name) for section in SET_UP_SECTIONS for name in SECTIONS[section]}


def check_set_up(settings: Settings, environ: Mapping[str, str] | None = None) -> None:
    """Refuse a setting of the set-up sections that the environment sets to another value than the one set-up built
    with: the models, the Triton repository and the index would not follow it. Skipped when set-up left no record
    (a repository rendered elsewhere, e.g. a GPU host's)."""
    environ = os.environ if environ is None else environ
    try:
        recorded = json.loads(settings.set_up_record.read_text())
    except (OSError, ValueError):
        return
    wanted = set_up_values(settings)
    wrong = [
        f"ALBERT_{name.upper()}={environ[f'ALBERT_{name.upper()}']} (set-up built with {recorded[name]!r})"
        for name, value in wanted.items()
        if f"ALBERT_{name.upper()}" in environ and name in recorded and recorded[name] != value
    ]
    if wrong:
        raise SettingsError(
            f"{'; '.join(wrong)}: these settings take effect when set-up builds the models, the Triton repository "
            "and the index, not when the gateway starts. Run `python -m build_engines setup` with them first "
            f"(it records what it built in {settings.set_up_record}), or unset them."
        )
