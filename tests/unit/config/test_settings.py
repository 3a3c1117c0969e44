"""The settings tree: from the environment, every field in one section and documented, the generated
reference up to date, the embedder's tuned defaults, and the gateway's refusal of a set-up setting that set-up
did not build with."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from config.reference import docstrings, markdown
from config.settings import SECTIONS, SET_UP_SECTIONS, Settings, SettingsError, check_set_up, set_up_values
from server.search.retrieval.search import SearchParams
from tests.support.paths import ROOT


def test_every_setting_is_in_exactly_one_section_and_documented() -> None:
    listed = [name for names in SECTIONS.values() for name in names]
    assert sorted(listed) == sorted(Settings.__struct_fields__)
    assert len(listed) == len(set(listed))
    undocumented = [name for name in Settings.__struct_fields__ if len(docstrings().get(name, "")) < 10]
    assert undocumented == []


def test_the_committed_reference_is_the_generated_one() -> None:
    committed = (ROOT / "docs" / "settings.md").read_text()
    assert committed == markdown(), "run: python -m config.reference > docs/settings.md"
    for name in Settings.__struct_fields__:
        assert f"`ALBERT_{name.upper()}`" in committed


def _set_up(tmp_path: Path, **built: str) -> Settings:
    """Settings whose model interface lies in ``tmp_path``, with a record of a set-up run with ``built``."""
    settings = Settings(model_interface=tmp_path / "albert_interface.json")
    built_with = Settings.from_env({f"ALBERT_{k.upper()}": v for k, v in built.items()})
    settings.set_up_record.write_text(json.dumps(set_up_values(built_with)))
    return settings


def test_the_record_holds_the_set_up_sections_only() -> None:
    values = set_up_values(Settings(generator_threads=1, finetune_pairs=Path("/data/pairs.jsonl")))
    assert set(values) == {name for section in SET_UP_SECTIONS for name in SECTIONS[section]}
    assert values["generator_threads"] == 1 and values["finetune_pairs"] == "/data/pairs.jsonl"
    assert json.loads(json.dumps(values)) == values


def test_a_set_up_setting_changed_after_set_up_is_refused_with_where_it_belongs(tmp_path: Path) -> None:
    _set_up(tmp_path, generator_threads="1")
    environ = {"ALBERT_GENERATOR_THREADS": "2", "ALBERT_DENSE_SCOPE": "all", "ALBERT_HTTP_PORT": "9000"}
    settings = Settings.from_env({**environ, "ALBERT_MODEL_INTERFACE": str(tmp_path / "albert_interface.json")})
    with pytest.raises(SettingsError) as refused:
        check_set_up(settings, environ)
    message = str(refused.value)
    assert "ALBERT_GENERATOR_THREADS=2 (set-up built with 1)" in message
    assert "ALBERT_DENSE_SCOPE=all (set-up built with 'heads')" in message
    assert "HTTP_PORT" not in message and "python -m build_engines setup" in message


def test_what_set_up_built_with_and_what_is_left_unset_are_accepted(tmp_path: Path) -> None:
    settings = _set_up(tmp_path, generator_threads="1")
    check_set_up(settings, {})  # the default (2) differs from the record, but nobody asked for it
    same = Settings.from_env(
        {"ALBERT_GENERATOR_THREADS": "1", "ALBERT_MODEL_INTERFACE": str(tmp_path / "albert_interface.json")}
    )
    check_set_up(same, {"ALBERT_GENERATOR_THREADS": "1"})


def test_a_repository_set_up_did_not_render_is_not_checked(tmp_path: Path) -> None:
    settings = Settings(model_interface=tmp_path / "elsewhere" / "albert_interface.json", generator_threads=1)
    check_set_up(settings, {"ALBERT_GENERATOR_THREADS": "1"})


def test_settings_from_env() -> None:
    s = Settings.from_env({"ALBERT_HTTP_PORT": "9001", "ALBERT_CACHE_DIR": "/tmp/c", "OTHER": "x"})
    assert s.http_port == 9001
    assert s.resolved_index_dir == Path("/tmp/c/index")
    with pytest.raises(SettingsError, match="ALBERT_HTTP_PORT"):
        Settings.from_env({"ALBERT_HTTP_PORT": "not-a-port"})


def test_embedder_defaults_apply_unless_a_setting_overrides_them() -> None:
    gemma = SearchParams.from_settings(Settings())
    assert (gemma.fusion, gemma.expand_dense_query, gemma.audience_filter) == ("scores", False, "prefer")
    e5 = SearchParams.from_settings(Settings(embedder="e5-small"))
    assert (e5.fusion, e5.dense_weight, e5.expand_dense_query) == ("rrf", 1.0, True)
    forced = SearchParams.from_settings(Settings(fusion="rrf", dense_weight=3.0, dense_query_expansion=True))
    assert (forced.fusion, forced.dense_weight, forced.expand_dense_query) == ("rrf", 3.0, True)
    assert Settings().min_dense_cosine != Settings(embedder="e5-small").min_dense_cosine
    assert Settings(relevance_min_dense=0.5).min_dense_cosine == 0.5
    assert Settings().passage_tokens == 128 and Settings(passage_max_tokens=300).passage_tokens == 300
    assert Settings(embedder_finetuned=True).embedding_dir.name == "embeddinggemma-ft-int8"
    with pytest.raises(SettingsError, match="EMBEDDER_FINETUNED"):
        Settings.from_env({"ALBERT_EMBEDDER": "e5-small", "ALBERT_EMBEDDER_FINETUNED": "1"})
    tower = Settings(query_tower=True).query_embedding_dir
    assert tower is not None and tower.name == "embeddinggemma-query-int8"
    assert Settings(query_tower=False).query_embedding_dir is None
    assert Settings().query_embedding_dir == tower  # on by default
    for other in ({"ALBERT_EMBEDDER": "e5-small"}, {"ALBERT_EMBEDDER_FINETUNED": "1"}, {"ALBERT_DENSE_SCOPE": "all"}):
        assert Settings.from_env({"ALBERT_QUERY_TOWER": "1", **other}).query_embedding_dir is None
