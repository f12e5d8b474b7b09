"""Behaviour features of customers at a cutoff, for churn models.

Every feature is a function of the rows known at ``as_of`` only (``crmscore.core.time``):
transactions with ``ts < cutoff_end``, tickets opened before it, customers created before it.
Values only known later are treated as unknown at the cutoff:

* a ticket closed on or after ``cutoff_end`` is *open* at the cutoff, and its resolution time
  and CSAT (recorded at closing) are not used;
* ``churned_at`` and label columns are never features;
* timestamp attribute columns of ``customers`` are dropped (when they became known is unknown).

Attribute columns of ``customers`` are snapshot values: they are used as given (numeric as
float64, text as a ``category`` whose categories are the sorted values of the customers known
at the cutoff), so keep attributes that are only set after the outcome out of the table. Only
columns whose role is ``feature`` are used (:mod:`crmscore.ingest.roles`: identifiers, the
account's owner or rep, personal data and free text never are).

Transactions with ``amount < 0`` are refunds: they feed ``n_refunds`` and ``refund_amount`` and
are not purchases (``crmscore.features.btyd.purchase_mask``). Time features are whole UTC days:
a purchase on the cutoff day has ``recency_days`` 0.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from crmscore.core.ids import categorical_from_text, id_index, isin, sorted_unique, text_codes
from crmscore.core.time import DateLike, as_of_day_number, cutoff_end, day_index
from crmscore.features.btyd import RefundRule, purchase_mask
from crmscore.ingest.roles import decide_roles, non_features

__all__ = [
    "CUSTOMER_NON_FEATURES",
    "attribute_features",
    "behaviour_features",
    "known_customer_ids",
    "ticket_features",
    "transaction_features",
]

logger = logging.getLogger(__name__)


#: Columns of ``customers`` that are never features (ids, dates and the contractual churn label).
CUSTOMER_NON_FEATURES: frozenset[str] = frozenset({"customer_id", "created_at", "churned_at"})


def _known(ts: pd.Series, end: pd.Timestamp) -> np.ndarray:
    return (ts < end).to_numpy(dtype=bool, na_value=False, copy=True)


def known_customer_ids(
    customers: pd.DataFrame | None, transactions: pd.DataFrame | None, as_of: DateLike
) -> pd.Index:
    """Customers known at ``as_of``, sorted.

    A customer is known when ``created_at < cutoff_end(as_of)``; a customer without a
    ``created_at`` (missing column or value) is known once a transaction of theirs is known,
    or always when the CRM has no transactions table at all (a snapshot export: the table is
    the customer base as it stands). Without a ``customers`` table, the customers with a
    known transaction are known.

    Returns
    -------
    pandas.Index
        Sorted unique ``customer_id`` values, named ``customer_id``.
    """
    end = cutoff_end(as_of)
    with_tx = pd.Index([], dtype="str")
    if transactions is not None and len(transactions):
        with_tx = pd.Index(transactions["customer_id"][_known(transactions["ts"], end)].dropna().unique())
    if customers is None:
        ids = with_tx
    else:
        cid = customers["customer_id"]
        if "created_at" in customers:
            created = customers["created_at"]
            by_date = _known(created, end)
            undated = created.isna().to_numpy(dtype=bool, copy=True)
        else:
            by_date = np.zeros(len(customers), dtype=bool)
            undated = np.ones(len(customers), dtype=bool)
        if transactions is not None:
            undated &= isin(cid, with_tx)
        ids = pd.Index(cid[by_date | undated].dropna().unique())
    return id_index(ids, "customer_id", sort=True)


def _positions(values: pd.Series, ids: pd.Index) -> np.ndarray:
    return ids.get_indexer(values)


@dataclass(frozen=True, eq=False)
class _TransactionRows:
    """Transactions known at a cutoff, of customers in ``ids``, with a valid amount.

    Attributes
    ----------
    n : int
        Number of customers (``len(ids)``).
    ok : ndarray of bool
        Mask of these rows in the transactions table.
    pos : ndarray of int
        Position of each row's customer in ``ids``.
    amt : ndarray of float64
        Amount of each row.
    age : ndarray of int
        Whole days from the row's day to the cutoff day (0 on the cutoff day).
    purchase : ndarray of bool
        Rows that count as purchases (:func:`crmscore.features.btyd.purchase_mask`).
    """

    n: int
    ok: np.ndarray
    pos: np.ndarray
    amt: np.ndarray
    age: np.ndarray
    purchase: np.ndarray

    def count(self, sel: np.ndarray) -> np.ndarray:
        """Number of selected rows per customer, float64."""
        return np.bincount(self.pos[sel], minlength=self.n).astype(np.float64)

    def total(self, sel: np.ndarray) -> np.ndarray:
        """Sum of the amounts of the selected rows per customer."""
        return np.bincount(self.pos[sel], weights=self.amt[sel], minlength=self.n)


def _transaction_rows(
    transactions: pd.DataFrame, ids: pd.Index, as_of: DateLike, refunds: RefundRule
) -> _TransactionRows:
    """The rows of ``transactions`` that :func:`transaction_features` uses at ``as_of``.

    Parameters
    ----------
    transactions : DataFrame
        Canonical transactions. Not modified.
    ids : Index
        Customers to describe.
    as_of : date-like
        Cutoff day.
    refunds : {"exclude", "include"}
        Whether refunds count as purchases.

    Returns
    -------
    _TransactionRows
        Rows with ``ts < cutoff_end(as_of)``, a non-missing amount and a customer in ``ids``.
    """
    end = cutoff_end(as_of)
    today = as_of_day_number(as_of)
    ok = _known(transactions["ts"], end)
    ok &= transactions["amount"].notna().to_numpy(dtype=bool, copy=True)
    pos_all = _positions(transactions["customer_id"], ids)
    ok &= pos_all >= 0
    return _TransactionRows(
        n=len(ids),
        ok=ok,
        pos=pos_all[ok],
        amt=transactions["amount"].to_numpy(dtype=np.float64, na_value=np.nan)[ok],
        age=today - day_index(transactions["ts"][ok]),
        purchase=purchase_mask(transactions, refunds)[ok],
    )


def transaction_features(
    transactions: pd.DataFrame,
    ids: pd.Index,
    as_of: DateLike,
    *,
    windows_days: Sequence[int] = (30, 90, 180, 365),
    trend_window_days: int = 90,
    refunds: RefundRule = "exclude",
) -> pd.DataFrame:
    """Purchase, spend, trend, gap, refund and product features per customer in ``ids``.

    Parameters
    ----------
    transactions : DataFrame
        Canonical transactions; rows not known at ``as_of`` or of customers outside ``ids``
        are ignored. Not modified.
    ids : Index
        Customers to describe (see :func:`known_customer_ids`).
    as_of : date-like
        Cutoff day.
    windows_days : sequence of int
        Look-back windows: ``n_purchases_{w}d`` and ``spend_{w}d`` count the purchases of the
        last ``w`` days including the cutoff day.
    trend_window_days : int
        ``t``: ``purchase_trend`` and ``spend_trend`` compare the last ``t`` days with the ``t``
        days before, as ``(recent − prior) / (recent + prior)`` in [−1, 1] (NaN when both are
        0); ``spend_change`` is ``recent − prior`` spend (expansion > 0, contraction < 0).
    refunds : {"exclude", "include"}
        Whether refunds count as purchases (default: no).

    Returns
    -------
    DataFrame
        Index ``ids``; float64 columns. Customers without a purchase have NaN recency, gap and
        average-order features and 0 counts.
    """
    rows = _transaction_rows(transactions, ids, as_of, refunds)
    out = _spend_features(rows, windows_days)
    out.update(_trend_features(rows, trend_window_days))
    out.update(_gap_features(rows))
    refund = rows.amt < 0
    out["n_refunds"] = rows.count(refund)
    out["refund_amount"] = -rows.total(refund)
    if "product" in transactions:
        out["n_products"] = _product_counts(transactions["product"], rows)
    else:
        logger.info("transactions have no 'product' column: product breadth feature absent")
    return pd.DataFrame(out, index=ids)


def _spend_features(rows: _TransactionRows, windows_days: Sequence[int]) -> dict[str, np.ndarray]:
    """Purchase counts and spend, overall and per look-back window, and average order value.

    Parameters
    ----------
    rows : _TransactionRows
        Known transactions.
    windows_days : sequence of int
        Look-back windows in days (including the cutoff day).

    Returns
    -------
    dict
        ``n_purchases``, ``spend_total``, ``avg_order_value``, then ``n_purchases_{w}d`` and
        ``spend_{w}d`` per window.
    """
    out: dict[str, np.ndarray] = {}
    purchase = rows.purchase
    out["n_purchases"] = rows.count(purchase)
    out["spend_total"] = rows.total(purchase)
    with np.errstate(invalid="ignore", divide="ignore"):
        n_p = out["n_purchases"]
        out["avg_order_value"] = np.where(n_p > 0, out["spend_total"] / n_p, np.nan)
    for w in windows_days:
        sel = purchase & (rows.age < w)
        out[f"n_purchases_{w}d"] = rows.count(sel)
        out[f"spend_{w}d"] = rows.total(sel)
    return out


def _trend_features(rows: _TransactionRows, t: int) -> dict[str, np.ndarray]:
    """Purchases and spend of the last ``t`` days against the ``t`` days before.

    Parameters
    ----------
    rows : _TransactionRows
        Known transactions.
    t : int
        Trend window in days.

    Returns
    -------
    dict
        ``purchase_trend``, ``spend_change`` and ``spend_trend`` (see :func:`transaction_features`).
    """
    purchase, age = rows.purchase, rows.age
    recent = purchase & (age < t)
    prior = purchase & (age >= t) & (age < 2 * t)
    nr, npr = rows.count(recent), rows.count(prior)
    sr, sp = rows.total(recent), rows.total(prior)
    out: dict[str, np.ndarray] = {}
    with np.errstate(invalid="ignore", divide="ignore"):
        out["purchase_trend"] = np.where(nr + npr > 0, (nr - npr) / (nr + npr), np.nan)
        out["spend_change"] = sr - sp
        denom = np.abs(sr) + np.abs(sp)
        out["spend_trend"] = np.where(denom > 0, (sr - sp) / denom, np.nan)
    return out


def _gap_features(rows: _TransactionRows) -> dict[str, np.ndarray]:
    """Recency, days since the first purchase and inter-purchase gaps over distinct purchase days.

    Parameters
    ----------
    rows : _TransactionRows
        Known transactions.

    Returns
    -------
    dict
        ``recency_days``, ``days_since_first_purchase``, ``gap_mean_days``, ``gap_std_days``,
        ``gap_max_days`` and ``overdue_ratio`` (recency over mean gap); NaN for customers
        without a purchase (gaps: without two purchase days).
    """
    n = rows.n
    recency = np.full(n, np.nan)
    since_first = np.full(n, np.nan)
    gap_mean = np.full(n, np.nan)
    gap_std = np.full(n, np.nan)
    gap_max = np.full(n, np.nan)
    if rows.purchase.any():
        k_pos, k_age, first_row = _distinct_purchase_days(rows.pos[rows.purchase], rows.age[rows.purchase])
        starts = np.flatnonzero(first_row)
        ends = np.append(starts[1:], len(k_pos)) - 1
        cust = k_pos[starts]
        recency[cust] = k_age[starts]
        since_first[cust] = k_age[ends]
        same = ~first_row[1:]
        gaps = (k_age[1:] - k_age[:-1])[same].astype(np.float64)
        g_pos = k_pos[1:][same]
        n_g = np.bincount(g_pos, minlength=n)
        s_g = np.bincount(g_pos, weights=gaps, minlength=n)
        s2_g = np.bincount(g_pos, weights=gaps * gaps, minlength=n)
        has = n_g > 0
        gap_mean[has] = s_g[has] / n_g[has]
        gap_std[has] = np.sqrt(np.maximum(s2_g[has] / n_g[has] - gap_mean[has] ** 2, 0.0))
        mx = np.zeros(n)
        np.maximum.at(mx, g_pos, gaps)
        gap_max[has] = mx[has]
    out = {
        "recency_days": recency,
        "days_since_first_purchase": since_first,
        "gap_mean_days": gap_mean,
        "gap_std_days": gap_std,
        "gap_max_days": gap_max,
    }
    with np.errstate(invalid="ignore", divide="ignore"):
        out["overdue_ratio"] = np.where(gap_mean > 0, recency / gap_mean, np.nan)
    return out


def _distinct_purchase_days(
    p_pos: np.ndarray, p_age: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct ``(customer, day)`` pairs of the purchases, sorted by customer then age (one sort).

    Parameters
    ----------
    p_pos, p_age : ndarray of int
        Customer position and age in days of each purchase (at least one).

    Returns
    -------
    k_pos, k_age : ndarray of int
        Customer and age of each distinct pair, by customer and then ascending age (so the
        first row of a customer is their most recent purchase day).
    first_row : ndarray of bool
        Whether the pair is the first of its customer.
    """
    span = int(p_age.max()) + 1
    key = sorted_unique(p_pos.astype(np.int64) * span + p_age)  # sorted, distinct (customer, day)
    k_pos, k_age = key // span, key % span
    first_row = np.ones(len(key), dtype=bool)
    first_row[1:] = k_pos[1:] != k_pos[:-1]
    return k_pos, k_age, first_row


