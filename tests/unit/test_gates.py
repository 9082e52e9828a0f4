"""The champion comparison decides on paired intervals: a challenger inside the noise is 'not different' and the
configured rule keeps the champion; a clearly better one is promoted; a clearly worse one is refused."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from configs.settings import GatesConfig
from conveyor.domain import gates as G

GATES = GatesConfig()  # the defaults: promote_when=better, 1000 resamples, 95%


def _scores(seed: int, n: int, challenger_noise: float, champion_noise: float) -> tuple[np.ndarray, ...]:
    """Labels and two models that share most of their errors (as two models of the same data do)."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(int)
    shared = 1.2 * y + rng.normal(0, 1, n)
    return y, shared + rng.normal(0, challenger_noise, n), shared + rng.normal(0, champion_noise, n)


def _compare(y: np.ndarray, challenger: np.ndarray, champion: np.ndarray, gates: GatesConfig) -> G.GateResult:
    boot = G.evaluation_bootstrap(y, _prob(challenger), _prob(champion), gates, seed=0)
    return G.champion_gate(boot, "roc_auc", gates)


def _prob(raw: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-(raw - 1)))


def test_a_challenger_within_the_noise_is_not_different_and_the_champion_stays() -> None:
    y, challenger, champion = _scores(0, 8000, 0.3, 0.3)  # equally good models: any gain is noise
    result = _compare(y, challenger, champion, GATES)
    gain = result.intervals["roc_auc gain"]
    assert gain["verdict"] == G.NOT_DIFFERENT and gain["primary"]
    assert gain["low"] < 0 < gain["high"] and gain["high"] - gain["low"] < 0.02
    assert not result.passed
    assert len(result.reasons) == 1 and result.reasons[0].startswith("roc_auc not different from the champion: gain")
    assert "95% CI [" in result.reasons[0] and "the champion stays" in result.reasons[0]
    decision = G.decide([result], champion_version=3)
    assert decision.verdict == G.NOT_DIFFERENT and not decision.passed
    assert decision.to_json()["verdict"] == "not different"
    assert "| challenger_vs_champion | roc_auc gain |" in decision.markdown()


def test_the_rule_decides_a_not_different_challenger() -> None:
    y, challenger, champion = _scores(0, 8000, 0.3, 0.3)
    not_worse = GATES.model_copy(update={"promote_when": "not_worse", "max_regression_vs_champion": 0.01})
    result = _compare(y, challenger, champion, not_worse)
    assert result.intervals["roc_auc gain"]["verdict"] == G.NOT_DIFFERENT
    assert result.intervals["roc_auc gain"]["low"] > -0.01
    assert result.passed, result.reasons  # not shown worse by more than the margin: replace it
    strict = not_worse.model_copy(update={"max_regression_vs_champion": 0.0})
    refused = _compare(y, challenger, champion, strict)
    assert not refused.passed and "promote_when=not_worse needs the lower bound above" in refused.reasons[0]


def test_a_clearly_better_challenger_is_promoted() -> None:
    y, challenger, champion = _scores(1, 8000, 0.2, 1.0)
    result = _compare(y, challenger, champion, GATES)
    gain = result.intervals["roc_auc gain"]
    assert gain["verdict"] == G.BETTER and gain["low"] > 0.02
    assert result.passed, result.reasons
    assert result.metrics["roc_auc_gain"] == pytest.approx(
        result.metrics["roc_auc_challenger"] - result.metrics["roc_auc_champion"]
    )
    assert result.intervals["brier gain"]["verdict"] == G.BETTER  # a lower Brier score is a positive gain


def test_a_clearly_worse_challenger_is_refused_whatever_the_rule() -> None:
    y, challenger, champion = _scores(2, 8000, 1.0, 0.2)
    for rule in ("better", "not_worse"):
        result = _compare(y, challenger, champion, GATES.model_copy(update={"promote_when": rule}))
        assert result.intervals["roc_auc gain"]["verdict"] == G.WORSE
        assert not result.passed
        assert result.reasons[0].startswith("roc_auc is worse than the champion's: gain -0.")
        assert "lies below -max_regression_vs_champion -0.005" in result.reasons[0]


def test_the_comparison_is_seeded() -> None:
    y, challenger, champion = _scores(0, 3000, 0.3, 0.3)
    first, again = (_compare(y, challenger, champion, GATES) for _ in range(2))
    assert first.intervals == again.intervals
    other = G.champion_gate(G.evaluation_bootstrap(y, _prob(challenger), _prob(champion), GATES, 9), "roc_auc", GATES)
    assert other.intervals["roc_auc gain"]["low"] != first.intervals["roc_auc gain"]["low"]


def test_no_champion_no_comparison() -> None:
    y, challenger, _ = _scores(0, 1000, 0.3, 0.3)
    boot = G.evaluation_bootstrap(y, _prob(challenger), None, GATES, seed=0)
    assert G.champion_gate(boot, "roc_auc", GATES).passed
    assert G.decide([G.champion_gate(boot, "roc_auc", GATES)], None).verdict is None


def test_slices_refuse_on_a_regression_shown_by_the_slice_interval() -> None:
    y, good, _ = _scores(3, 6000, 0.3, 0.3)
    region = np.where(np.arange(len(y)) % 3 == 0, "south", "north")
    broken = good.copy()
    south = region == "south"
    broken[south] = np.random.default_rng(0).normal(0, 1, south.sum())  # no signal left in the south
    segments = pd.DataFrame({"region": region, "tiny": np.where(np.arange(len(y)) < 50, "a", "b")})
    result = G.slice_gate(pd.Series(y), _prob(broken), _prob(good), segments, GATES, "roc_auc", seed=0)
    assert not result.passed and len(result.reasons) == 2  # region=south, and tiny=b which holds the south too
    assert result.reasons[0].startswith("slice region=south (2000 rows): roc_auc gain -0.")
    assert result.reasons[1].startswith("slice tiny=b (5950 rows)")
    assert result.intervals["region=south"]["verdict"] == G.WORSE
    assert result.intervals["region=north"]["verdict"] == G.NOT_DIFFERENT  # identical there: a zero-width interval
    assert result.metrics["slices_skipped"] == 1.0  # tiny=a: 50 rows < min_slice_rows
    assert G.slice_gate(pd.Series(y), _prob(good), _prob(good), segments, GATES, "roc_auc").passed
