"""The scoring inputs checked against what each model saw at training, before anything is written.

A model scores whatever frame it is given: a category level it never saw becomes missing, a
column retyped to text becomes missing, a column gone NULL is missing. Each alone is
legitimate on a few rows; on most rows the scores are no longer the model's. So before a run
writes anything, :func:`inspect_inputs` compares a model's scoring frame with its training
record (``ModelSpec.profile``: :class:`~crmscore.estimators.preparer.FeatureProfile` per
input, stored in the model bundle):

1. **type signature** — every input column is present; a feature numeric at training arrives
   as numbers (or as text whose every present value is a number); a categorical one arrives as
   text or categories, not as numbers. A column entirely missing has no type and passes this
   rule (the missing-value rule sees it). A missing or retyped column is refused.
2. **unseen category levels** — per categorical feature, the share of its non-missing rows
   whose level was not seen at training (the model scores them as missing).
3. **missing values** — per feature, the rise of the share of missing rows over the training
   share (a bundle older than ``crmscore.classifier/3`` has no training share: a feature
   missing on every row then gets a warning, the rise is not measured).

A share above ``scoring.input_checks.*_warn`` is a warning note, above ``*_refuse`` a refusal;
:func:`check_inputs` raises :class:`~crmscore.core.score_contract.InputGuardError` for the
refusals unless ``force`` (then they are notes too, marked forced). The notes
(:meth:`InputCheckResult.notes`) list the features above a warning threshold and one summary
line per model kind. Only counts, shares and column names appear in them, never a value.

Everything is vectorised (one ``isna`` per numeric feature, one factorisation per categorical
one); nothing is read or written here.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from crmscore.core.ids import text_codes
from crmscore.core.score_contract import InputGuardError
from crmscore.estimators.preparer import FeatureProfile

__all__ = [
    "FeatureCheck",
    "Finding",
    "InputCheckResult",
    "check_inputs",
    "fill_absent",
    "inspect_inputs",
    "profile_of",
    "raise_refusals",
]

logger = logging.getLogger(__name__)

Rule = Literal["type", "unseen", "missing"]
Arrival = Literal["numeric", "numeric text", "categorical", "timestamp", "empty", "absent"]
_KEY = "scoring.input_checks"
_FORCE_HINT = " (--force scores anyway)"


@dataclass(frozen=True)
class Finding:
    """One input above a threshold: ``level`` ``"warn"`` or ``"refuse"``, the rule, the message."""

    level: Literal["warn", "refuse"]
    rule: Rule
    feature: str
    message: str


@dataclass(frozen=True)
class FeatureCheck:
    """The measures of one model input on the scoring rows.

    Attributes
    ----------
    feature : str
        The column.
    kind : {"numeric", "categorical"}
        Its kind at training.
    arrived : str
        How it arrives: ``numeric``, ``numeric text`` (text whose present values are all
        numbers), ``categorical`` (text or categories), ``timestamp``, ``empty`` (every value
        missing, no type) or ``absent`` (no such column).
    n_missing : int
        Rows missing as the model reads them (non-numbers of a numeric feature included).
    n_unseen : int
        Non-missing rows of a categorical feature whose level is unseen at training.
    n_not_numbers : int
        Present values of a numeric feature that are not numbers.
    training_missing_share : float or None
        The training share (None: not recorded).
    """

    feature: str
    kind: str
    arrived: Arrival
    n_rows: int
    n_missing: int = 0
    n_unseen: int = 0
    n_not_numbers: int = 0
    training_missing_share: float | None = None

    @property
    def n_present(self) -> int:
        """Rows with a value, as the model reads them."""
        return self.n_rows - self.n_missing

    @property
    def missing_share(self) -> float:
        """Share of the rows missing."""
        return self.n_missing / self.n_rows if self.n_rows else 0.0

    @property
    def unseen_share(self) -> float:
        """Share of the non-missing rows whose level is unseen at training."""
        return self.n_unseen / self.n_present if self.n_present else 0.0

    @property
    def missing_rise(self) -> float | None:
        """Missing share minus the training share (None without a training share)."""
        if self.training_missing_share is None:
            return None
        return self.missing_share - self.training_missing_share


@dataclass(frozen=True)
class InputCheckResult:
    """The checks of one model kind's scoring frame (see the module docstring)."""

    kind: str
    n_rows: int
    checks: tuple[FeatureCheck, ...]
    findings: tuple[Finding, ...] = ()
    recorded: bool = True
    forced: bool = False

    @property
    def refusals(self) -> list[Finding]:
        """The findings above a refusal threshold (or a type problem)."""
        return [f for f in self.findings if f.level == "refuse"]

    @property
    def absent(self) -> list[FeatureCheck]:
        """The inputs missing from the frame."""
        return [c for c in self.checks if c.arrived == "absent"]

    def summary(self) -> str:
        """One line: features checked, warnings and refusals per rule."""

        def n(rule: Rule, level: str) -> int:
            return sum(1 for f in self.findings if f.rule == rule and f.level == level)

        refused = len(self.refusals)
        line = (
            f"{self.kind}: {len(self.checks)} input features checked on {self.n_rows:,} rows: "
            f"{n('type', 'refuse')} type problems, {n('unseen', 'warn')} unseen-level warnings, "
            f"{n('missing', 'warn')} missing-value warnings, {refused} refused"
        )
        if refused and self.forced:
            line += " (written anyway: --force)"
        if not self.recorded:
            line += (
                "; the model's bundle predates the training record of missing values (retrain to "
                "record it): only features missing on every row are flagged"
            )
        return line

    def notes(self) -> list[str]:
        """The run notes: each finding (refusals marked when forced), then the summary line."""
        out = [
            f"forced (--force): {f.message.removesuffix(_FORCE_HINT)}" if f.level == "refuse" else f.message
            for f in self.findings
        ]
        return [*out, self.summary()]