def _product_counts(product: pd.Series, rows: _TransactionRows) -> np.ndarray:
    """Number of distinct products bought per customer (missing products not counted).

    Parameters
    ----------
    product : Series
        The ``product`` column of the whole transactions table.
    rows : _TransactionRows
        Known transactions.

    Returns
    -------
    ndarray of float64
        Distinct purchased products per customer.
    """
    prod = product[rows.ok]
    sel = rows.purchase & prod.notna().to_numpy(dtype=bool, copy=True)
    codes, _ = pd.factorize(prod[sel])
    width = int(codes.max(initial=0)) + 1
    pairs = sorted_unique(rows.pos[sel].astype(np.int64) * width + codes)
    return np.bincount(pairs // width, minlength=rows.n).astype(np.float64)


def ticket_features(
    tickets: pd.DataFrame,
    ids: pd.Index,
    as_of: DateLike,
    *,
    windows_days: Sequence[int] = (30, 90, 180, 365),
) -> pd.DataFrame:
    """Support-ticket features per customer in ``ids`` at ``as_of``.

    ``tickets_{w}d``: tickets opened in the last ``w`` days; ``tickets_total``;
    ``tickets_open``: opened before ``cutoff_end`` and not closed before it (a ``closed_at``
    after the cutoff means still open); ``resolution_days_mean`` and ``csat_mean`` over the
    tickets closed before ``cutoff_end`` only; ``days_since_last_ticket``.

    Returns
    -------
    DataFrame
        Index ``ids``; float64 columns.
    """
    n = len(ids)
    end = cutoff_end(as_of)
    today = as_of_day_number(as_of)
    ok = _known(tickets["opened_at"], end)
    pos_all = _positions(tickets["customer_id"], ids)
    ok &= pos_all >= 0
    pos = pos_all[ok]
    opened = tickets["opened_at"][ok]
    age = today - day_index(opened)
    out: dict[str, np.ndarray] = {}
    out["tickets_total"] = np.bincount(pos, minlength=n).astype(np.float64)
    for w in windows_days:
        out[f"tickets_{w}d"] = np.bincount(pos[age < w], minlength=n).astype(np.float64)
    if "closed_at" in tickets:
        closed = tickets["closed_at"][ok]
        closed_known = _known(closed, end)
    else:
        closed = None
        closed_known = np.zeros(len(pos), dtype=bool)
    out["tickets_open"] = np.bincount(pos[~closed_known], minlength=n).astype(np.float64)
    last = np.full(n, np.inf)
    np.minimum.at(last, pos, age.astype(np.float64))
    out["days_since_last_ticket"] = np.where(np.isinf(last), np.nan, last)
    with np.errstate(invalid="ignore", divide="ignore"):
        if closed is not None:
            res = ((closed - opened) / pd.Timedelta(days=1)).to_numpy(dtype=np.float64, na_value=np.nan)
            sel = closed_known & ~np.isnan(res)
            k = np.bincount(pos[sel], minlength=n)
            s = np.bincount(pos[sel], weights=res[sel], minlength=n)
            out["resolution_days_mean"] = np.where(k > 0, s / np.maximum(k, 1), np.nan)
        if "csat" in tickets and closed is not None:
            csat = tickets["csat"].to_numpy(dtype=np.float64, na_value=np.nan)[ok]
            sel = closed_known & ~np.isnan(csat)
            k = np.bincount(pos[sel], minlength=n)
            s = np.bincount(pos[sel], weights=csat[sel], minlength=n)
            out["csat_mean"] = np.where(k > 0, s / np.maximum(k, 1), np.nan)
    return pd.DataFrame(out, index=ids)


def _as_feature(values: pd.Series, name: str) -> pd.Series | None:
    """Numeric → float64, bool → float64, text → category (sorted categories); dates → None."""
    if pd.api.types.is_datetime64_any_dtype(values) or pd.api.types.is_timedelta64_dtype(values):
        logger.info("attribute %r is a timestamp: dropped (its time of knowledge is unknown)", name)
        return None
    if pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values):
        return values.astype(np.float64)
    if isinstance(values.dtype, pd.CategoricalDtype):
        values = values.astype(object)
    codes, texts = text_codes(values)  # text of the distinct values only
    cats = sorted(set(texts.tolist()))
    return pd.Series(categorical_from_text(codes, texts, cats), index=values.index, name=name)


