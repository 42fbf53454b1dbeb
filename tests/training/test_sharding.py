"""Sharded work runs through the strategy the caller gives (tiny RANDOM diffusion pipeline)."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.tiny_diffusion import build_tiny_pipeline
from tests.training.test_generate import _cfg, _data, _summary
from training.generation import generate_images as gen
from training.sharding import ShardedWork
from training.tracking.progress import RunContext


class Reversed:
    """Runs the shards last to first and remembers the order: a strategy of the test's own."""

    def __init__(self) -> None:
        self.order: list[int] = []

    def run(self, work: ShardedWork, ctx: RunContext) -> None:
        for shard in reversed(work.shards):
            self.order.append(shard.index)
            work.run(shard, ctx)


@pytest.fixture(scope="module")
def tiny_random_sd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_pipeline(tmp_path_factory.mktemp("tiny-sd-random"))


def test_random_generate_stage_runs_its_shards_through_the_given_strategy(
    tiny_random_sd: Path, tmp_path: Path
) -> None:
    cfg = _cfg(tiny_random_sd, tmp_path / "cache", num_shards=4)
    strategy = Reversed()
    out = gen.generate_images(
        cfg, _data(), tmp_path / "run" / "images", RunContext(), strategy=strategy
    )
    assert strategy.order == [3, 2, 1, 0]
    assert _summary(out)["drawn"] == _summary(out)["images"] == 8
    index = gen.load_image_index(out)  # every image of every split is there
    assert sum(len(v) for v in index.values()) == 8
    # The default strategy then finds every shard done and draws nothing.
    again = gen.generate_images(cfg, _data(), tmp_path / "run2" / "images", RunContext())
    assert _summary(again)["drawn"] == 0
