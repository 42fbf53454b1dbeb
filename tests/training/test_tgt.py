"""The text generator and the tgt stage: seeding, cache, shards, filtering, bad input.

The generator is the shared tiny masked LM TRAINED HERE (conftest ``tiny_text_generator``:
BBC News sentences + the synthetic task's unlabelled corpus); image generation uses the
fixture's keyword-colour drawer (tests/support/tgt_fixture.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from support.tgt_fixture import KeywordColourPipeline, limited_data

from contracts.config import PipelineConfig, TextGeneratorConfig, parse_config
from contracts.errors import Cancelled, ConfigError, DataError, ModelLoadError
from contracts.jobs import Stage
from models.text_generator import TextGenerator, TextRequest
from training.data.prepare import Example, PreparedData
from training.generation.near_copies import near_any, normalise, similarity
from training.generation.texts import draw_seed, generate_texts, plan_texts, run_text_shard
from training.students.losses import lugpi_loss
from training.tgt.texts import filter_generated, load_generated, neighbour_requests, run_tgt
from training.tracking.progress import RunContext


def _cfg(generator: Path, **tgt: object) -> PipelineConfig:
    return parse_config(
        {
            "seed": 0,
            "device": "cpu",
            "data": {"train": "synthetic"},
            "generator": {"model": "keyword-colour", "image_size": 32, "steps": 1},
            "text_generator": {"model": str(generator), "batch_size": 4, "mask_fraction": 0.4},
            "tgt": {"enabled": True, "k": 3, "modes": ["augment"], **tgt},
        }
    )


def test_texts_are_seeded_per_sample_not_per_batch_trained_generator(
    tiny_text_generator: Path, tmp_path: Path
) -> None:
    gen = TextGenerator(TextGeneratorConfig(model=str(tiny_text_generator)), tmp_path)
    sources = ["the company said profits rose sharply in the third quarter", "a by river of the on"]
    reqs = [TextRequest(s, seed) for s in sources for seed in (1, 2, 3)]
    together = gen.generate(reqs)
    alone = [gen.generate([r])[0] for r in reqs]
    assert together == alone
    assert all(t != r.source for t, r in zip(together, reqs, strict=True))
    assert len(set(together[:3])) > 1  # another seed, another text
    assert gen.generate(reqs[:1]) == together[:1]  # and the same seed, the same text


def test_protected_words_are_never_masked_trained_generator(
    tiny_text_generator: Path, tmp_path: Path
) -> None:
    gen = TextGenerator(
        TextGeneratorConfig(model=str(tiny_text_generator), mask_fraction=0.9), tmp_path
    )
    out = gen.generate(
        [
            TextRequest("the girl shot dead in bellaghy was 18", s, "", ("bellaghy",))
            for s in range(5)
        ]
    )
    assert all("bellaghy" in normalise(t).split() for t in out), out


def test_generation_resumes_from_its_cache_after_a_crash_trained_generator(
    tiny_text_generator: Path, tmp_path: Path
) -> None:
    cfg = _cfg(tiny_text_generator)
    data = limited_data(0, n_train=4)
    plan = plan_texts(cfg, neighbour_requests(cfg, data), tmp_path / "cache")
    assert len(plan.jobs) == 12

    def crash_after_first_batch(stage: Stage, done: int, total: int, msg: str) -> None:
        if done >= 4:
            raise Cancelled("killed")

    with pytest.raises(Cancelled):
        generate_texts(cfg, plan, RunContext(report=crash_after_first_batch))
    assert sum(plan.path(j).is_file() for j in plan.jobs) == 4
    texts, made = generate_texts(cfg, plan, RunContext())
    assert made == 8
    fresh, made_fresh = generate_texts(
        cfg, plan_texts(cfg, neighbour_requests(cfg, data), tmp_path / "fresh"), RunContext()
    )
    assert made_fresh == 12 and texts == fresh  # resuming changed nothing


def test_shards_split_the_work_and_the_stage_finds_it_cached_trained_generator(
    tiny_text_generator: Path, tmp_path: Path
) -> None:
    cfg = _cfg(tiny_text_generator)
    cfg = cfg.model_copy(
        update={"text_generator": cfg.text_generator.model_copy(update={"num_shards": 3})}
    )
    data = limited_data(1, n_train=4)
    plan = plan_texts(cfg, neighbour_requests(cfg, data), tmp_path / "cache")
    made = [run_text_shard(cfg, plan, i, RunContext()) for i in range(3)]
    assert made == [4, 4, 4]
    assert generate_texts(cfg, plan, RunContext())[1] == 0
    with pytest.raises(Exception, match="num_shards is 3"):
        run_text_shard(cfg, plan, 3, RunContext())


def test_filter_drops_duplicates_near_source_and_near_eval() -> None:
    cfg = parse_config(
        {"data": {"train": "x"}, "tgt": {"enabled": True, "k": 1, "modes": ["augment"]}}
    )
    train = [
        Example("the river was cold today", None, "a", "p"),
        Example("a stone bridge", None, "b", "p"),
    ]
    dev = [Example("an entirely new sentence here", None, "a", "p")]
    data = PreparedData(["a", "b"], False, {"train": train, "dev": dev, "test": []})
    texts = ["The river was cold today!", "an entirely new sentence hera"]
    kept, dropped = filter_generated(cfg, data, texts)
    assert kept == [] and dropped == {"duplicate": 1, "near_eval": 1}
    kept, dropped = filter_generated(
        cfg, data, ["the river was cold toda", "a stone bridge at night"]
    )
    assert kept == [(1, 0, "a stone bridge at night")] and dropped == {"near_source": 1}
    assert similarity("the river was cold toda", "the river was cold today") >= 0.9


def test_no_kept_text_is_a_near_copy_of_dev_or_test_trained_generator(
    tiny_text_generator: Path, tmp_path: Path
) -> None:
    cfg = _cfg(tiny_text_generator, k=4)
    data = limited_data(2, n_train=20, n_dev=20, n_test=20)
    kw = {"text_cache": tmp_path / "tc", "image_cache": tmp_path / "ic"}
    first, _ = load_generated(
        run_tgt(cfg, data, tmp_path / "a", RunContext(), image_pipe=KeywordColourPipeline(), **kw)
    )
    # Plant leaks in test: 8 generated texts as they are and 8 with one character changed.
    leaks = [r.text for r in first[:8]] + [r.text[:-1] + "q" for r in first[8:16]]
    test = data.splits["test"] + [Example(t, None, "class0", t) for t in leaks]
    leaky = PreparedData(data.labels, False, {**data.splits, "test": test})
    out = run_tgt(
        cfg, leaky, tmp_path / "b", RunContext(), image_pipe=KeywordColourPipeline(), **kw
    )
    rows, summary = load_generated(out)
    evaluation = [e.text for s in ("dev", "test") for e in leaky.splits[s]]
    assert rows and not near_any([r.text for r in rows], evaluation, 0.9).any()
    assert summary["dropped"]["near_eval"] >= len(leaks), summary
    assert len(rows) <= len(first) - len(leaks)
    assert summary["newly_generated"] == 0  # the second run read every text from the cache
    assert summary["kept"] == len(rows) and all(Path(str(r.image)).is_file() for r in rows)


def test_empty_pool_after_filtering_names_the_field_trained_generator(
    tiny_text_generator: Path, tmp_path: Path
) -> None:
    cfg = _cfg(tiny_text_generator, max_similarity=0.05)
    with pytest.raises(DataError, match=r"tgt\.max_similarity"):
        run_tgt(cfg, limited_data(0, n_train=4), tmp_path / "tgt", RunContext(),
                text_cache=tmp_path / "tc", image_cache=None)  # fmt: skip
    assert not (tmp_path / "tgt").exists()


@pytest.mark.parametrize(
    ("tgt", "field"),
    [({"k": 0}, "tgt.k"), ({"k": 65}, "tgt.k"), ({"weight": 0}, "tgt.weight"),
     ({"weight": -1}, "tgt.weight"), ({"pool_factor": 1}, "tgt.pool_factor"),
     ({"modes": []}, "tgt.modes"), ({"max_similarity": 1.5}, "tgt.max_similarity")],
)  # fmt: skip
def test_out_of_range_tgt_settings_name_the_field(tgt: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        parse_config({"data": {"train": "x"}, "tgt": {"enabled": True, **tgt}})


def test_tgt_without_kd_terms_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"tgt\.enabled"):
        parse_config(
            {"data": {"train": "x"}, "tgt": {"enabled": True}, "distill": {"alpha": 0, "beta": 0}}
        )


def test_missing_generator_path_names_the_field(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"text_generator\.model"):
        TextGenerator(TextGeneratorConfig(model=str(tmp_path / "nope")), tmp_path)


def test_a_tokenizer_that_does_not_match_the_model_is_refused_trained_generator(
    tiny_text_generator: Path, tmp_path: Path
) -> None:
    from transformers import AutoTokenizer

    from models.tiny import minilm_path

    bad = tmp_path / "mismatch"
    AutoTokenizer.from_pretrained(tiny_text_generator)  # loads as saved
    import shutil

    shutil.copytree(tiny_text_generator, bad)
    for f in bad.glob("tok*"):
        f.unlink()
    AutoTokenizer.from_pretrained(minilm_path()).save_pretrained(bad)  # 30k pieces, model 6k
    with pytest.raises(ModelLoadError, match="tokenizer has 30522 tokens"):
        TextGenerator(TextGeneratorConfig(model=str(bad)), tmp_path)


def test_generated_rows_weigh_lambda_in_kd_and_never_enter_ce() -> None:
    torch.manual_seed(0)
    s, t = torch.randn(4, 3), torch.randn(1, 4, 3)
    e_s, e_t = [torch.randn(4, 5)], [torch.randn(4, 5)]
    labels = torch.tensor([0, 2, -1, -1])
    kw = {"alpha": 1.0, "beta": 1.0, "tau": 2.0, "combine": "mean"}
    base = lugpi_loss(s, labels, e_s, t, e_t, **kw)  # type: ignore[arg-type]
    w = torch.tensor([1.0, 1.0, 0.5, 0.5])
    weighted = lugpi_loss(s, labels, e_s, t, e_t, sample_weight=w, **kw)  # type: ignore[arg-type]
    assert torch.isclose(weighted.ce, base.ce)  # CE: labelled rows only, unchanged
    assert torch.isclose(weighted.ce, torch.nn.functional.cross_entropy(s[:2], labels[:2]))
    first_two = lugpi_loss(s[:2], labels[:2], [e_s[0][:2]], t[:, :2], [e_t[0][:2]], **kw)  # type: ignore[arg-type]
    last_two = lugpi_loss(s[2:], labels[2:], [e_s[0][2:]], t[:, 2:], [e_t[0][2:]], **kw)  # type: ignore[arg-type]
    # KD and embedding terms: batch means with generated rows weighted by lambda = 0.5.
    for term in ("kd", "emb"):
        want = (2 * getattr(first_two, term) + 0.5 * 2 * getattr(last_two, term)) / 4
        assert torch.isclose(getattr(weighted, term), want), term


def test_generated_texts_keep_their_own_source_after_a_duplicate_trained_generator(
    tiny_text_generator: Path, tmp_path: Path
) -> None:
    """A training text that appears twice asks for the same texts twice; the work list
    generates them once. Every kept text must still name the row it was generated from
    (its text is what the generator gives for that row's request), not a row shifted by
    the duplicates before it."""
    cfg = _cfg(tiny_text_generator, k=2, max_similarity=1.0)
    data = limited_data(3, n_train=6)
    train = data.splits["train"]
    train = [train[0], train[0], *train[1:]]  # a duplicate row at the front
    data = PreparedData(data.labels, False, {**data.splits, "train": train})
    out = run_tgt(
        cfg,
        data,
        tmp_path / "tgt",
        RunContext(),
        text_cache=tmp_path / "tc",
        image_cache=tmp_path / "ic",
        image_pipe=KeywordColourPipeline(),
    )
    rows, _ = load_generated(out)
    assert {r.source for r in rows} >= {2, len(train) - 1}
    gen = TextGenerator(cfg.text_generator, tmp_path / "gen")
    for r in rows:
        src = train[r.source].text
        request = TextRequest(src, draw_seed(cfg.seed, src, r.draw))
        assert gen.generate([request])[0] == r.text, (r.source, r.draw)


@pytest.mark.parametrize(
    ("old", "new"),
    [(["sampling"], "['augment']"), (["sampling", "disagreement"],
     "['augment', 'augment-disagreement']"), ("disagreement", "['augment-disagreement']")],
)  # fmt: skip
def test_the_old_search_key_names_the_new_key_and_values(old: object, new: str) -> None:
    """'sampling' meant masked-LM rewriting; it now means latent sampling: an old config
    must be refused, not silently run another method."""
    with pytest.raises(ConfigError) as e:
        parse_config({"data": {"train": "x"}, "tgt": {"enabled": True, "search": old}})
    said = str(e.value)
    assert "tgt.modes" in said and new in said and "'gradient'" in said


def test_old_mode_names_are_not_modes() -> None:
    with pytest.raises(ConfigError, match=r"tgt\.modes"):
        parse_config({"data": {"train": "x"}, "tgt": {"enabled": True, "modes": ["disagreement"]}})


def test_gradient_mode_refuses_image_reading_teachers_at_config_time() -> None:
    base = {"data": {"train": "x"}, "tgt": {"enabled": True, "modes": ["gradient"]}}
    with pytest.raises(ConfigError, match=r"'gradient' needs text-only teachers.*'sampling'"):
        parse_config(base)
    cfg = parse_config({**base, "teachers": [{"modality": "text"}]})
    assert cfg.tgt.modes == ["gradient"]


def test_presets_use_the_new_mode_names() -> None:
    from contracts.config import load_config

    cfg = load_config("offline", {"tgt.enabled": True})
    assert cfg.tgt.modes == ["sampling", "augment"]
    assert cfg.tgt.latent_model == "tiny-bbc-seq2seq"
