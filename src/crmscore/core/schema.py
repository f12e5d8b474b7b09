"""Canonical table contracts of the CRM input (shared/design.md §2).

After ingestion (``crmscore.ingest.validation``) every table is a pandas DataFrame with these
canonical column names and dtypes, whatever the source called them:

* ids (``customer_id``, ``lead_id``, ``ticket_id``, ``transaction_id``): ``str``;
* timestamps: timezone-aware UTC ``datetime64`` (resolution may be ns or us);
* amounts and other numbers: ``float64``;
* categories and free text: ``str`` (missing values stay missing).

Extra columns of ``customers`` and ``leads`` are kept as attributes; each column's role
(``feature`` or not: identifiers, owners, personal data, free text) is decided once per dataset
by ``crmscore.ingest.roles`` and stored in :attr:`CRMData.roles`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pandas as pd

__all__ = [
    "SCHEMAS",
    "CRMData",
    "ColumnSpec",
    "TableSpec",
]

Kind = Literal["id", "timestamp", "number", "text", "bool"]


@dataclass(frozen=True)
class ColumnSpec:
    """One canonical column: its name, kind and whether the table needs it."""

    name: str
    kind: Kind
    required: bool = False


@dataclass(frozen=True)
class TableSpec:
    """Contract of one canonical table.

    ``key`` is the column that identifies a row (duplicates are resolved on it);
    ``parent`` names a ``(column, table)`` whose ids must exist in that table.
    ``keeps_extra`` says whether columns outside the contract are kept (attributes).
    """

    name: str
    columns: tuple[ColumnSpec, ...]
    key: str | None = None
    parent: tuple[str, str] | None = None
    keeps_extra: bool = False

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.required)

    def kind_of(self, column: str) -> Kind | None:
        for c in self.columns:
            if c.name == column:
                return c.kind
        return None

    @property
    def timestamps(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.kind == "timestamp")


def _c(name: str, kind: Kind, required: bool = False) -> ColumnSpec:
    return ColumnSpec(name, kind, required)


SCHEMAS: dict[str, TableSpec] = {
    "customers": TableSpec(
        "customers",
        (
            _c("customer_id", "id", True),
            _c("created_at", "timestamp"),
            _c("churned_at", "timestamp"),
            _c("acquisition_cost", "number"),
            _c("acquisition_channel", "text"),
            _c("owner", "text"),
        ),
        key="customer_id",
        keeps_extra=True,
    ),
    "transactions": TableSpec(
        "transactions",
        (
            _c("customer_id", "id", True),
            _c("ts", "timestamp", True),
            _c("amount", "number", True),
            _c("transaction_id", "id"),
            _c("currency", "text"),
            _c("quantity", "number"),
            _c("product", "text"),
        ),
        key="transaction_id",
        parent=("customer_id", "customers"),
    ),
    "leads": TableSpec(
        "leads",
        (
            _c("lead_id", "id", True),
            _c("created_at", "timestamp", True),
            _c("converted_at", "timestamp"),
            _c("customer_id", "id"),
        ),
        key="lead_id",
        keeps_extra=True,
    ),
    "lead_activities": TableSpec(
        "lead_activities",
        (
            _c("lead_id", "id", True),
            _c("ts", "timestamp", True),
            _c("activity", "text", True),
            _c("channel", "text"),
        ),
        parent=("lead_id", "leads"),
    ),
    "support_tickets": TableSpec(
        "support_tickets",
        (
            _c("ticket_id", "id", True),
            _c("customer_id", "id", True),
            _c("opened_at", "timestamp", True),
            _c("closed_at", "timestamp"),
            _c("priority", "text"),
            _c("csat", "number"),
        ),
        key="ticket_id",
        parent=("customer_id", "customers"),
    ),
    "marketing_spend": TableSpec(
        "marketing_spend",
        (
            _c("period", "timestamp", True),
            _c("amount", "number", True),
            _c("channel", "text"),
        ),
    ),
}

#: The timestamp that places a row in time, per table (used for the cutoff rule).
EVENT_TIME: dict[str, str] = {
    "customers": "created_at",
    "transactions": "ts",
    "leads": "created_at",
    "lead_activities": "ts",
    "support_tickets": "opened_at",
    "marketing_spend": "period",
}


@dataclass
class CRMData:
    """The validated CRM tables in canonical form; absent optional tables are ``None``."""

    customers: pd.DataFrame | None = None
    transactions: pd.DataFrame | None = None
    leads: pd.DataFrame | None = None
    lead_activities: pd.DataFrame | None = None
    support_tickets: pd.DataFrame | None = None
    marketing_spend: pd.DataFrame | None = None
    extras: dict[str, object] = field(default_factory=dict)
    #: table → column → role (``identifier``, ``ownership``, ``pii``, ``free_text``, ``feature``),
    #: decided at validation on the whole tables (``crmscore.ingest.roles``); empty when the data
    #: were not validated (the feature modules then decide on the fly)
    roles: dict[str, dict[str, str]] = field(default_factory=dict)

    def get(self, table: str) -> pd.DataFrame | None:
        """Return ``table`` or ``None`` when absent."""
        return getattr(self, table)

    @staticmethod
    def table_names() -> tuple[str, ...]:
        """Every table of the data contract, in contract order."""
        return tuple(SCHEMAS)

    def tables(self) -> dict[str, pd.DataFrame]:
        """The present tables by canonical name."""
        return {name: df for name in SCHEMAS if (df := getattr(self, name)) is not None}