def profile_of(spec: Any, model: Any) -> list[FeatureProfile]:
    """The training record of ``model``'s inputs (``spec.profile``; else its signature's types)."""
    if spec.profile is not None:
        return list(spec.profile(model))
    numeric = ("double", "float", "long", "integer", "boolean")
    return [FeatureProfile(c, "numeric" if t in numeric else "categorical") for c, t in spec.inputs(model)]


def _arrival(s: pd.Series) -> Arrival:
    if pd.api.types.is_bool_dtype(s) or pd.api.types.is_numeric_dtype(s):
        return "numeric"
    if pd.api.types.is_datetime64_any_dtype(s) or pd.api.types.is_timedelta64_dtype(s):
        return "timestamp"
    return "categorical"


def _measure(p: FeatureProfile, X: pd.DataFrame) -> FeatureCheck:
    """The counts of one input on the rows of ``X`` (vectorised)."""
    n = len(X)
    base = {"feature": p.name, "kind": p.kind, "n_rows": n, "training_missing_share": p.missing_share}
    if p.name not in X.columns:
        return FeatureCheck(arrived="absent", n_missing=n, **base)
    s = X[p.name]
    arrived = _arrival(s)
    if arrived == "timestamp":
        return FeatureCheck(arrived=arrived, n_missing=int(s.isna().sum()), **base)
    if p.kind == "numeric":
        if arrived == "numeric":
            return FeatureCheck(arrived=arrived, n_missing=int(s.isna().sum()), **base)
        present = s.notna().to_numpy()
        if not present.any():
            return FeatureCheck(arrived="empty", n_missing=n, **base)
        values = pd.to_numeric(s, errors="coerce")  # what the preparer does with text
        not_numbers = int((present & values.isna().to_numpy()).sum())
        return FeatureCheck(
            arrived="categorical" if not_numbers else "numeric text",
            n_missing=int(values.isna().sum()),
            n_not_numbers=not_numbers,
            **base,
        )
    codes, texts = text_codes(s)
    present = codes >= 0
    n_present = int(present.sum())
    if arrived == "categorical" and not n_present:
        arrived = "empty"
    levels = pd.Index(list(p.levels or ()), dtype=object)
    known = levels.get_indexer(texts) >= 0 if len(texts) else np.zeros(0, dtype=bool)
    counts = np.bincount(codes[present], minlength=len(texts))
    unseen = int(counts[~known].sum()) if len(texts) else 0
    return FeatureCheck(arrived=arrived, n_missing=n - n_present, n_unseen=unseen, **base)


def _type_finding(kind: str, c: FeatureCheck) -> Finding | None:
    col = repr(c.feature)
    if c.arrived == "absent":
        msg = (
            f"{kind} model: input column {col} is missing from the scoring features (the model was "
            "trained with it): restore it in the CRM or retrain; --force scores it as missing on every row"
        )
    elif c.arrived == "timestamp":
        msg = f"{kind} model: input column {col} was {c.kind} at training but arrives as timestamps"
    elif c.kind == "numeric" and c.arrived == "categorical":
        msg = (
            f"{kind} model: input column {col} was numeric at training but arrives as text "
            f"({c.n_not_numbers:,} of {c.n_not_numbers + c.n_present:,} present values are not numbers): "
            "fix the column's type in the CRM; --force scores those values as missing"
        )
    elif c.kind == "categorical" and c.arrived == "numeric":
        msg = (
            f"{kind} model: input column {col} was categorical (text) at training but arrives as "
            "numbers: fix the column's type in the CRM; --force reads the numbers as levels"
        )
    else:
        return None
    return Finding("refuse", "type", c.feature, msg)


