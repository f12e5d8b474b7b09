"""The model-quality section of the report: how reliable are the predictions?

With a training summary (the ``--report-json`` output of ``crmscore train``) the section shows
each model's metrics beside its baselines, its fitted parameters and the run details. Without
one it shows the quick models the caller fitted for the report
(:class:`crmscore.reporting.content.QuickModels`): an out-of-time churn evaluation and a CLV
calibration/holdout check. Nothing is fitted here; a check that is missing is a note ("no
data" when its input table is absent, the error when it could not be computed).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

import numpy as np
import pandas as pd

from crmscore.config import Config
from crmscore.core.serial import jsonable
from crmscore.estimators.specs import SPECS
from crmscore.reporting.content import (
    QUICK_CHURN,
    QUICK_CLV_HOLDOUT,
    SECTIONS,
    Block,
    FigureBlock,
    QuickModels,
    Section,
    TableBlock,
    _num,
    _pct,
    _png,
    no_data,
)

__all__ = ["churn_meaning", "quality_section"]


_METRIC_NAMES: dict[str, str] = {
    "roc_auc": "Ranking quality (AUC: 0.5 = guessing, 1 = perfect)",
    "capture_top_decile": "Churners found in the riskiest 10 %",
    "lift_top_decile": "Times better than random in the riskiest 10 %",
    "ece": "Calibration error (0 = probabilities match reality)",
    "brier": "Brier score (lower is better)",
}


_LEAD_METRIC_NAMES: dict[str, str] = {
    **_METRIC_NAMES,
    "capture_top_decile": "Conversions found in the best-scored 10 %",
    "lift_top_decile": "Times better than random in the best-scored 10 %",
}


def churn_meaning(cfg: Config) -> str:
    """One sentence on what churn means under ``cfg.churn`` (shown under the churn metrics)."""
    c = cfg.churn
    if c.definition == "inactivity":
        return f"Churn here means: no purchase in the {c.horizon_days} days after a date."
    if c.definition == "contractual":
        return f"Churn here means: the contract ends within the {c.horizon_days} days after a date."
    return f"Churn here means: the customer is flagged in the '{c.label_column}' column."


def _churn_quality(metrics: pd.DataFrame, meaning: str = "") -> TableBlock:
    cols = [c for c in _METRIC_NAMES if c in metrics.columns]
    rows = []
    for name, r in metrics.iterrows():
        cells = [str(name)]
        for c in cols:
            v = r[c]
            cells.append(
                _pct(v, 0) if c == "capture_top_decile" else _num(v, 3 if c != "lift_top_decile" else 2)
            )
        rows.append(cells)
    return TableBlock(
        "Churn model against simple rules",
        "The first row is the model; the others are simpler rules it should beat, tested on a later period "
        f"it never saw. {meaning}".strip(),
        ["Method", *[_METRIC_NAMES[c] for c in cols]],
        rows,
    )


def _clv_quality(metrics: pd.DataFrame) -> TableBlock:
    names = {"model": "BG/NBD model", **_BASELINE_NAMES}
    rows = [
        [
            names.get(str(i), str(i)),
            _num(r["mae"], 3),
            _num(r["total_predicted"]),
            _num(r["total_actual"]),
            _num(r["aggregate_error_pct"], 1) + " %",
        ]
        for i, r in metrics.iterrows()
    ]
    return TableBlock(
        "Purchase forecast against simple rules",
        "Repeat purchases forecast for a held-out recent period versus what customers really did.",
        ["Method", "Average error per customer", "Forecast total", "Actual total", "Total error"],
        rows,
    )


_BASELINE_NAMES: dict[str, str] = {"zero": "'Nobody buys again'", "historical_rate": "'Past rate continues'"}
_CLV_METRICS: dict[str, str] = {
    "mae": "Average error per customer (purchases)",
    "rmse": "Root mean squared error",
    "aggregate_error_pct": "Total error (%)",
}


def _title(kind: str) -> str:
    """The model kind in words (its spec's title; the kind itself when unknown)."""
    return SPECS[kind].title if kind in SPECS else str(kind)


def _metric_names(kind: str) -> dict[str, str]:
    """Readable names of the metrics worth showing for ``kind``: counts (CLV) or classifier metrics."""
    if kind not in SPECS:
        return _METRIC_NAMES
    spec = SPECS[kind]
    if not spec.higher_is_better:  # a forecast error (CLV holdout)
        return _CLV_METRICS
    return _LEAD_METRIC_NAMES if spec.target == "lead" else _METRIC_NAMES


def _trained_model_blocks(key: str, m: Mapping[str, Any]) -> list[TableBlock | str]:
    """Metrics beside baselines and the fitted parameters of one trained model of the summary."""
    title = _title(key)
    names = _metric_names(key)
    scored = {
        str(m.get("registered_name") or title): m.get("metrics", {}),
        **{_BASELINE_NAMES.get(k, k): v for k, v in m.get("baselines", {}).items()},
    }
    cols = [c for c in names if any(c in v for v in scored.values())]
    rows = [
        [
            str(n),
            *[
                _pct(v.get(c), 0)
                if c == "capture_top_decile" and v.get(c) is not None
                else _fmt_any(v.get(c))
                if v.get(c) is not None
                else "–"
                for c in cols
            ],
        ]
        for n, v in scored.items()
    ]
    split = str(m.get("split") or "")
    version = f"registered as version {m['version']}" if m.get("version") is not None else "not registered"
    promoted = "promoted to champion" if m.get("promoted") else "not promoted"
    reason = f" ({m['promotion_reason']})" if m.get("promotion_reason") else ""
    blocks: list[TableBlock | str] = [
        TableBlock(
            f"{title} against simple rules",
            f"The first row is the trained model; the others are simpler rules it should beat. "
            f"{split[:1].upper() + split[1:]}. {version.capitalize()}, {promoted}{reason}.",
            ["Method", *[names[c] for c in cols]],
            rows,
        )
    ]
    prow = _parameter_rows(m.get("parameters") or {})
    if prow:
        blocks.append(
            TableBlock(
                f"{title}: fitted parameters",
                "For analysts: the model's parameters and their standard errors.",
                ["parameter", "estimate", "standard error"],
                prow,
            )
        )
    return blocks


def _parameter_rows(params: Mapping[str, Any]) -> list[list[str]]:
    """``[name, estimate, standard error]`` rows of a model's ``parameters`` (nested by block)."""
    prow = []
    for block, vals in params.items():
        if not isinstance(vals, Mapping):
            prow.append([str(block), _fmt_any(vals), ""])
            continue
        for name, v in vals.items():
            if isinstance(v, Mapping):
                prow.append([f"{block}: {name}", _fmt_any(v.get("estimate")), _fmt_any(v.get("se"))])
            else:
                prow.append([f"{block}: {name}", _fmt_any(v), ""])
    return prow


def _train_summary_blocks(summary: Mapping[str, Any]) -> list[TableBlock | str]:
    """Blocks of a ``crmscore train --report-json`` summary (``TrainResult.to_dict()``).

    Per model in ``summary["models"]``: its metrics beside its baselines (``metrics`` and
    ``baselines``), the evaluation split, registry version and promotion decision, and the
    fitted ``parameters`` (CLV: estimate and standard error); then the run details.
    """
    blocks: list[TableBlock | str] = []
    for key, m in summary.get("models", {}).items():
        if m.get("status") != "trained":
            title = _title(key)
            blocks.append(f"{title}: {m.get('status', 'unknown')}. {m.get('reason', '')}".strip())
            continue
        blocks += _trained_model_blocks(key, m)
    run = [
        [k, _fmt_any(summary.get(k))]
        for k in ("as_of", "parent_run_id", "experiment_id", "git_commit", "tracking_uri")
        if summary.get(k) is not None
    ]
    run += [
        [f"{k} run", f"{m.get('run_id')} (version {m.get('version')})"]
        for k, m in summary.get("models", {}).items()
        if m.get("run_id")
    ]
    if run:
        blocks.append(
            TableBlock("Training run", "Where these numbers come from (MLflow).", ["name", "value"], run)
        )
    return blocks


def _summary_tables(summary: Mapping[str, Any]) -> list[TableBlock | str]:
    """Rendering of ``crmscore train --report-json`` output (generic tables for other shapes)."""
    if isinstance(summary.get("models"), Mapping):
        return _train_summary_blocks(summary)
    blocks: list[TableBlock | str] = []
    scalars: list[list[str]] = []
    for key, val in summary.items():
        if isinstance(val, Mapping):
            sub_tables = {k: v for k, v in val.items() if isinstance(v, Mapping)}
            flat = [[str(k), _fmt_any(v)] for k, v in val.items() if not isinstance(v, Mapping)]
            for sk, sv in sub_tables.items():
                inner = {k: v for k, v in sv.items() if isinstance(v, Mapping)}
                if inner:  # e.g. metrics: {model: {auc: ..}, baseline: {..}}
                    cols = sorted({c for v in inner.values() for c in v})
                    rows = [[str(n), *[_fmt_any(v.get(c)) for c in cols]] for n, v in inner.items()]
                    blocks.append(
                        TableBlock(
                            f"{key}: {sk}",
                            "From the training run: the model beside its baselines.",
                            ["", *cols],
                            rows,
                        )
                    )
                else:
                    rows = [[str(k), _fmt_any(v)] for k, v in sv.items()]
                    blocks.append(
                        TableBlock(f"{key}: {sk}", "From the training run.", ["name", "value"], rows)
                    )
            if flat:
                blocks.append(TableBlock(str(key), "From the training run.", ["name", "value"], flat))
        else:
            scalars.append([str(key), _fmt_any(val)])
    if scalars:
        blocks.insert(
            0, TableBlock("Training run", "Where these numbers come from.", ["name", "value"], scalars)
        )
    return blocks


def _fmt_any(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, int | np.integer):
        return _num(int(v))
    if isinstance(v, float | np.floating):
        v = float(v)
        return _num(v, 4) if abs(v) < 100 else _num(v, 1)
    if isinstance(v, list | tuple):
        return ", ".join(_fmt_any(x) for x in v)
    return str(v)


# ----------------------------------------------------------------------------------------------
# the section
# ----------------------------------------------------------------------------------------------


def _quick_churn_blocks(metrics: pd.DataFrame, figs: Mapping[str, Any], meaning: str) -> list[Block]:
    blocks: list[Block] = [_churn_quality(metrics, meaning)]
    if "gains" in figs:
        blocks.append(
            FigureBlock(
                "Finding the churners",
                "If you contact customers from the riskiest down, the curve shows the share of all "
                "churners "
                "reached; higher and further left is better.",
                _png(figs["gains"]),
            )
        )
    if "calibration" in figs:
        blocks.append(
            FigureBlock(
                "Are the probabilities honest?",
                "Predicted churn probability against the share that really churned; points on the "
                "diagonal "
                "mean the numbers can be taken at face value.",
                _png(figs["calibration"]),
            )
        )
    return blocks


def _quick_clv_blocks(metrics: pd.DataFrame, quick: QuickModels) -> list[Block]:
    blocks: list[Block] = [_clv_quality(metrics)]
    if quick.clv_holdout_figure is not None:
        blocks.append(
            FigureBlock(
                "Forecast against reality",
                "Average purchases in the held-out months, forecast and actual, for customers grouped by "
                "how often they bought before; the closer the lines, the better.",
                _png(quick.clv_holdout_figure),
            )
        )
    blocks.append(
        TableBlock(
            "Lifetime-value model parameters",
            "Fitted BG/NBD (purchasing and drop-out) and Gamma-Gamma (spend) parameters, for analysts.",
            ["parameter", "value"],
            [[k, _num(v, 4)] for k, v in {**quick.bgnbd_params, **quick.gg_params}.items()],
        )
    )
    return blocks


def _missing_check(what: str, quick: QuickModels, absent: Collection[str]) -> list[Block]:
    """The note for a quick-model check that is not there (none when its error explains why)."""
    if what in quick.errors:
        return []
    if "transactions" in absent:
        return [no_data("transactions", f"no {what} without purchases")]
    return [f"no data: no {what} was given to this report."]


def quality_section(
    quick: QuickModels,
    model_summary: Mapping[str, Any] | None,
    numbers: dict[str, Any],
    holdout_days: int,
    meaning: str,
    absent: Collection[str] = (),
) -> Section:
    """Model quality from ``model_summary``, else from the ``quick`` models.

    Adds ``numbers["model_quality"]``.

    Parameters
    ----------
    quick : QuickModels
        Quick-model outputs (used without a summary) and the errors of those that failed.
    model_summary : mapping, optional
        ``crmscore train --report-json`` output.
    numbers : dict
        The report's JSON numbers, completed here.
    holdout_days : int
        ``report.clv_holdout_days`` (recorded with the CLV check).
    meaning : str
        :func:`churn_meaning` of the configuration.
    absent : collection of str
        Tables absent from the CRM at the report date.
    """
    blocks: list[Block] = []
    if model_summary is not None:
        intro = (
            "Numbers from the latest training run. Each model is compared with simple rules of thumb: "
            "a model is only worth using when it clearly beats them."
        )
        blocks += _summary_tables(model_summary)
        numbers["model_quality"] = {"source": "model_summary", **jsonable(model_summary)}
    else:
        intro = (
            "No training run was given, so quick models were fitted here on the data before the report date "
            "and tested on the most recent months they did not see. A model is only worth using when it "
            "clearly beats the simple rules of thumb beside it."
        )
        mq: dict[str, Any] = {"source": "standalone quick models"}
        if quick.churn_metrics is not None:
            blocks += _quick_churn_blocks(quick.churn_metrics, quick.churn_figures, meaning)
            mq["churn"] = {"split": quick.churn_split, "metrics": jsonable(quick.churn_metrics)}
        else:
            blocks += _missing_check(QUICK_CHURN, quick, absent)
        if quick.clv_holdout_metrics is not None:
            blocks += _quick_clv_blocks(quick.clv_holdout_metrics, quick)
            mq["clv"] = {
                "holdout_metrics": jsonable(quick.clv_holdout_metrics),
                "bgnbd_params": jsonable(quick.bgnbd_params),
                "gg_params": jsonable(quick.gg_params),
                "holdout_days": holdout_days,
            }
        else:
            blocks += _missing_check(QUICK_CLV_HOLDOUT, quick, absent)
        numbers["model_quality"] = mq
    for what, err in quick.errors.items():
        blocks.append(f"The {what} could not be computed on this data: {err}")
    return Section("quality", SECTIONS["quality"], intro, blocks)
