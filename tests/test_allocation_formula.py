"""The P2.9 formula: tables of cases (SPEC 4 and the design's worked example) and properties."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from governor_core.allocation.formula import (
    ClusterInput,
    FormulaConfig,
    SymbolInput,
    cluster_factor,
    compute_targets,
    confidence,
    drawdown_zone,
    performance_factor,
    regime_factor,
    sigmoid,
)

CONFIG = FormulaConfig()
EXAMPLE_CLUSTER = ClusterInput(0.2, 0.5)


@pytest.mark.parametrize(("regime", "name", "factor"), [
    ("TREND", "TREND", 1.2), ("MEAN_REVERSION", "MEAN_REVERSION", 1.0), ("CHOP", "CHOP", 0.6),
    (None, "UNKNOWN", 1.0), ("SIDEWAYS", "UNKNOWN", 1.0)])
def test_regime_factor(regime, name, factor):
    assert regime_factor(regime, CONFIG) == (name, factor)


@pytest.mark.parametrize(("drawdown", "zone", "factor"), [
    (0.0, "LOW", 1.0), (0.0499, "LOW", 1.0), (0.05, "MID", 0.7), (0.10, "MID", 0.7),
    (0.15, "MID", 0.7), (0.1501, "HIGH", 0.4), (1.0, "HIGH", 0.4)])
def test_drawdown_zone_and_boundaries(drawdown, zone, factor):
    assert drawdown_zone(drawdown, CONFIG) == (zone, factor)


@pytest.mark.parametrize(("stress", "config", "factor"), [
    (0.0, CONFIG, 1.0), (0.2, CONFIG, 0.8), (0.7, CONFIG, 0.3), (0.9, CONFIG, 0.3),
    (1.0, CONFIG, 0.3), (0.05, FormulaConfig(cluster_stress_max=0.9), 0.9), (None, CONFIG, 1.0)])
def test_cluster_factor_clamps_at_both_ends(stress, config, factor):
    assert cluster_factor(stress, config) == pytest.approx(factor)


@pytest.mark.parametrize(("alpha", "factor"), [
    (0.0, 0.5), (0.5, 0.6224593312), (-0.5, 0.3775406688), (50.0, 1.0), (-1000.0, 0.0)])
def test_sigmoid(alpha, factor):
    assert sigmoid(alpha) == pytest.approx(factor, abs=1e-9)


def test_missing_alpha_is_neutral_but_zero_alpha_halves():
    """The design's quirk: unavailable alpha → 1.0, alpha 0 → sigmoid(0) = 0.5."""
    assert performance_factor(None) == 1.0
    assert performance_factor(0.0) == 0.5


def one(budget=50_000.0, *, equity=100_000.0, drawdown=0.07, regime="TREND",
        cluster=EXAMPLE_CLUSTER, fresh=True, config=CONFIG):
    [target] = compute_targets(equity, drawdown, regime,
                               [SymbolInput("BTCUSDT", "majors", budget, fresh)],
                               {"majors": cluster} if cluster else {}, config)
    return target


def test_worked_example():
    """equity 100,000, DD 7 % (MID), TREND, stress 0.2, alpha 0.5, budget 50,000.

    50000 × 1.2 × 0.8 × 0.7 × sigmoid(0.5) = 20,914.63 (the brief's "20,914.75" is a
    rounding slip: sigmoid(0.5) = 0.622459…, 33,600 × 0.622459 = 20,914.63), below the
    40,000 symbol cap.
    """
    target = one()
    assert target.target_usd == pytest.approx(20914.6335, abs=1e-3)
    assert (target.regime_factor, target.cluster_factor, target.drawdown_factor) == (
        1.2, pytest.approx(0.8), 0.7)
    assert target.drawdown_zone == "MID"
    assert not target.symbol_cap_applied and target.cluster_scale == 1.0
    assert target.weight == pytest.approx(0.209146, abs=1e-6)
    assert target.confidence == 1.0 and target.fallbacks == ()


def test_symbol_cap():
    target = one(200_000.0, cluster=ClusterInput(0.0, 50.0), drawdown=0.0)
    assert target.raw_target_usd == pytest.approx(240_000.0)
    assert target.symbol_cap_applied
    assert target.target_usd == pytest.approx(40_000.0)