def _share_findings(kind: str, c: FeatureCheck, limits: Any) -> list[Finding]:
    out: list[Finding] = []
    col = repr(c.feature)
    if c.kind == "categorical" and c.n_present:
        share = c.unseen_share
        level = _level(share, limits.unseen_warn, limits.unseen_refuse)
        if level:
            thr = limits.unseen_refuse if level == "refuse" else limits.unseen_warn
            msg = (
                f"{kind} model: input {col}: {share:.1%} of its {c.n_present:,} non-missing values "
                f"({c.n_unseen:,}) are category levels unseen at training, scored as missing; above "
                f"{_KEY}.unseen_{level} = {thr:.0%}"
            )
            out.append(Finding(level, "unseen", c.feature, msg + _force_hint(level)))
    rise = c.missing_rise
    if rise is not None and c.n_rows:
        level = _level(rise, limits.missing_warn, limits.missing_refuse)
        if level:
            thr = limits.missing_refuse if level == "refuse" else limits.missing_warn
            msg = (
                f"{kind} model: input {col}: {c.missing_share:.1%} of {c.n_rows:,} rows missing against "
                f"{c.training_missing_share:.1%} at training (+{rise:.1%}); above {_KEY}.missing_{level} "
                f"= {thr:.0%}"
            )
            out.append(Finding(level, "missing", c.feature, msg + _force_hint(level)))
    elif rise is None and c.n_rows and c.n_missing == c.n_rows:
        msg = (
            f"{kind} model: input {col} is missing on all {c.n_rows:,} rows (the model's bundle has no "
            "training share of missing values to compare with: retrain to record it)"
        )
        out.append(Finding("warn", "missing", c.feature, msg))
    return out


def _level(value: float, warn: float, refuse: float) -> Literal["warn", "refuse"] | None:
    if value > refuse:
        return "refuse"
    if value > warn:
        return "warn"
    return None


def _force_hint(level: str) -> str:
    return _FORCE_HINT if level == "refuse" else ""


def inspect_inputs(
    kind: str, profile: Sequence[FeatureProfile], X: pd.DataFrame, limits: Any, *, force: bool = False
) -> InputCheckResult:
    """Compare the scoring frame ``X`` of a model kind with its training record (never raises).

    Parameters
    ----------
    kind : str
        The model kind (named in every message).
    profile : sequence of FeatureProfile
        The model's inputs as recorded at training (:func:`profile_of`).
    X : DataFrame
        The rows the model is about to score.
    limits : InputChecksConfig
        ``unseen_warn``, ``unseen_refuse``, ``missing_warn``, ``missing_refuse`` (shares).
    force : bool
        Recorded on the result (its notes then mark the refusals as written anyway).

    Returns
    -------
    InputCheckResult
        The measures of every input and the findings above a threshold.
    """
    checks = tuple(_measure(p, X) for p in profile)
    findings: list[Finding] = []
    for c in checks:
        problem = _type_finding(kind, c)
        if problem is not None:  # the cause: its missing and unseen shares follow from it
            findings.append(problem)
        else:
            findings += _share_findings(kind, c, limits)
    recorded = all(p.missing_share is not None for p in profile)
    return InputCheckResult(kind, len(X), checks, tuple(findings), recorded, force)


def raise_refusals(results: Iterable[InputCheckResult]) -> None:
    """Raise one :class:`InputGuardError` naming every refusal of ``results`` (unless forced).

    Raises
    ------
    InputGuardError
        At least one result not forced has a refusal.
    """
    refused = [f.message for r in results if not r.forced for f in r.refusals]
    if refused:
        raise InputGuardError("scoring inputs unlike the models' training data: " + "; ".join(refused))


def check_inputs(
    kind: str, profile: Sequence[FeatureProfile], X: pd.DataFrame, limits: Any, *, force: bool = False
) -> InputCheckResult:
    """:func:`inspect_inputs`, raising for its refusals unless ``force`` (then logged as warnings).

    Raises
    ------
    InputGuardError
        A refusal (missing or retyped column, a share above its ``*_refuse`` threshold) and
        not ``force``; the message names the kind, the column, the share and the threshold.
    """
    result = inspect_inputs(kind, profile, X, limits, force=force)
    raise_refusals([result])
    return result


def fill_absent(X: pd.DataFrame, result: InputCheckResult) -> pd.DataFrame:
    """``X`` with the inputs absent from it added as missing on every row (a forced run).

    Numeric inputs as NaN, categorical ones as None: the model scores them as missing values.
    """
    absent = result.absent
    if not absent:
        return X
    add = {
        c.feature: np.full(len(X), np.nan) if c.kind == "numeric" else np.full(len(X), None, dtype=object)
        for c in absent
    }
    return X.assign(**add)
