"""The run's named random streams: derived in one place, as the pipeline always drew them."""

from __future__ import annotations

from omegaconf import OmegaConf

from miabench.pipeline.seeds import SeedStreams


def test_streams_follow_the_configured_seeds() -> None:
    cfg = OmegaConf.create({"seed": 3, "split": {"seed": "${seed}"}, "reference": {"seed": 7}})
    streams = SeedStreams.of(cfg)
    assert streams.split == 3 and streams.population == 7
    assert {streams.training, streams.halves, streams.bootstrap, streams.strength} == {3}
    assert streams.record()["population"] == 7 and set(streams.record()) >= {"split", "training"}


def test_reference_models_train_with_their_own_seed_only_when_distinct() -> None:
    assert [SeedStreams.for_model(5, k, distinct=True) for k in range(3)] == [5, 6, 7]
    assert SeedStreams.for_model(5, 2, distinct=False) == 5


def test_a_config_without_reference_or_split_uses_the_run_seed() -> None:
    assert SeedStreams.of(OmegaConf.create({"seed": 1})).population == 1