def test_cluster_cap_scales_every_symbol_of_the_cluster():
    symbols = [SymbolInput(s, "alts", 30_000.0) for s in ("AAAUSDT", "BBBUSDT", "CCCUSDT")]
    symbols.append(SymbolInput("DDDUSDT", "other", 30_000.0))
    targets = compute_targets(100_000.0, 0.0, "MEAN_REVERSION", symbols, {}, CONFIG)
    alts = [t for t in targets if t.cluster_id == "alts"]
    assert sum(t.target_usd for t in alts) == pytest.approx(60_000.0)
    assert all(t.cluster_scale == pytest.approx(60_000 / 90_000) for t in alts)
    assert all(t.target_usd == pytest.approx(20_000.0) for t in alts)
    other = next(t for t in targets if t.cluster_id == "other")
    assert other.target_usd == 30_000.0 and other.cluster_scale == 1.0


def test_symbol_cap_then_cluster_cap():
    symbols = [SymbolInput("AAAUSDT", "c", 90_000.0), SymbolInput("BBBUSDT", "c", 30_000.0)]
    targets = compute_targets(100_000.0, 0.0, None, symbols, {}, CONFIG)
    # 90k → 40k (symbol cap), then 40k + 30k = 70k > 60k → scale 6/7.
    assert [round(t.target_usd, 2) for t in targets] == [round(40_000 * 6 / 7, 2),
                                                         round(30_000 * 6 / 7, 2)]


@pytest.mark.parametrize(("kwargs", "fallbacks", "target", "conf"), [
    ({"regime": None}, ("regime",), 50000 * 0.8 * 0.7 * sigmoid(0.5), 0.8),
    ({"cluster": ClusterInput(None, 0.5)}, ("cluster_stress",),
     50000 * 1.2 * 0.7 * sigmoid(0.5), 0.8),
    ({"cluster": ClusterInput(0.2, None)}, ("alpha",), 50000 * 1.2 * 0.8 * 0.7, 0.9),
    ({"cluster": None}, ("cluster_stress", "alpha"), 40_000.0, 0.7),  # 42k, capped
    ({"fresh": False}, ("budget",), 40_000.0, 0.5),  # pass-through, then the symbol cap
    ({"fresh": False, "budget": 30_000.0}, ("budget",), 30_000.0, 0.5),
    ({"regime": None, "cluster": None}, ("regime", "cluster_stress", "alpha"),
     50000 * 0.7, 0.5),
])
def test_fallbacks(kwargs, fallbacks, target, conf):
    result = one(**kwargs)
    assert result.fallbacks == fallbacks
    assert result.target_usd == pytest.approx(target)
    assert result.confidence == pytest.approx(conf)


def test_confidence_rule():
    assert confidence(()) == 1.0
    assert confidence(("budget",)) == 0.5
    assert confidence(("regime", "cluster_stress", "alpha")) == pytest.approx(0.5)


finite = st.floats(min_value=0.0, max_value=1e9, allow_nan=False)


@given(equity=st.floats(min_value=1.0, max_value=1e9),
       drawdown=st.floats(min_value=0.0, max_value=1.0),
       regime=st.sampled_from(["TREND", "MEAN_REVERSION", "CHOP", None]),
       budgets=st.lists(st.tuples(finite, st.integers(0, 3), st.booleans()), max_size=12),
       stress=st.lists(st.one_of(st.none(), st.floats(0.0, 1.0)), min_size=4, max_size=4),
       alpha=st.lists(st.one_of(st.none(), st.floats(-1e6, 1e6)), min_size=4, max_size=4),
       config=st.builds(FormulaConfig, regime_trend=st.floats(0.0, 10.0),
                        max_symbol_pct=st.floats(0.0, 1.0),
                        max_cluster_pct=st.floats(0.0, 1.0)))
def test_caps_hold_and_targets_are_finite(equity, drawdown, regime, budgets, stress, alpha,
                                          config):
    symbols = [SymbolInput(f"S{i}", f"c{cluster}", budget, fresh)
               for i, (budget, cluster, fresh) in enumerate(budgets)]
    clusters = {f"c{i}": ClusterInput(stress[i], alpha[i]) for i in range(4)}
    targets = compute_targets(equity, drawdown, regime, symbols, clusters, config)
    tolerance = 1e-9 * equity
    totals: dict[str, float] = {}
    for target in targets:
        assert math.isfinite(target.target_usd) and target.target_usd >= 0
        assert target.target_usd <= config.max_symbol_pct * equity + tolerance
        assert 0.0 <= target.confidence <= 1.0
        totals[target.cluster_id] = totals.get(target.cluster_id, 0.0) + target.target_usd
    for total in totals.values():
        assert total <= config.max_cluster_pct * equity + tolerance
