"""Reference-model populations: the membership matrix, references, columns, CSV."""

from __future__ import annotations

from pathlib import Path

import pytest

from miabench.data.membership import DuplicateContentError, make_split
from miabench.data.population import Population, membership_matrix
from tests.data.test_membership import hashes, pool


def test_membership_matrix_pairs_references_and_sizes_every_model() -> None:
    records = pool("train", 101)
    matrix = membership_matrix(records, n_models=17, pkeep=0.5, seed=0)
    assert matrix.shape == (101, 17) and matrix.dtype == bool
    # every model trains on round(0.5 * 101) samples, the pairs' partners on the rest
    sizes = matrix.sum(axis=0)
    assert sizes[0] == 50 and all(sizes[k] + sizes[k + 1] == 101 for k in range(1, 17, 2))
    # the 16 references come in complementary pairs: every sample is IN for exactly 8
    for k in range(1, 17, 2):
        assert (matrix[:, k] == ~matrix[:, k + 1]).all()
    assert (matrix[:, 1:].sum(axis=1) == 8).all()
    # seeded, and independent of the order the dataset lists its samples in
    again = membership_matrix(records[::-1], n_models=17, pkeep=0.5, seed=0)[::-1]
    assert (again == matrix).all()
    assert (membership_matrix(records, 17, 0.5, seed=1) != matrix).any()
    # another pkeep: every column drawn on its own, of its own exact size
    other = membership_matrix(records, n_models=6, pkeep=0.3, seed=0)
    assert (other.sum(axis=0) == 30).all()


def test_a_models_references_are_independent_of_its_membership() -> None:
    # what LiRA's per-sample balanced matrix breaks: there, a model's references hold one IN
    # fewer exactly on the samples it trained on; here (partner left out) the count of IN
    # references is the same on its members and its non-members, up to sampling noise
    records = pool("train", 4000)
    population = Population(tuple(records), membership_matrix(records, 8, 0.5, seed=0))
    assert population.partners() == [-1, 2, 1, 4, 3, 6, 5, -1]
    for model in (0, 1, 7):
        refs = population.references_of(model)
        assert model not in refs and population.partners()[model] not in refs
        counts = population.matrix[:, refs].sum(axis=1)
        inside = population.matrix[:, model]
        assert abs(counts[inside].mean() - counts[~inside].mean()) < 0.1
    # and two models that are not partners share a sample as independent halves do
    both = (population.matrix[:, 0] & population.matrix[:, 3]).mean()
    assert abs(both - 0.25) < 0.025


def test_membership_matrix_keeps_duplicates_together_and_refuses_degenerate_pkeep() -> None:
    records = pool("train", 30, contents=[i // 3 for i in range(30)])  # groups of 3 copies
    matrix = membership_matrix(records, n_models=5, pkeep=0.5, seed=2)
    for start in range(0, 30, 3):
        assert (matrix[start : start + 3] == matrix[start]).all()
    with pytest.raises(ValueError, match="at least one reference"):
        membership_matrix(records, n_models=1, pkeep=0.5, seed=0)
    with pytest.raises(ValueError, match="without members or non-members"):
        membership_matrix(records, n_models=4, pkeep=0.01, seed=0)


def test_population_columns_are_disjoint_manifests(tmp_path: Path) -> None:
    records = pool("train", 60, contents=[i // 2 for i in range(60)])
    base = make_split(records, records, 20, 30, seed=0, n_validation=6)
    population = Population.draw(base, n_models=5, pkeep=0.5, seed=0)
    assert population.sample_ids == sorted(base.ids("member") + base.ids("nonmember"))
    for k in range(5):
        column = population.column(k)
        column.check_disjoint()
        assert hashes(column, "member").isdisjoint(hashes(column, "nonmember"))
        assert column.ids("validation") == base.ids("validation")
        assert set(column.ids("member")) | set(column.ids("nonmember")) == set(
            population.sample_ids
        )
    with pytest.raises(ValueError, match="model 5 is not in the population"):
        population.column(5)
    # a matrix that splits duplicate content across IN and OUT is refused, naming the model
    broken = population.matrix.copy()
    first = population.records[0].sha256
    twin = next(i for i, r in enumerate(population.records) if r.sha256 == first and i > 0)
    broken[twin, 0] = not broken[0, 0]
    with pytest.raises(DuplicateContentError, match="model 0"):
        Population(population.records, broken, population.validation).check_disjoint()

    path = population.to_csv(tmp_path / "population.csv")
    again = Population.from_csv(path)
    assert again.sha256() == population.sha256()
    assert (again.matrix == population.matrix).all() and again.validation == population.validation