def attribute_features(
    customers: pd.DataFrame,
    ids: pd.Index,
    as_of: DateLike,
    *,
    exclude: Iterable[str] = (),
    roles: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Customer attributes carried through as features, plus ``tenure_days``.

    Parameters
    ----------
    customers : DataFrame
        Canonical customers (unique ``customer_id``), the whole table. Not modified.
    ids : Index
        Customers known at ``as_of``.
    as_of : date-like
        Cutoff day.
    exclude : iterable of str
        Further columns that are not features (label columns).
    roles : mapping, optional
        Column → role (:mod:`crmscore.ingest.roles`, ``CRMData.roles["customers"]``); only
        ``feature`` columns are used. ``None``: decided here on ``customers`` with the default
        rules (no declared roles, PII guard on).

    Returns
    -------
    DataFrame
        Index ``ids``. ``tenure_days`` = whole days from ``created_at`` to ``as_of`` (NaN when
        unknown); every other column whose role is ``feature`` except
        :data:`CUSTOMER_NON_FEATURES`, ``exclude`` and timestamps, numeric as float64 and text
        as ``category``.
    """
    if roles is None:
        roles = decide_roles("customers", customers).roles
    drop = CUSTOMER_NON_FEATURES | set(exclude) | non_features(roles, customers.columns)
    rows = customers.drop_duplicates("customer_id", keep="first").set_index("customer_id")
    rows = rows.reindex(ids)
    out: dict[str, pd.Series] = {}
    if "created_at" in rows:
        created = rows["created_at"]
        tenure = np.full(len(rows), np.nan)
        has = created.notna().to_numpy(dtype=bool, copy=True)
        tenure[has] = as_of_day_number(as_of) - day_index(created[has])
        out["tenure_days"] = pd.Series(tenure, index=ids)
    for col in rows.columns:
        if col in drop or col in out:
            continue
        feat = _as_feature(rows[col], col)
        if feat is not None:
            out[col] = feat
    return pd.DataFrame(out, index=ids)


def behaviour_features(
    customers: pd.DataFrame | None,
    transactions: pd.DataFrame | None,
    support_tickets: pd.DataFrame | None,
    as_of: DateLike,
    *,
    windows_days: Sequence[int] = (30, 90, 180, 365),
    trend_window_days: int = 90,
    refunds: RefundRule = "exclude",
    exclude: Iterable[str] = (),
    roles: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """All churn behaviour features for the customers known at ``as_of``.

    A missing table (``None``) means its features are absent (logged), never an error.
    ``roles`` are the feature roles of the customers' columns (see :func:`attribute_features`).

    Returns
    -------
    DataFrame
        One row per customer of :func:`known_customer_ids`, index ``customer_id`` (sorted):
        :func:`transaction_features`, :func:`ticket_features` and :func:`attribute_features`.
    """
    ids = known_customer_ids(customers, transactions, as_of)
    parts = [pd.DataFrame(index=ids)]
    if transactions is not None:
        parts.append(
            transaction_features(
                transactions,
                ids,
                as_of,
                windows_days=windows_days,
                trend_window_days=trend_window_days,
                refunds=refunds,
            )
        )
    else:
        logger.info("no transactions table: purchase features absent")
    if support_tickets is not None:
        parts.append(ticket_features(support_tickets, ids, as_of, windows_days=windows_days))
    else:
        logger.info("no support_tickets table: ticket features absent")
    if customers is not None:
        parts.append(attribute_features(customers, ids, as_of, exclude=exclude, roles=roles))
    else:
        logger.info("no customers table: attribute features absent")
    return pd.concat(parts, axis=1)
