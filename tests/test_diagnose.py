"""ActivationStats against brute force: batching, merging, conv inputs, views, JSON, memory, errors."""

from __future__ import annotations

import gc
import itertools
import json
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reluscope.diagnose import ActivationStats


def brute(pre: np.ndarray, act: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Reference statistics of one whole array, computed the obvious way."""
    act = np.maximum(pre, 0) if act is None else act
    if pre.ndim == 2:
        return {
            "fire": (pre > 0).sum(axis=0),
            "abs": np.abs(act.astype(np.float64)).sum(axis=0),
            "max": pre.max(axis=0).astype(np.float64),
        }
    return {
        "fire": (pre > 0).any(axis=(2, 3)).sum(axis=0),
        "abs": np.abs(act.astype(np.float64)).sum(axis=(0, 2, 3)),
        "max": pre.max(axis=(0, 2, 3)).astype(np.float64),
        "pos": (pre > 0).sum(axis=0),
    }


def check_equal(stats: ActivationStats, name: str, ref: dict[str, np.ndarray], n: int, rtol: float = 1e-12) -> None:
    assert stats.n_samples(name) == n
    np.testing.assert_array_equal(stats.fire_count(name), ref["fire"])
    np.testing.assert_array_equal(stats.max_preactivation(name), ref["max"])
    positions = 1 if "pos" not in ref else ref["pos"][0].size
    np.testing.assert_allclose(stats.mean_abs_activation(name) * n * positions, ref["abs"], rtol=rtol, atol=0)
    if "pos" in ref:
        np.testing.assert_allclose(stats.position_frequency(name) * n, ref["pos"], rtol=0, atol=1e-9)


def uneven_splits(n: int, rng: np.random.Generator) -> list[int]:
    cuts = np.sort(rng.choice(np.arange(1, n), size=min(n - 1, 7), replace=False))
    return [0, *cuts.tolist(), n]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("mode", ["act", "none", "nonneg"])
def test_uneven_batches_equal_one_pass(rng: np.random.Generator, dtype: type, mode: str) -> None:
    pre: np.ndarray = (rng.standard_normal((503, 37)) - 0.8).astype(dtype)
    pre[:, 3] = -np.abs(pre[:, 3]) - 0.5  # a dead unit
    pre[:, 5] = -1.0  # dead, constant
    act = np.maximum(pre, 0)
    one, many = ActivationStats(), ActivationStats()
    one.update("h", pre, None if mode == "none" else act, assume_nonnegative=mode == "nonneg")
    edges = uneven_splits(len(pre), rng)
    for a, b in itertools.pairwise(edges):
        many.update("h", pre[a:b], None if mode == "none" else act[a:b], assume_nonnegative=mode == "nonneg")
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    for stats in (one, many):
        check_equal(stats, "h", brute(pre, act), len(pre), rtol)
    np.testing.assert_array_equal(one.dead_mask("h"), many.dead_mask("h"))
    assert many.dead_mask("h")[[3, 5]].all()
    assert many.mean_abs_activation("h")[3] == 0.0  # exactly zero, not rounding noise
    np.testing.assert_allclose(many.dormant_scores("h"), one.dormant_scores("h"), rtol=rtol)


def test_large_single_update_is_chunked_and_exact(rng: np.random.Generator) -> None:
    pre = rng.standard_normal((10_000, 3))  # more rows than one chunk holds
    stats = ActivationStats()
    stats.update("h", pre)
    check_equal(stats, "h", brute(pre), len(pre))


def test_signed_activation_uses_abs(rng: np.random.Generator) -> None:
    pre = rng.standard_normal((200, 8))
    act = np.where(pre > 0, pre, 0.01 * pre)  # leaky: negative activations count by magnitude
    stats = ActivationStats()
    stats.update("h", pre, act)
    check_equal(stats, "h", brute(pre, act), 200)


def partition_stats(pre: np.ndarray, edges: list[int]) -> list[ActivationStats]:
    parts = []
    for a, b in itertools.pairwise(edges):
        s = ActivationStats()
        s.update("h", pre[a:b])
        s.update("conv", np.repeat(pre[a:b, :4, None, None], 3, axis=2))
        parts.append(s)
    return parts


def test_merge_of_shuffled_partitions_is_identical(rng: np.random.Generator) -> None:
    pre = rng.standard_normal((400, 16)) * 10.0 ** rng.uniform(-3, 3, size=(400, 16))  # wide dynamic range
    parts = partition_stats(pre, uneven_splits(400, rng))
    reference = None
    for trial in range(6):
        order = rng.permutation(len(parts))
        merged = ActivationStats()
        for i in order:
            merged.merge(parts[i])
        if trial % 2:  # also a tree-shaped reduction
            left, right = ActivationStats(), ActivationStats()
            for i in order[: len(order) // 2]:
                left.merge(parts[i])
            for i in order[len(order) // 2 :]:
                right.merge(parts[i])
            merged = right.merge(left)
        if reference is None:
            reference = merged.to_dict()
        assert merged.to_dict() == reference  # bit-identical, sums included
    one = ActivationStats()
    one.update("h", pre)
    check_equal(merged, "h", brute(pre), 400)


def test_merge_rejects_shape_mismatch_and_changes_nothing(rng: np.random.Generator) -> None:
    a, b = ActivationStats(), ActivationStats()
    a.update("h", rng.standard_normal((5, 3)))
    b.update("new", rng.standard_normal((5, 2)))
    b.update("h", rng.standard_normal((5, 4)))
    before = a.to_dict()
    with pytest.raises(ValueError, match=r"cannot merge site 'h': shape \(3,\) here but \(4,\)"):
        a.merge(b)
    assert a.to_dict() == before
    with pytest.raises(TypeError, match="only merge another ActivationStats"):
        a.merge({})  # type: ignore[arg-type]


def test_merge_with_itself_doubles(rng: np.random.Generator) -> None:
    s = ActivationStats()
    s.update("h", rng.standard_normal((10, 3)))
    counts = s.fire_count("h")
    s.merge(s)
    assert s.n_samples("h") == 20
    np.testing.assert_array_equal(s.fire_count("h"), 2 * counts)


def test_conv_per_channel_matches_brute_force(rng: np.random.Generator) -> None:
    pre = rng.standard_normal((30, 4, 5, 6)) - 1.5
    pre[:, 2] = -1.0  # channel 2 never fires anywhere
    pre[0, 1, 0, 0] = 5.0  # channel 1 fires on sample 0 at a single position
    many = ActivationStats()
    for a, b in ((0, 7), (7, 8), (8, 30)):
        many.update("conv1", pre[a:b], np.maximum(pre[a:b], 0))
    check_equal(many, "conv1", brute(pre), 30)
    assert many.kind("conv1") == "conv"
    assert many.n_units("conv1") == 4
    assert many.dead_mask("conv1")[2]
    assert not many.dead_mask("conv1")[1]
    assert many.position_frequency("conv1").shape == (4, 5, 6)
    assert many.fire_count("conv1")[1] >= 1


def test_conv_channel_fires_once_per_sample_not_per_position() -> None:
    pre = np.full((2, 1, 3, 3), 1.0)  # every position fires: still one firing per sample
    s = ActivationStats()
    s.update("c", pre)
    assert s.fire_count("c").tolist() == [2]
    assert s.frequency("c").tolist() == [1.0]
    np.testing.assert_array_equal(s.position_frequency("c"), np.ones((1, 3, 3)))
    np.testing.assert_allclose(s.mean_abs_activation("c"), [1.0])


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 40),
    shape=st.one_of(
        st.tuples(st.integers(1, 9)),
        st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 3)),
    ),
    n_batches=st.integers(1, 5),
    seed=st.integers(0, 2**16),
    dtype=st.sampled_from([np.float32, np.float64]),
)
def test_hypothesis_shapes_batches_and_roundtrip(
    n: int, shape: tuple[int, ...], n_batches: int, seed: int, dtype: type
) -> None:
    rng = np.random.default_rng(seed)
    pre: np.ndarray = (rng.standard_normal((n, *shape)) - 0.5).astype(dtype)
    pre[rng.random(pre.shape) < 0.2] = 0.0  # exact zeros do not fire
    edges = sorted({0, n, *rng.integers(0, n + 1, size=n_batches - 1).tolist()})
    stats = ActivationStats()
    for a, b in itertools.pairwise(edges):
        stats.update("s", pre[a:b])
    check_equal(stats, "s", brute(pre), n, rtol=1e-5 if dtype == np.float32 else 1e-12)
    freq = stats.frequency("s")
    assert ((freq >= 0) & (freq <= 1)).all()
    scores = stats.dormant_scores("s")
    assert np.isfinite(scores).all()
    if scores.any():
        assert scores.mean() == pytest.approx(1.0)
    again = ActivationStats.from_dict(json.loads(json.dumps(stats.to_dict(), allow_nan=False)))
    assert again == stats
    assert again.to_dict() == stats.to_dict()


def test_views_and_summary() -> None:
    # unit 0 always fires, unit 1 fires on 1 of 200, unit 2 never, unit 3 fires weakly on all
    pre = np.full((200, 4), -1.0)
    pre[:, 0] = 2.0
    pre[7, 1] = 1.0
    pre[:, 3] = 0.01
    s = ActivationStats()
    s.update("hidden1", pre)
    assert s.names == ["hidden1"]
    assert s.dead_mask("hidden1").tolist() == [False, False, True, False]
    assert s.dead_fraction("hidden1") == 0.25
    np.testing.assert_allclose(s.frequency("hidden1"), [1.0, 0.005, 0.0, 1.0])
    assert s.nearly_dead("hidden1").tolist() == [False, True, False, False]
    assert s.nearly_dead("hidden1", threshold=0.0).tolist() == [False] * 4
    mean_abs = np.array([2.0, 1.0 / 200, 0.0, 0.01])
    np.testing.assert_allclose(s.dormant_scores("hidden1"), mean_abs / mean_abs.mean())
    assert s.dormant_mask("hidden1", tau=0.1).tolist() == [False, True, True, True]
    assert s.dormant_mask("hidden1", tau=0.0).tolist() == [False, False, True, False]
    np.testing.assert_array_equal(s.max_preactivation("hidden1"), [2.0, 1.0, -1.0, 0.01])
    (row,) = s.summary(tau=0.1, nearly_dead_threshold=0.01)
    assert row == {
        "name": "hidden1",
        "kind": "dense",
        "units": 4,
        "n_samples": 200,
        "dead": 1,
        "dead_fraction": 0.25,
        "nearly_dead": 1,
        "median_fire_rate": pytest.approx(0.5025),
        "dormant": 3,
        "dormant_fraction": 0.75,
        "tau": 0.1,
        "all_dead": False,
    }
    json.dumps(s.summary())
    worst = s.worst_units(2)
    assert [(w["layer"], w["unit"]) for w in worst] == [("hidden1", 2), ("hidden1", 1)]
    assert worst[0]["max_pre"] == -1.0
    assert s.worst_units(0) == []


def test_all_zero_layer_scores_zero_not_nan() -> None:
    s = ActivationStats()
    s.update("h", -np.ones((10, 5)))
    np.testing.assert_array_equal(s.dormant_scores("h"), np.zeros(5))
    assert s.dormant_mask("h").all()
    assert s.all_dead("h")
    assert s.summary()[0]["all_dead"] is True


def test_empty_batch_registers_site_and_serialises() -> None:
    s = ActivationStats()
    s.update("h", np.empty((0, 3)))
    assert s.n_samples("h") == 0
    assert s.frequency("h").tolist() == [0.0, 0.0, 0.0]
    assert not s.all_dead("h")
    d = s.to_dict()
    json.dumps(d, allow_nan=False)
    assert ActivationStats.from_dict(d) == s
    s.update("h", np.ones((2, 3)))
    assert s.max_preactivation("h").tolist() == [1.0, 1.0, 1.0]


def test_names_keep_first_update_order(rng: np.random.Generator) -> None:
    s = ActivationStats()
    for name in ("b", "a", "b", "c"):
        s.update(name, rng.standard_normal((3, 2)))
    assert s.names == ["b", "a", "c"]
    assert "a" in s and "z" not in s and len(s) == 3
    assert "b: 2 dense units, 6 samples" in repr(s)


def test_copy_is_independent(rng: np.random.Generator) -> None:
    s = ActivationStats()
    s.update("h", rng.standard_normal((3, 2)))
    c = s.copy()
    c.update("h", rng.standard_normal((3, 2)))
    assert s.n_samples("h") == 3 and c.n_samples("h") == 6


def test_float32_is_not_upcast_and_results_are_float64(rng: np.random.Generator) -> None:
    pre = rng.standard_normal((64, 5)).astype(np.float32)
    s = ActivationStats()
    s.update("h", pre, np.maximum(pre, 0))
    assert s.max_preactivation("h").dtype == np.float64
    assert s.mean_abs_activation("h").dtype == np.float64
    np.testing.assert_array_equal(s.max_preactivation("h"), pre.max(axis=0).astype(np.float64))


def test_memory_does_not_grow_with_number_of_batches(rng: np.random.Generator) -> None:
    pre = rng.standard_normal((64, 256))
    act = np.maximum(pre, 0)
    s = ActivationStats()
    for _ in range(5):  # warm up: work buffers are allocated once
        s.update("h", pre, act)
    gc.collect()
    tracemalloc.start()
    try:
        for _ in range(10):
            s.update("h", pre, act)
        gc.collect()  # a full collection also empties CPython's bounded free lists (numpy's 1-tuples land there)
        after_10, _ = tracemalloc.get_traced_memory()
        for _ in range(500):
            s.update("h", pre, act)
        gc.collect()
        after_510, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert after_510 - after_10 < 4096, (after_10, after_510)
    assert s.n_samples("h") == 64 * 515


# Errors ---------------------------------------------------------------------------------------------------------
def test_shape_change_between_batches_is_an_error(rng: np.random.Generator) -> None:
    s = ActivationStats()
    s.update("hidden1", rng.standard_normal((4, 3)))
    with pytest.raises(ValueError, match=r"hidden1: per-sample shape changed from \(3,\) to \(5,\)"):
        s.update("hidden1", rng.standard_normal((4, 5)))
    with pytest.raises(ValueError, match=r"per-sample shape changed from \(3,\) to \(3, 1, 1\)"):
        s.update("hidden1", rng.standard_normal((4, 3, 1, 1)))
    assert s.n_samples("hidden1") == 4


@pytest.mark.parametrize("where", ["pre", "act"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_is_an_error_and_records_nothing(rng: np.random.Generator, where: str, bad: float) -> None:
    s = ActivationStats()
    s.update("h", rng.standard_normal((4, 3)))
    before = s.to_dict()
    pre = rng.standard_normal((6, 3))
    act = np.maximum(pre, 0)
    (pre if where == "pre" else act)[2, 1] = bad
    with pytest.raises(ValueError, match=rf"h: {where} contains NaN or inf values; nothing was recorded"):
        s.update("h", pre, act)
    assert s.to_dict() == before


def test_nan_in_conv_and_derived_act_is_caught(rng: np.random.Generator) -> None:
    pre = rng.standard_normal((2, 2, 2, 2))
    pre[1, 1, 1, 1] = np.nan
    with pytest.raises(ValueError, match="pre contains NaN"):
        ActivationStats().update("c", pre)


@pytest.mark.parametrize(
    ("pre", "message"),
    [
        (np.ones(3), r"must be 2-D \(N, units\) or 4-D \(N, C, H, W\), got 1-D shape \(3,\); use pre.reshape"),
        (np.ones((2, 3, 4)), r"got 3-D shape \(2, 3, 4\); for sequences"),
        (np.ones((2, 0)), "pre has no units"),
    ],
)
def test_wrong_ndim_is_an_error(pre: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ActivationStats().update("h", pre)


def test_type_errors() -> None:
    s = ActivationStats()
    with pytest.raises(TypeError, match="name must be a non-empty string"):
        s.update("", np.ones((2, 2)))
    with pytest.raises(TypeError, match="pre must be a numpy array, got str"):
        s.update("h", "x")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="must hold numbers"):
        s.update("h", np.array([["a"]]))
    with pytest.raises(ValueError, match=r"act must have the same shape as pre, got act \(2, 3\) and pre \(2, 2\)"):
        s.update("h", np.ones((2, 2)), np.ones((2, 3)))
    s.update("h", [[1, -1]])  # type: ignore[arg-type]  # lists and integers are accepted
    assert s.fire_count("h").tolist() == [1, 0]


def test_unknown_site_and_bad_thresholds() -> None:
    s = ActivationStats()
    s.update("hidden1", np.ones((2, 2)))
    with pytest.raises(KeyError, match="no statistics for site 'hidden9'; known sites: 'hidden1'"):
        s.dead_mask("hidden9")
    with pytest.raises(ValueError, match="tau must be a finite number >= 0"):
        s.dormant_mask("hidden1", tau=-1)
    with pytest.raises(ValueError, match=r"threshold must be a fire rate in \[0, 1\]"):
        s.nearly_dead("hidden1", threshold=2)
    with pytest.raises(ValueError, match="dense site; per-position fire rates"):
        s.position_frequency("hidden1")
    with pytest.raises(ValueError, match="k must be an integer >= 0"):
        s.worst_units(-1)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(format="other"), "not an ActivationStats dict"),
        (lambda d: d.update(version=99), "unsupported ActivationStats version 99"),
        (lambda d: d["sites"][0].update(fire_count=[1]), "site 0 is malformed .*fire_count must have 2 entries"),
        (lambda d: d["sites"][0].pop("abs_sum"), "site 0 is malformed"),
        (lambda d: d["sites"][0].update(fire_count=[5, 0]), r"fire counts must lie in \[0, n_samples\]"),
        (lambda d: d["sites"][0].update(shape=[2, 1]), "shape must be"),
    ],
)
def test_from_dict_rejects_malformed(mutate, message: str) -> None:  # type: ignore[no-untyped-def]
    s = ActivationStats()
    s.update("h", np.ones((2, 2)))
    d = json.loads(json.dumps(s.to_dict()))
    mutate(d)
    with pytest.raises(ValueError, match=message):
        ActivationStats.from_dict(d)


def test_tracker_reports_overflowing_activations_as_non_finite():
    """Finite weights whose activations overflow raise NonFiniteError, which fit() reports as a divergence (exit 1
    in the CLI), not bad input (tests/test_reliability.py checks the fit side)."""
    from reluscope._validate import NonFiniteError
    from reluscope.diagnose import DeadUnitTracker
    from reluscope.nn import MLP, SGD
    from reluscope.train import History, TrainState

    net = MLP([2, 3, 3, 2], seed=0)
    for key in ("W1", "W2"):
        net.params[key][:] = 1e200  # finite, but h1 ~ 1e200 and z2 ~ 1e400 = inf
    X = np.ones((4, 2))
    state = TrainState(net=net, optimizer=SGD(0.5), X=X, y=np.zeros(4, dtype=np.intp), history=History(), epoch=7)
    with pytest.raises(NonFiniteError, match=r"hidden2: pre contains NaN or inf .* \(lower the learning rate\)"):
        DeadUnitTracker(every=1).record(state)


def test_monte_carlo_interval_is_wilson_so_a_rare_event_is_not_rejected():
    from reluscope.diagnose import born_dead_monte_carlo, born_dead_probability

    est = born_dead_monte_carlo(1, 8, n_inits=100, seed=0)  # P = 2^-8: almost surely 0 of 100
    assert est.n_dead == 0 and est.interval[1] > 0
    assert est.contains(born_dead_probability(1, 8))
    assert str(born_dead_probability(1, 2000)) == "0.0"  # not -0.0
