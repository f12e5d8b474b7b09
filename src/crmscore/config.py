"""Typed, frozen configuration loaded once from ``params.yaml``.

Each stage has its own block (``data``, ``generate``, ``features``, ``churn``, ``leads``,
``clv``, ``training``, ``tracking``, ``scoring``, ``report``) and reads only that block.
Unknown keys and bad values are errors that name the key (``ConfigError``).

Secrets never live in ``params.yaml``: the CRM URL may be overridden by the environment
variable ``CRMSCORE_CRM_URL``, and a URL in ``params.yaml`` that carries a password is
refused. Use :func:`redact_url` before a URL reaches a log line.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from datetime import date
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

__all__ = [
    "CRM_URL_ENV",
    "TABLE_NAMES",
    "ChurnConfig",
    "ClvConfig",
    "Config",
    "ConfigError",
    "DataConfig",
    "FeaturesConfig",
    "GenerateConfig",
    "InputChecksConfig",
    "LeadsConfig",
    "ReportConfig",
    "ScoringConfig",
    "TableConfig",
    "TrackingConfig",
    "TrainingConfig",
    "load_config",
    "normalise_url",
    "redact_url",
    "url_has_secret",
    "validate_identifier",
]

CRM_URL_ENV = "CRMSCORE_CRM_URL"
TABLE_NAMES: tuple[str, ...] = (
    "customers",
    "transactions",
    "leads",
    "lead_activities",
    "support_tickets",
    "marketing_spend",
)
TableName = Literal[
    "customers", "transactions", "leads", "lead_activities", "support_tickets", "marketing_spend"
]

#: roles a column can have for the models (``data.tables.<table>.roles``)
ColumnRole = Literal["identifier", "ownership", "pii", "free_text", "feature"]

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


class ConfigError(ValueError):
    """A configuration problem; the message names the offending key."""


def validate_identifier(name: str, what: str = "identifier") -> str:
    """Return ``name`` if it is a safe SQL identifier, else raise :class:`ConfigError`.

    Parameters
    ----------
    name : str
        Candidate table, schema or column name from configuration.
    what : str
        What the name is, for the error message (e.g. ``"data.tables.customers.name"``).

    Returns
    -------
    str
        The unchanged name. Callers still quote it when building SQL.
    """
    if not isinstance(name, str) or not _IDENTIFIER.match(name):
        raise ConfigError(
            f"{what}: {name!r} is not a valid SQL identifier "
            "(letters, digits and underscores, not starting with a digit, at most 63 characters)"
        )
    return name


#: Query parameters of a URL whose values are secrets (``password=``, ``sslpassword=``, tokens ...).
_SECRET_PARAM = re.compile(r"(?i)(pass|pwd|secret|token|api[_-]?key|access[_-]?key|credential)")


def _split_url(url: str) -> tuple[str, str, str, str] | None:
    """``(scheme://, userinfo, host-and-rest, query)`` of ``url``; None when it has no ``://``.

    The userinfo ends at the *last* ``@`` before the path, so a raw ``@`` in a password stays
    inside it.
    """
    head, sep, rest = url.partition("://")
    if not sep:
        return None
    end = len(rest)
    for ch in "/?#":
        i = rest.find(ch)
        if i != -1:
            end = min(end, i)
    netloc, tail = rest[:end], rest[end:]
    userinfo, at, host = netloc.rpartition("@")
    path, _, query = tail.partition("?")
    return head + sep, userinfo if at else "", host + path, query


def _secret_query(query: str) -> list[tuple[str, str]]:
    pairs = [part.partition("=") for part in query.split("&") if part]
    return [(k, v) for k, _, v in pairs if _SECRET_PARAM.search(k) and v]


def url_has_secret(url: str) -> bool:
    """Whether ``url`` carries a password or another secret (user-info, even with an empty user,
    or a query parameter such as ``password=`` / ``sslpassword=``)."""
    parts = _split_url(url)
    if parts is None:
        return False
    _, userinfo, _, query = parts
    password = userinfo.partition(":")[2]
    return bool(password) or bool(_secret_query(query))


def normalise_url(url: str) -> str:
    """``url`` with a raw ``@`` inside its password percent-encoded (``%40``), so that URL parsers
    (SQLAlchemy's stops a password at the first ``@``) see the right password and host and never
    show the password's tail as a host name in an error."""
    parts = _split_url(url)
    if parts is None or "@" not in parts[1]:
        return url
    scheme, userinfo, rest, query = parts
    user, colon, password = userinfo.partition(":")
    encoded = f"{user.replace('@', '%40')}{colon}{password.replace('@', '%40')}"
    return f"{scheme}{encoded}@{rest}" + (f"?{query}" if query else "")


def redact_url(url: str) -> str:
    """``url`` with every secret replaced by ``***``: the one routine for logs, errors, MLflow
    params and reports (user-info passwords, raw ``@`` included, and secret query parameters)."""
    parts = _split_url(url)
    if parts is None:
        return url
    scheme, userinfo, rest, query = parts
    if userinfo:
        user, colon, password = userinfo.partition(":")
        userinfo = f"{user}:***" if colon and password else userinfo
        scheme += userinfo + "@"
    if query:
        redacted = []
        for part in query.split("&"):
            k, eq, v = part.partition("=")
            redacted.append(f"{k}=***" if eq and v and _SECRET_PARAM.search(k) else part)
        rest += "?" + "&".join(redacted)
    return scheme + rest


class _Block(BaseModel):
    """Base of every config block: frozen, unknown keys forbidden."""

    model_config = ConfigDict(extra="forbid", frozen=True)


#: strftime directives that name a calendar date (a format needs one of them).
_DATE_DIRECTIVES = ("%Y", "%y", "%G", "%m", "%b", "%B", "%d", "%j", "%U", "%W", "%V", "%x", "%c", "%F", "%D")


def check_date_format(fmt: str, where: str) -> None:
    """Refuse a strftime format that names no date or holds a directive ``strptime`` rejects.

    Raises
    ------
    ValueError
        The message names ``where`` and the format.
    """
    from datetime import UTC, datetime

    if not any(d in fmt for d in _DATE_DIRECTIVES):
        raise ValueError(
            f"{where}: format {fmt!r} has no date directive (e.g. '%d/%m/%Y', '%Y%m%d', '%m/%d/%Y %H:%M')"
        )
    try:
        sample = datetime(2001, 2, 3, 4, 5, 6, tzinfo=UTC).strftime(fmt)
        datetime.strptime(sample, fmt)
    except ValueError as exc:
        raise ValueError(f"{where}: format {fmt!r} is not a valid strftime format ({exc})") from None


class TableConfig(_Block):
    """Where one input table lives and how its columns are named at the source.

    ``columns`` maps crmscore's canonical column names (see ``crmscore.core.schema``) to the
    source's names, e.g. ``{customer_id: CustomerID, ts: InvoiceDate}``.
    """

    name: str | None = None
    columns: dict[str, str] = Field(default_factory=dict)
    #: text encoding of a CSV file (folder source); a row with a byte that does not decode is
    #: quarantined with reason ``bad_encoding``, the rest of the table is kept
    encoding: str = "utf-8"
    #: feature roles of columns (canonical names): identifier, ownership (owner, rep), pii and
    #: free_text columns are never model features; ``feature`` opts a column back in that the
    #: PII guard (``features.pii_guard``) would exclude
    roles: dict[str, ColumnRole] = Field(default_factory=dict)
    #: strftime format of text timestamp columns (canonical names), e.g. ``{ts: "%d/%m/%Y"}``;
    #: a value that does not match is set aside as ``bad_type:<col>`` (never guessed). A format
    #: without a time directive reads calendar days in UTC; one with ``%z`` reads offsets
    formats: dict[str, str] = Field(default_factory=dict)
    #: how non-ISO numeric dates ``D/M/YYYY`` or ``M/D/YYYY`` (``/``, ``.`` or ``-``, a time may
    #: follow) of this table's timestamp columns are read: ``true`` day first, ``false`` month
    #: first, ``null`` (default) refused: only ISO 8601 and ``YYYYMMDD``
    dayfirst: bool | None = None

    @field_validator("formats")
    @classmethod
    def _date_formats(cls, v: dict[str, str]) -> dict[str, str]:
        for col, fmt in v.items():
            check_date_format(fmt, f"formats.{col}")
        return v

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, v: str) -> str:
        import codecs

        try:
            codecs.lookup(v)
        except LookupError as exc:
            raise ValueError(f"unknown encoding {v!r}") from exc
        return v


class QuarantineConfig(_Block):
    """Where rows set aside at ingestion are written, with their reason."""

    folder: Path = Path("data/quarantine")


class DataConfig(_Block):
    """Input data: the CRM store (any SQLAlchemy URL) or a folder of CSV/Parquet files."""

    source: Literal["crm", "folder"] = "crm"
    crm_url: str = "sqlite:///data/crm.sqlite"
    db_schema: str | None = None
    folder: Path = Path("data/crm")
    file_format: Literal["auto", "csv", "parquet"] = "auto"
    source_timezone: str | None = None
    required_tables: tuple[TableName, ...] = ("customers", "transactions")
    tables: dict[TableName, TableConfig] = Field(default_factory=dict)
    quarantine: QuarantineConfig = Field(default_factory=QuarantineConfig)

    @field_validator("crm_url")
    @classmethod
    def _no_secret_in_params(cls, v: str) -> str:
        if url_has_secret(v):
            raise ValueError(
                f"the URL carries a password; put credentials in the environment variable {CRM_URL_ENV} "
                "instead of params.yaml"
            )
        return v

    @field_validator("db_schema")
    @classmethod
    def _schema_identifier(cls, v: str | None) -> str | None:
        return None if v is None else validate_identifier(v, "data.db_schema")

    @field_validator("source_timezone")
    @classmethod
    def _known_timezone(cls, v: str | None) -> str | None:
        if v is None:
            return v
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {v!r}") from exc
        return v

    @model_validator(mode="after")
    def _table_names_are_identifiers(self) -> DataConfig:
        for table, tc in self.tables.items():
            if tc.name is not None:
                validate_identifier(tc.name, f"data.tables.{table}.name")
        return self

    def table_name(self, table: str) -> str:
        """Source name of canonical ``table`` (validated identifier)."""
        tc = self.tables.get(table)  # type: ignore[call-overload]
        return tc.name if tc is not None and tc.name else table

    def column_map(self, table: str) -> dict[str, str]:
        """Mapping canonical column → source column for ``table``."""
        tc = self.tables.get(table)  # type: ignore[call-overload]
        return dict(tc.columns) if tc is not None else {}

    def resolved_crm_url(self) -> str:
        """The CRM URL, ``CRMSCORE_CRM_URL`` taking precedence over ``params.yaml``."""
        return os.environ.get(CRM_URL_ENV) or self.crm_url


class GenerateConfig(_Block):
    """Synthetic CRM generator (``crmscore generate``)."""

    customers: int = Field(10_000, gt=0)
    seed: int = 42
    start: date = date(2023, 1, 1)
    end: date = date(2025, 12, 31)
    leads_per_customer: float = Field(3.0, ge=0)


class FeaturesConfig(_Block):
    """Point-in-time features (``crmscore.features``)."""

    as_of: date | None = None
    period: Literal["D", "W"] = "D"
    time_unit: Literal["day", "week"] = "week"
    windows_days: tuple[int, ...] = (30, 90, 180, 365)
    trend_window_days: int = Field(90, gt=0)
    rfm_bins: int = Field(5, ge=2, le=10)
    cutoffs: int = Field(3, ge=1)
    cutoff_step_days: int = Field(90, gt=0)
    #: refunds (amount < 0) are not purchases ("exclude") or count as lifetimes does ("include")
    refunds: Literal["exclude", "include"] = "exclude"
    lead_recent_days: tuple[int, ...] = (7, 30)
    #: PII guard: a text attribute whose name or values look like an email, phone or person
    #: name, or whose values are near-unique, is not a feature (noted in the validation report;
    #: opt a column back in with ``data.tables.<table>.roles: {column: feature}``)
    pii_guard: bool = True
    #: near-unique: distinct values / non-missing values at or above this share (text columns)
    near_unique_ratio: float = Field(0.9, gt=0, le=1)


class _ClassifierBlock(_Block):
    """Model keys shared by ``churn`` and ``leads`` (crmscore.estimators; see docs/models.md)."""

    #: LightGBM parameters
    n_estimators: int = Field(200, gt=0)
    learning_rate: float = Field(0.05, gt=0)
    num_leaves: int = Field(31, ge=2)
    min_child_samples: int = Field(20, ge=1)
    subsample: float = Field(1.0, gt=0, le=1)
    colsample_bytree: float = Field(1.0, gt=0, le=1)
    reg_lambda: float = Field(0.0, ge=0)
    n_jobs: int = 2
    random_state: int = 0
    #: feature columns never given to the model
    exclude_features: tuple[str, ...] = ()
    #: probability calibration, fitted on the latest training cutoff (never the training rows)
    calibration: Literal["sigmoid", "isotonic"] = "sigmoid"
    #: snapshot data without dates: stratified shares set aside for calibration / evaluation
    calibration_fraction: float = Field(0.3, gt=0, lt=1)
    holdout_fraction: float = Field(0.25, gt=0, lt=1)
    #: gates (ModelGateError): minimum training rows and positives (and negatives)
    min_rows: int = Field(1000, ge=1)
    min_positives: int = Field(100, ge=1)
    min_calibration_positives: int = Field(20, ge=1)
    #: leakage canaries: a single feature's AUC, or the evaluation AUC, above these fails
    max_single_feature_auc: float = Field(0.98, gt=0.5, le=1)
    #: fit LightGBM on a seeded, label-stratified sample of at most N training rows (None: all);
    #: calibration and evaluation always use every row
    max_train_rows: int | None = Field(300_000, ge=1000)
    max_eval_auc: float = Field(0.98, gt=0.5, le=1)
    #: reasons: top N positive and N negative contributions per explained row
    n_reasons: int = Field(5, ge=1)
    #: also explain the top N rows by probability
    explain_top_n: int | None = Field(None, ge=1)


class ChurnConfig(_ClassifierBlock):
    """Churn labels and model."""

    definition: Literal["contractual", "inactivity", "label"] = "inactivity"
    horizon_days: int = Field(90, gt=0)
    label_column: str = "churn"
    #: inactivity churn: only customers with a purchase in the last N days are eligible (None: any)
    activity_lookback_days: int | None = Field(None, gt=0)
    #: rfm_score duplicates r/f/m_score
    exclude_features: tuple[str, ...] = ("rfm_score",)
    #: churn_risk bands from the calibrated probability: high >= high, medium >= medium
    risk_thresholds: dict[Literal["high", "medium"], float] = Field(
        default_factory=lambda: {"high": 0.5, "medium": 0.25}
    )
    #: reasons also for every customer in these risk bands (and the top N by probability when
    #: set), beyond the top scoring.explain_top_n by value at risk: whole bands cost ~1 ms a row
    explain_bands: tuple[Literal["high", "medium", "low"], ...] = ()


class LeadsConfig(_ClassifierBlock):
    """Lead labels and scoring model."""

    conversion_window_days: int = Field(90, gt=0)
    label_column: str | None = None
    #: also train on open leads whose conversion window had already passed at the cutoff
    include_stale: bool = False
    grade_thresholds: dict[Literal["A", "B", "C"], float] = Field(
        default_factory=lambda: {"A": 75.0, "B": 50.0, "C": 25.0}
    )
    #: Einstein-style minimum (it asks for >= 1,000 leads with >= 120 conversions)
    min_positives: int = Field(120, ge=1)
    #: reasons only for leads of these grades (and the top N by score when set)
    explain_grades: tuple[Literal["A", "B", "C", "D"], ...] = ("A", "B")


class ClvConfig(_Block):
    """Lifetime value: transactional (BG/NBD + Gamma-Gamma) or contractual (sBG).

    ``kind`` chooses the model of a CRM: ``transactional`` (kind ``clv``, needs transactions),
    ``contractual`` (kind ``clv_contractual``: sBG on customer tenures x recurring revenue) or
    ``auto``: contractual when the CRM has no transactions table (or an empty one), its
    customers have ``revenue_column`` and a tenure (``tenure_column`` or ``created_at``);
    transactional otherwise (docs/models.md).
    """

    kind: Literal["auto", "transactional", "contractual"] = "auto"
    penalizer: float = Field(0.0, ge=0)
    horizon_months: int = Field(12, gt=0)
    discount_rate_annual: float = Field(0.10, ge=0)
    interval: float = Field(0.9, gt=0, lt=1)
    n_bootstrap: int = Field(200, ge=10)
    #: contractual: customers column of whole periods (months) with the company; None: months
    #: from ``created_at`` to ``churned_at`` (churned) or ``as_of`` (active)
    tenure_column: str | None = None
    #: contractual: customers column of the recurring revenue per period (e.g. monthly charges)
    revenue_column: str | None = None
    #: contractual: optional customers column of the segment (contract type, plan): one sBG each
    segment_column: str | None = None
    #: contractual: the period of tenure and revenue
    period: Literal["month"] = "month"
    #: contractual: share of customers held out (seeded random split) to evaluate the fit
    holdout_share: float = Field(0.2, gt=0, lt=1)


class InputChecksConfig(_Block):
    """Thresholds of the scoring inputs' checks against a model's training data."""

    unseen_warn: float = Field(0.05, ge=0, le=1)
    unseen_refuse: float = Field(0.5, ge=0, le=1)
    missing_warn: float = Field(0.15, ge=0, le=1)
    missing_refuse: float = Field(0.5, ge=0, le=1)

    @model_validator(mode="after")
    def _ordered(self) -> InputChecksConfig:
        if self.unseen_warn > self.unseen_refuse or self.missing_warn > self.missing_refuse:
            raise ValueError("each *_warn threshold must be at most its *_refuse threshold")
        return self


class ScoringConfig(_Block):
    """Batch scoring outputs (``crmscore score``): tables, checks, trend, health score, worklist.

    See docs/scoring.md for the formulas (health score, trend, cold start) and the write-back
    transaction.
    """

    #: output tables in the CRM store (validated identifiers, always quoted)
    customer_scores_table: str = "customer_scores"
    customer_history_table: str = "customer_score_history"
    lead_scores_table: str = "lead_scores"
    lead_history_table: str = "lead_score_history"
    #: refuse a score set with fewer rows than this share of the previous run's rows
    min_rows_ratio: float = Field(0.5, ge=0, le=1)
    #: trend: change of churn probability vs the previous run beyond ± this is improving/declining
    trend_threshold: float = Field(0.05, gt=0, lt=1)
    #: cold start: tenure below N days, or fewer than M purchases (2 = no repeat purchase yet)
    cold_start_min_tenure_days: int = Field(90, ge=0)
    cold_start_min_purchases: int = Field(2, ge=0)
    #: health score 0-100: weights of its components (renormalised over those available per row)
    health_weights: dict[Literal["retention", "alive", "engagement", "support"], float] = Field(
        default_factory=lambda: {"retention": 0.4, "alive": 0.2, "engagement": 0.25, "support": 0.15}
    )
    #: engagement: recency decays with this half-life (days since the last purchase)
    engagement_half_life_days: float = Field(60.0, gt=0)
    #: support: CSAT scale (lowest, highest)
    csat_scale: tuple[float, float] = (1.0, 5.0)
    #: customer-success worklist: number of accounts (ranked by value at risk), bands included
    worklist_top_n: int = Field(200, ge=1)
    worklist_bands: tuple[Literal["high", "medium", "low"], ...] = ("high", "medium")
    #: churn reasons for the top N customers by value at risk (>= worklist_top_n: the worklist is
    #: always explained), plus churn.explain_bands / churn.explain_top_n; others get NULL reasons
    explain_top_n: int = Field(10_000, ge=1)
    #: rows per executemany batch (SQLite and other non-PostgreSQL stores)
    chunksize: int = Field(100_000, ge=1)
    #: input volume guard: refuse to write when an input count (rows per table, customers with
    #: a purchase in the last year, open leads) fell by more than this share since the run of
    #: the nearest earlier as_of (``crmscore score --force`` overrides, logged)
    max_input_drop: float = Field(0.5, ge=0, le=1)
    #: run log: one row per scoring run (inputs counted, model versions, settings digest)
    runs_table: str = "score_runs"
    #: customers (leads) absent from the newest run: "mark" keeps their latest row and sets its
    #: absent_since (the as_of of the first run without them); "delete" removes it from the
    #: latest table (the history keeps it)
    absent_rows: Literal["mark", "delete"] = "mark"
    #: data.source: folder: the folder score store (Parquet files; crmscore.io.score_files);
    #: None: ``<data.folder>/scores``
    scores_folder: Path | None = None
    #: wait at most this long for another run's write lock (then fail, naming the holder)
    lock_timeout_s: float = Field(600.0, gt=0)
    #: PostgreSQL idle_in_transaction_session_timeout of the writer's session
    idle_in_transaction_timeout_s: float = Field(600.0, gt=0)
    #: inputs checked against each model's training data: share of unseen category levels and
    #: rise of the share of missing values per feature; warn above the first, refuse above the
    #: second (``--force`` overrides, logged)
    input_checks: InputChecksConfig = Field(default_factory=lambda: InputChecksConfig())

    @model_validator(mode="after")
    def _check(self) -> ScoringConfig:
        keys = (
            "customer_scores_table",
            "customer_history_table",
            "lead_scores_table",
            "lead_history_table",
            "runs_table",
        )
        names = [validate_identifier(getattr(self, k), f"scoring.{k}") for k in keys]
        if len(set(names)) != len(names):
            raise ValueError("the score tables (and scoring.runs_table) need distinct names")
        if any(w < 0 for w in self.health_weights.values()) or sum(self.health_weights.values()) <= 0:
            raise ValueError("health_weights must be >= 0 with a positive sum")
        if not self.csat_scale[0] < self.csat_scale[1]:
            raise ValueError("csat_scale must be (lowest, highest) with lowest < highest")
        if self.explain_top_n < self.worklist_top_n:
            raise ValueError(
                f"explain_top_n ({self.explain_top_n}) must be at least worklist_top_n "
                f"({self.worklist_top_n}) so that every worklist account has its reasons: raise "
                "scoring.explain_top_n or lower scoring.worklist_top_n"
            )
        return self


class ClassifierGate(_Block):
    """Absolute floors a churn or lead model must meet to become ``champion``."""

    #: the primary metric (ROC AUC on the latest evaluation window) must reach this
    min_roc_auc: float = Field(0.6, ge=0, le=1)
    #: expected calibration error must not exceed this (None: not checked)
    max_ece: float | None = Field(0.1, gt=0)


class ClvGate(_Block):
    """Absolute floors the CLV model must meet to become ``champion``."""

    #: holdout MAE of per-customer repeat purchases must not exceed this (None: not checked)
    max_holdout_mae: float | None = Field(None, gt=0)
    #: |aggregate holdout purchases error| in percent must not exceed this (None: not checked)
    max_abs_aggregate_error_pct: float | None = Field(25.0, gt=0)


class ClvContractualGate(_Block):
    """Absolute floors the contractual CLV model (sBG) must meet to become ``champion``."""

    #: held-out NLL gain over the constant-churn geometric baseline must be at least this
    #: (per customer; None: not checked; the NLL must always be finite)
    min_gain_vs_geometric: float | None = None


class PromotionConfig(_Block):
    """Metric gate that moves the ``champion`` alias to a new version.

    A new version (alias ``challenger``) becomes ``champion`` only if every absolute floor is
    met and its primary metric on the latest evaluation window is not worse than
    ``min_relative_to_champion`` of the champion's on the same window (ROC AUC: higher is
    better, ``new >= ratio * champion``; CLV holdout MAE: lower is better,
    ``new <= champion / ratio``). Without a champion the floors decide.
    """

    min_relative_to_champion: float = Field(0.95, gt=0, le=1)
    churn: ClassifierGate = Field(default_factory=ClassifierGate)
    leads: ClassifierGate = Field(default_factory=ClassifierGate)
    clv: ClvGate = Field(default_factory=ClvGate)
    clv_contractual: ClvContractualGate = Field(default_factory=ClvContractualGate)


ModelKind = Literal["churn", "leads", "clv", "clv_contractual"]


class TrainingConfig(_Block):
    """``crmscore train``: cutoffs, the models to train and the promotion rule."""

    #: training cutoff day; required here or as ``--as-of`` (crmscore never assumes "now")
    as_of: date | None = None
    models: tuple[ModelKind, ...] = ("churn", "leads", "clv", "clv_contractual")
    #: kinds whose absence or failure fails the job (exit 1); the others are optional: a kind
    #: the data cannot support is skipped, one failing a gate is failed, and the job succeeds
    #: when at least one kind trained
    required: tuple[ModelKind, ...] = ()
    #: CLV evaluation: the model is fitted on the data known ``clv_holdout_days`` before
    #: ``as_of`` and its purchase forecasts are checked on the days up to ``as_of``
    clv_holdout_days: int = Field(180, gt=0)
    #: log ROC/PR/calibration/gains and CLV diagnostic plots as PNG artefacts
    log_plots: bool = True
    promotion: PromotionConfig = Field(default_factory=PromotionConfig)


class RegisteredNames(_Block):
    """Registered model name of each model in the MLflow registry."""

    churn: str = "crmscore-churn"
    leads: str = "crmscore-leads"
    clv: str = "crmscore-clv"
    clv_contractual: str = "crmscore-clv-contractual"


class TrackingConfig(_Block):
    """MLflow tracking and registry (used only by ``crmscore.tracking``).

    ``MLFLOW_TRACKING_URI`` in the environment wins over ``tracking_uri``; credentials of a
    tracking server go in the environment (``MLFLOW_TRACKING_USERNAME``/``PASSWORD`` or the
    URI in ``MLFLOW_TRACKING_URI``), never here.
    """

    #: embedded default: SQLite file under the project (MLflow 3's registry needs a DB store)
    tracking_uri: str = "sqlite:///mlruns/mlflow.db"
    #: registry URI (None: the tracking URI)
    registry_uri: str | None = None
    #: artefact root of a new experiment on a local store (ignored when the server decides)
    artifact_location: Path = Path("mlruns/artifacts")
    experiment: str = "crmscore"
    registered_names: RegisteredNames = Field(default_factory=RegisteredNames)
    #: where ``crmscore export`` writes the champion models
    export_dir: Path = Path("models")

    @field_validator("tracking_uri", "registry_uri")
    @classmethod
    def _no_secret(cls, v: str | None) -> str | None:
        if v is not None and url_has_secret(v):
            raise ValueError("the URI carries a password; set MLFLOW_TRACKING_URI in the environment instead")
        return v


class ReportConfig(_Block):
    """KPI and model report (``crmscore.reporting.kpis``, ``crmscore.reporting.content``).

    A customer is *active* at an instant ``t`` when created before ``t`` and not churned:
    ``customer_definition="contractual"``: ``churned_at`` missing or ``>= t``;
    ``"activity"`` (non-contractual businesses): additionally a purchase in the
    ``activity_window_days`` days before ``t`` (and not contractually churned before ``t``).
    """

    #: KPI period: calendar months or quarters (UTC)
    period: Literal["month", "quarter"] = "month"
    #: number of complete periods shown in the trends (ending with the last one by as_of)
    n_periods: int = Field(12, ge=2, le=120)
    customer_definition: Literal["activity", "contractual"] = "activity"
    activity_window_days: int = Field(180, gt=0)
    #: a lead is qualified when every listed attribute takes one of the listed values ({}: all leads)
    qualified_lead: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    #: lead conversion rate: converted within N days of creation (cohorts of the period)
    lead_conversion_window_days: int = Field(90, gt=0)
    #: share of customers in the "top customers" revenue concentration KPI
    top_customer_fraction: float = Field(0.2, gt=0, lt=1)
    #: accounts listed in the at-risk table
    top_n: int = Field(25, ge=1, le=1000)
    currency: str = "EUR"
    title: str = "Customer KPIs and model report"
    html_path: Path = Path("reports/report.html")
    json_path: Path = Path("reports/report.json")
    #: standalone model section (no model_summary given): CLV holdout length and quick churn model size
    clv_holdout_days: int = Field(180, gt=0)
    quick_n_estimators: int = Field(100, gt=0)
    quick_cutoffs: int = Field(3, ge=2)


class OpenBlock(_Block):
    """A stage block whose keys arrive with a later issue; any mapping is accepted for now."""

    model_config = ConfigDict(extra="allow", frozen=True)


class Config(_Block):
    """The whole of ``params.yaml``."""

    data: DataConfig = Field(default_factory=DataConfig)
    generate: GenerateConfig = Field(default_factory=GenerateConfig)
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)
    churn: ChurnConfig = Field(default_factory=ChurnConfig)
    leads: LeadsConfig = Field(default_factory=LeadsConfig)
    clv: ClvConfig = Field(default_factory=ClvConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    scoring: ScoringConfig = Field(default_factory=ScoringConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)

    @property
    def clv_contractual(self) -> ClvConfig:
        """The contractual CLV kind's config block: the ``clv`` block (``clv.kind`` and the
        contractual inputs)."""
        return self.clv

    @model_validator(mode="after")
    def _check_across_blocks(self) -> Config:
        if self.report.top_n > self.scoring.explain_top_n:
            raise ValueError(
                f"report.top_n ({self.report.top_n}) must not exceed scoring.explain_top_n "
                f"({self.scoring.explain_top_n}): the report's at-risk accounts are the top ones by "
                "value at risk and each needs its reasons"
            )
        return self


def _format_errors(exc: ValidationError, source: str) -> str:
    lines = [f"invalid configuration in {source}:"]
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        lines.append(f"  {key}: {msg}")
    return "\n".join(lines)


def config_from_mapping(raw: Mapping[str, Any] | None, source: str = "<mapping>") -> Config:
    """Build a :class:`Config` from a parsed mapping, raising :class:`ConfigError` naming bad keys."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{source}: the top level must be a mapping of stage blocks")
    try:
        return Config.model_validate(dict(raw))
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, source)) from None


def load_config(path: str | Path | None = "params.yaml") -> Config:
    """Load and validate ``params.yaml``.

    Parameters
    ----------
    path : str or Path or None
        The YAML file. ``None`` gives the defaults. A missing default ``params.yaml`` also
        gives the defaults; a missing file named explicitly is an error.

    Returns
    -------
    Config
        Frozen, validated configuration.

    Raises
    ------
    ConfigError
        The file is missing, is not YAML, or has an unknown key or a bad value.
    """
    if path is None:
        return Config()
    p = Path(path)
    if not p.exists():
        if str(path) == "params.yaml":
            return Config()
        raise ConfigError(f"params file not found: {p}")
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from None
    return config_from_mapping(raw, str(p))
