"""Scoring inputs checked against the models' training records (crmscore.scoring.input_checks):
types, unseen category levels and missing values, warn and refuse thresholds, --force."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from crmscore.config import InputChecksConfig
from crmscore.core.score_contract import InputGuardError
from crmscore.estimators.preparer import FeatureProfile, FramePreparer
from crmscore.scoring.input_checks import check_inputs, fill_absent, inspect_inputs, profile_of

LIMITS = InputChecksConfig()  # unseen 5 % / 50 %, missing rise 10 % / 50 %
N = 1000
PLANS = ("basic", "pro", "team")


def _profile(missing: float | None = 0.02) -> list[FeatureProfile]:
    return [
        FeatureProfile("spend", "numeric", missing),
        FeatureProfile("plan", "categorical", missing, PLANS),
        FeatureProfile("visits", "numeric", missing),
    ]


def _frame(seed: int = 0) -> pd.DataFrame:
    """Scoring rows like the training rows: 2 % missing per feature, known levels only."""
    rng = np.random.default_rng(seed)
    spend = rng.gamma(2.0, 50.0, N)
    spend[:20] = np.nan
    plan = rng.choice(np.array(PLANS, dtype=object), N)
    plan[20:40] = None
    visits = rng.poisson(3, N).astype(float)
    visits[40:60] = np.nan
    return pd.DataFrame({"spend": spend, "plan": plan, "visits": visits})


def test_inputs_like_training_pass_with_one_summary_line():
    result = check_inputs("churn", _profile(), _frame(), LIMITS)
    assert result.findings == ()
    assert result.notes() == [
        "churn: 3 input features checked on 1,000 rows: 0 type problems, 0 unseen-level warnings, "
        "0 missing-value warnings, 0 refused"
    ]
    by = {c.feature: c for c in result.checks}
    assert by["plan"].n_missing == 20 and by["plan"].n_unseen == 0
    assert by["spend"].missing_share == pytest.approx(0.02)


def test_retyped_numeric_column_is_refused_naming_kind_and_column():
    X = _frame()
    X["spend"] = [f"x{i}" for i in range(N)]  # a numeric attribute retyped to text in the CRM
    with pytest.raises(InputGuardError) as info:
        check_inputs("churn", _profile(), X, LIMITS)
    msg = str(info.value)
    assert "churn model" in msg and "'spend'" in msg and "numeric at training but arrives as text" in msg
    assert "1,000 of 1,000 present values are not numbers" in msg and "--force" in msg


def test_numbers_held_as_text_are_not_a_type_change():
    X = _frame()
    X["spend"] = X["spend"].map(lambda v: None if np.isnan(v) else f"{v:.2f}").astype(object)
    result = check_inputs("churn", _profile(), X, LIMITS)
    spend = next(c for c in result.checks if c.feature == "spend")
    assert result.findings == () and spend.arrived == "numeric text" and spend.n_missing == 20


def test_categorical_arriving_as_numbers_is_refused():
    X = _frame()
    X["plan"] = np.arange(N, dtype=float)
    with pytest.raises(
        InputGuardError, match=r"'plan' was categorical \(text\) at training but arrives as numbers"
    ):
        check_inputs("leads", _profile(), X, LIMITS)


def test_missing_column_is_refused_and_forced_scores_it_as_missing():
    X = _frame().drop(columns=["plan"])
    with pytest.raises(InputGuardError, match="input column 'plan' is missing from the scoring features"):
        check_inputs("churn", _profile(), X, LIMITS)
    result = check_inputs("churn", _profile(), X, LIMITS, force=True)
    assert [c.feature for c in result.absent] == ["plan"]
    assert result.notes()[0].startswith("forced (--force): churn model: input column 'plan' is missing")
    assert result.notes()[-1].endswith("1 type problems, 0 unseen-level warnings, 0 missing-value warnings, "
                                       "1 refused (written anyway: --force)")  # fmt: skip
    filled = fill_absent(X, result)
    assert filled["plan"].isna().all() and len(filled) == N and "plan" not in X.columns  # X untouched
    prep = FramePreparer().fit(_frame())
    assert prep.transform(filled)["plan"].isna().all()  # the model reads it as missing


def test_all_null_feature_is_refused_above_the_missing_threshold():
    X = _frame()
    X["visits"] = np.nan
    with pytest.raises(InputGuardError) as info:
        check_inputs("churn", _profile(), X, LIMITS)
    msg = str(info.value)
    assert "'visits'" in msg and "100.0% of 1,000 rows missing against 2.0% at training (+98.0%)" in msg
    assert "scoring.input_checks.missing_refuse = 50%" in msg and "--force" in msg


def test_a_column_with_no_value_at_all_is_a_missing_problem_not_a_type_change():
    X = _frame()
    X["visits"] = pd.Series([None] * N, dtype=object)  # an all-NULL column read without a type
    result = inspect_inputs("churn", _profile(), X, LIMITS)
    assert [(f.rule, f.level, f.feature) for f in result.findings] == [("missing", "refuse", "visits")]


def test_unseen_levels_for_every_row_are_refused():
    X = _frame()
    X["plan"] = np.where(X["plan"].isna(), None, "plan-" + X["plan"].fillna("").astype(str))
    with pytest.raises(InputGuardError) as info:
        check_inputs("churn", _profile(), X, LIMITS)
    msg = str(info.value)
    assert "'plan'" in msg and "100.0% of its 980 non-missing values (980) are category levels unseen" in msg
    assert "scoring.input_checks.unseen_refuse = 50%" in msg and "--force" in msg


def test_a_few_unseen_levels_below_warn_give_nothing():
    X = _frame()
    X.loc[X.index[100:130], "plan"] = "brand-new"  # 30 of 980 non-missing: 3.1 % < 5 %
    result = check_inputs("churn", _profile(), X, LIMITS)
    plan = next(c for c in result.checks if c.feature == "plan")
    assert plan.n_unseen == 30 and result.findings == () and len(result.notes()) == 1


def test_shares_between_warn_and_refuse_are_notes_not_errors():
    X = _frame()
    X.loc[X.index[100:300], "plan"] = "brand-new"  # 200 of 980: 20.4 %
    X.loc[X.index[300:500], "spend"] = np.nan  # 22 % missing against 2 %: +20 %
    result = check_inputs("churn", _profile(), X, LIMITS)
    assert [(f.rule, f.level, f.feature) for f in result.findings] == [
        ("missing", "warn", "spend"),
        ("unseen", "warn", "plan"),
    ]
    notes = result.notes()
    assert len(notes) == 3  # only the features above warn, then the summary
    assert "22.0% of 1,000 rows missing against 2.0% at training (+20.0%)" in notes[0]
    assert "20.4% of its 980 non-missing values (200)" in notes[1] and "unseen_warn = 5%" in notes[1]
    assert notes[2].endswith("1 unseen-level warnings, 1 missing-value warnings, 0 refused")


def test_force_turns_refusals_into_notes():
    X = _frame()
    X["plan"] = "unknown-plan"
    X["visits"] = np.nan
    result = check_inputs("churn", _profile(), X, LIMITS, force=True)
    assert {(f.rule, f.feature) for f in result.refusals} == {("unseen", "plan"), ("missing", "visits")}
    notes = result.notes()
    assert all(n.startswith("forced (--force): churn model: input") for n in notes[:2])
    assert notes[2].endswith("2 refused (written anyway: --force)")


def test_missing_share_is_measured_against_training_not_zero():
    """A feature missing for 60 % of rows at training is not refused at 60 %."""
    X = _frame()
    X.loc[X.index[:600], "visits"] = np.nan
    profile = [*_profile()[:2], FeatureProfile("visits", "numeric", 0.58)]
    assert check_inputs("churn", profile, X, LIMITS).findings == ()


def test_old_bundle_without_training_shares_is_checked_as_far_as_it_can_be():
    profile = _profile(missing=None)  # a crmscore.classifier/2 bundle: kinds and levels, no shares
    X = _frame()
    X.loc[X.index[:600], "spend"] = np.nan  # not comparable: no finding
    X["visits"] = np.nan  # missing on every row: a warning, not a refusal
    result = check_inputs("churn", profile, X, LIMITS)
    assert [(f.rule, f.level, f.feature) for f in result.findings] == [("missing", "warn", "visits")]
    assert "predates the training record" in result.summary()
    X["plan"] = "unknown-plan"  # levels are in every bundle: still refused
    with pytest.raises(InputGuardError, match="'plan'"):
        check_inputs("churn", profile, X, LIMITS)


def test_profile_from_the_fitted_preparer():
    train = _frame(seed=1)
    train["flag"] = np.arange(N) % 2 == 0
    prep = FramePreparer().fit(train)
    by = {p.name: p for p in prep.profile()}
    assert by["plan"] == FeatureProfile("plan", "categorical", 0.02, PLANS)
    assert by["spend"] == FeatureProfile("spend", "numeric", 0.02)
    assert by["flag"] == FeatureProfile("flag", "numeric", 0.0)

    class Spec:  # a kind without a profile: the signature's types, no shares
        profile = None

        @staticmethod
        def inputs(model):
            return [("spend", "double"), ("plan", "string")]

    assert profile_of(Spec, None) == [
        FeatureProfile("spend", "numeric"),
        FeatureProfile("plan", "categorical"),
    ]


def test_every_refusal_of_a_frame_is_named_in_one_error():
    X = _frame().drop(columns=["spend"])
    X["plan"] = "unknown-plan"
    with pytest.raises(InputGuardError) as info:
        check_inputs("churn", _profile(), X, LIMITS)
    assert "'spend'" in str(info.value) and "'plan'" in str(info.value)


def test_no_value_appears_in_the_notes():
    X = _frame()
    X["plan"] = "secret-level-value"
    X["spend"] = "secret-text"
    result = check_inputs("churn", _profile(), X, LIMITS, force=True)
    assert not any("secret" in n for n in result.notes())
