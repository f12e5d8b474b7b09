"""Propose the table and column mapping of a CRM export (``crmscore init``).

Pure functions: given each file's (or database table's) name, column names and a sample of its
rows, :func:`propose` says which canonical table (:data:`crmscore.core.schema.SCHEMAS`) each
file holds, which source column is which canonical column, the date format of each timestamp
column, the currency and the model kinds the data supports. Nothing is read or written here;
``crmscore init`` reads the samples and writes the proposal as a commented ``params.yaml``.

Rules
-----
*Names* are compared normalised: lower case, without spaces, underscores, dashes and dots
(``Customer ID``, ``customer_id`` and ``CustomerID`` are the same name). A canonical column
matches its own name first, then its synonyms in the order of :data:`COLUMN_SYNONYMS` (for
example ``InvoiceDate``, ``OrderDate``, ``date`` and ``timestamp`` for ``transactions.ts``;
``Total``, ``Amount``, ``revenue``, ``sales``, ``value`` for ``amount``). Each source column
maps to at most one canonical column. A timestamp candidate whose sample does not look like
dates, a number candidate whose sample is not numeric, and a candidate for the table's key
(``transaction_id``, ``customers.customer_id`` …) whose sample repeats a value are skipped: an
invoice number shared by the lines of one invoice is not a transaction id (validation would
set those rows aside as duplicates), and a file with repeated customer ids is not a customers
table.

*Tables.* Every file is scored against every table: 3 points per required column found,
1 per optional one, 5 when the file name is one of the table's names (:data:`TABLE_SYNONYMS`).
A file is a candidate for a table when all its required columns are found (or its name says
so: the missing columns are then reported). Tables are assigned greedily, best score first,
one file per table and one table per file; files left over are reported as not mapped.

*Dates* (:func:`detect_date_format`): ISO 8601 (``2024-03-01``, with an optional time and
offset), 8-digit ``%Y%m%d`` and ``d/m/y`` layouts with ``/``, ``.`` or ``-`` and an optional
time. Day-first versus month-first is decided by the values: a first field above 12 means
day first, a second field above 12 month first; when no value decides, day first is
proposed and the result is marked ambiguous.

*Currency* (:func:`detect_currency`): the most frequent value of a ``currency`` column, else a
currency symbol or ISO code in the amount text, else a currency word in the amount column's
name (``dollar_value``: USD); ``None`` when nothing says.

*Model kinds* (:func:`supported_models`): ``churn`` with a transactions table (inactivity),
a boolean churn label column in customers (label) or ``customers.churned_at`` (contractual);
``leads`` with a leads table that has ``converted_at`` or a conversion label column; ``clv``
with a transactions table.

*Required tables.* The customers table is optional for the rest of crmscore: without it the
customers are those with a transaction (``crmscore.features.behaviour.known_customer_ids``)
and validation notes that ``transactions.customer_id`` was not checked against a customers
table. A one-table export of (customer, date, amount) is therefore proposed with
``required_tables: [transactions]``.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import pandas as pd

from crmscore.core.schema import SCHEMAS, TableSpec

__all__ = [
    "COLUMN_SYNONYMS",
    "TABLE_SYNONYMS",
    "DateFormat",
    "FileSample",
    "Proposal",
    "TableProposal",
    "detect_currency",
    "detect_date_format",
    "match_columns",
    "normalise",
    "propose",
    "supported_models",
]

_ID = (
    "customerid",
    "customer",
    "custid",
    "clientid",
    "client",
    "accountid",
    "userid",
    "customerno",
    "customernumber",
    "customerkey",
    "buyerid",
    "memberid",
    "contactid",
)
_TX_TS = (
    "timestamp",
    "invoicedate",
    "orderdate",
    "transactiondate",
    "purchasedate",
    "saledate",
    "paymentdate",
    "date",
    "datetime",
    "time",
    "orderedat",
    "purchasedat",
    "paidat",
    "createdat",
    "created",
)

#: canonical table → canonical column → synonyms (normalised, by priority; the canonical name
#: itself always comes first)
COLUMN_SYNONYMS: dict[str, dict[str, tuple[str, ...]]] = {
    "customers": {
        "customer_id": (*_ID, "id"),
        "created_at": (
            "created",
            "createddate",
            "signupdate",
            "signup",
            "signedupat",
            "signedup",
            "joindate",
            "joined",
            "joinedat",
            "registrationdate",
            "registeredat",
            "startdate",
            "customersince",
            "since",
            "firstseen",
        ),
        "churned_at": (
            "churndate",
            "churned",
            "canceledat",
            "cancelledat",
            "cancellationdate",
            "canceldate",
            "enddate",
            "terminatedat",
            "terminationdate",
            "leftat",
        ),
        "acquisition_cost": ("cac", "acquisitioncosts", "costofacquisition"),
        "acquisition_channel": ("channel", "acquisitionsource", "source", "leadsource", "utmsource"),
        "owner": ("accountowner", "accountmanager", "csm", "salesrep", "rep", "ownerid"),
    },
    "transactions": {
        "customer_id": _ID,
        "ts": _TX_TS,
        "amount": (
            "total",
            "totalamount",
            "amountpaid",
            "revenue",
            "sales",
            "value",
            "dollarvalue",
            "ordertotal",
            "invoicetotal",
            "totalprice",
            "grandtotal",
            "netamount",
            "net",
            "sum",
            "linetotal",
            "price",
        ),
        "transaction_id": (
            "transactionid",
            "invoiceno",
            "invoice",
            "invoicenumber",
            "invoiceid",
            "orderid",
            "orderno",
            "ordernumber",
            "order",
            "txid",
            "txnid",
            "receiptid",
            "paymentid",
            "id",
        ),
        "currency": ("currencycode", "curr", "ccy", "currencyiso"),
        "quantity": ("qty", "units", "numberofcds", "numberofitems", "items", "count", "nitems"),
        "product": (
            "productname",
            "productid",
            "description",
            "item",
            "sku",
            "stockcode",
            "category",
            "productcategory",
        ),
    },
    "leads": {
        "lead_id": ("leadid", "lead", "prospectid", "prospect", "id"),
        "created_at": ("created", "createddate", "date", "timestamp", "leaddate", "submittedat"),
        "converted_at": (
            "converteddate",
            "conversiondate",
            "convertedon",
            "wonat",
            "closedwonat",
            "closedwondate",
        ),
        "customer_id": _ID,
    },
    "lead_activities": {
        "lead_id": ("leadid", "lead", "prospectid"),
        "ts": ("timestamp", "date", "activitydate", "occurredat", "datetime", "time", "createdat"),
        "activity": ("activitytype", "type", "event", "eventtype", "action", "eventname"),
        "channel": ("medium", "source"),
    },
    "support_tickets": {
        "ticket_id": ("ticketid", "ticket", "caseid", "case", "ticketno", "ticketnumber", "id"),
        "customer_id": _ID,
        "opened_at": (
            "opened",
            "openedon",
            "opendate",
            "createdat",
            "created",
            "createddate",
            "submittedat",
            "reportedat",
            "date",
        ),
        "closed_at": (
            "closed",
            "closedon",
            "closedate",
            "resolvedat",
            "resolved",
            "solvedat",
            "resolutiondate",
        ),
        "priority": ("severity", "urgency"),
        "csat": ("satisfaction", "satisfactionscore", "csatscore", "rating"),
    },
    "marketing_spend": {
        "period": ("month", "week", "date", "day", "monthstart", "periodstart"),
        "amount": ("spend", "cost", "adspend", "budget", "value", "total"),
        "channel": ("source", "medium", "campaign"),
    },
}

#: canonical table → file (or database table) names that say it (normalised)
TABLE_SYNONYMS: dict[str, tuple[str, ...]] = {
    "customers": ("customers", "customer", "clients", "client", "accounts", "account", "users", "members"),
    "transactions": (
        "transactions",
        "transaction",
        "orders",
        "order",
        "invoices",
        "invoice",
        "sales",
        "purchases",
        "payments",
        "onlineretail",
        "retail",
        "cdnow",
        "cdnowmaster",
        "cdnowsample",
    ),
    "leads": ("leads", "lead", "prospects", "prospect"),
    "lead_activities": (
        "leadactivities",
        "leadactivity",
        "activities",
        "leadevents",
        "touchpoints",
        "touches",
    ),
    "support_tickets": ("supporttickets", "tickets", "ticket", "cases", "support", "helpdesk"),
    "marketing_spend": ("marketingspend", "spend", "adspend", "marketing", "marketingcosts"),
}

#: names of a boolean churn label column in customers / a conversion label in leads (normalised)
CHURN_LABELS = (
    "churn",
    "churned",
    "ischurned",
    "churnflag",
    "haschurned",
    "exited",
    "attrition",
    "attrited",
    "cancelled",
    "canceled",
    "label",
)
CONVERSION_LABELS = ("converted", "isconverted", "won", "iswon", "conversion", "label")

_BOOL_VALUES = {"true", "false", "t", "f", "yes", "no", "y", "n", "0", "1", "0.0", "1.0"}
_SCORE_REQUIRED, _SCORE_OPTIONAL, _SCORE_NAME = 3, 1, 5

_SYMBOLS = {
    "€": "EUR",
    "£": "GBP",
    "¥": "JPY",
    "₹": "INR",
    "₩": "KRW",
    "₽": "RUB",
    "₺": "TRY",
    "zł": "PLN",
    "R$": "BRL",
    "CHF": "CHF",
    "$": "USD",
}
_ISO_CODES = (
    "EUR",
    "USD",
    "GBP",
    "JPY",
    "CHF",
    "CAD",
    "AUD",
    "NZD",
    "SEK",
    "NOK",
    "DKK",
    "PLN",
    "CZK",
    "INR",
    "CNY",
    "BRL",
    "MXN",
    "ZAR",
    "SGD",
    "HKD",
)
_NAME_CURRENCY = (
    ("dollar", "USD"),
    ("usd", "USD"),
    ("euro", "EUR"),
    ("eur", "EUR"),
    ("gbp", "GBP"),
    ("sterling", "GBP"),
    ("pound", "GBP"),
    ("yen", "JPY"),
)


def normalise(name: str) -> str:
    """``name`` lower-cased, without spaces, underscores, dashes, dots (``Customer ID``: ``customerid``)."""
    return re.sub(r"[\s_\-.]+", "", str(name)).lower()


# ------------------------------------------------------------------------------ dates


@dataclass(frozen=True)
class DateFormat:
    """How the sample of a timestamp column is written.

    Attributes
    ----------
    format : str
        ``"ISO8601"`` or a strftime format (``"%d/%m/%Y"``, ``"%Y%m%d"``, ``"%m/%d/%Y %H:%M"`` …).
    dayfirst : bool or None
        For ``d/m/y`` layouts: whether the day comes first; ``None`` for the others.
    ambiguous : bool
        No sample value told day and month apart (day first was assumed).
    naive : bool
        The values carry no UTC offset (they need a time zone, or are calendar days).
    example : str
        One sample value.
    """

    format: str
    dayfirst: bool | None = None
    ambiguous: bool = False
    naive: bool = True
    example: str = ""

    @property
    def iso(self) -> bool:
        """Whether the values are ISO 8601 (read without a ``format``)."""
        return self.format == "ISO8601"

    @property
    def has_time(self) -> bool:
        """Whether the values carry a time of day (naive ones then need a time zone)."""
        return "%H" in self.format if not self.iso else len(self.example) > 10


_ISO_RE = re.compile(
    r"^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?\s*(?P<tz>Z|z|[+-]\d{2}(?::?\d{2})?)?$"
)
_DMY_RE = re.compile(
    r"^(?P<a>\d{1,2})(?P<sep>[/.\-])(?P<b>\d{1,2})(?P=sep)(?P<y>\d{4}|\d{2})"
    r"(?:[ T](?P<h>\d{1,2}):(?P<m>\d{2})(?P<s>:\d{2})?)?$"
)
_YMD8_RE = re.compile(r"^(?:19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])$")


def _present(values: Iterable[object]) -> list[str]:
    out = []
    for v in values:
        if v is None or (isinstance(v, float) and v != v):
            continue
        s = str(v).strip()
        if s.endswith(".0") and s[:-2].isdigit():  # an 8-digit date read as a float
            s = s[:-2]
        if s and s.lower() not in ("nan", "nat", "none", "null"):
            out.append(s)
    return out


def detect_date_format(values: Iterable[object]) -> DateFormat | None:
    """The one date layout every present value of ``values`` follows, or ``None``.

    Parameters
    ----------
    values : iterable
        A sample of the column (text, numbers or timestamps; missing values are ignored).

    Returns
    -------
    DateFormat or None
        ``None`` when the sample is empty, mixes layouts or is not dates. Timestamp values
        (already parsed, e.g. from Parquet) are ISO 8601.
    """
    raw = list(values)
    if raw and all(isinstance(v, pd.Timestamp) or v is None for v in raw):
        present_ts = [v for v in raw if v is not None and not pd.isna(v)]
        if not present_ts:
            return None
        naive = any(v.tzinfo is None for v in present_ts)
        return DateFormat("ISO8601", naive=naive, example=str(present_ts[0]))
    present = _present(raw)
    if not present:
        return None
    if all(_ISO_RE.match(v) for v in present):
        naive = not all(_ISO_RE.match(v).group("tz") for v in present)  # type: ignore[union-attr]
        return DateFormat("ISO8601", naive=naive, example=present[0])
    if all(_YMD8_RE.match(v) for v in present):
        return DateFormat("%Y%m%d", example=present[0])
    matches = [_DMY_RE.match(v) for v in present]
    if not all(matches):
        return None
    seps = {m.group("sep") for m in matches}  # type: ignore[union-attr]
    years = {len(m.group("y")) for m in matches}  # type: ignore[union-attr]
    times = {(m.group("h") is not None, m.group("s") is not None) for m in matches}  # type: ignore[union-attr]
    if len(seps) > 1 or len(years) > 1 or len(times) > 1:
        return None
    a = [int(m.group("a")) for m in matches]  # type: ignore[union-attr]
    b = [int(m.group("b")) for m in matches]  # type: ignore[union-attr]
    if max(a) > 31 or max(b) > 31 or min(a) < 1 or min(b) < 1:
        return None
    day_first_seen, month_first_seen = max(a) > 12, max(b) > 12
    if day_first_seen and month_first_seen:
        return None  # neither reading holds for every value
    dayfirst = not month_first_seen
    sep = seps.pop()
    year = "%Y" if years.pop() == 4 else "%y"
    date_part = sep.join(("%d", "%m", year) if dayfirst else ("%m", "%d", year))
    has_time, has_seconds = times.pop()
    time_part = (" %H:%M:%S" if has_seconds else " %H:%M") if has_time else ""
    return DateFormat(
        date_part + time_part,
        dayfirst=dayfirst,
        ambiguous=not (day_first_seen or month_first_seen),
        example=present[0],
    )


# ------------------------------------------------------------------------------ values


def _numeric_share(values: Sequence[str]) -> float:
    if not values:
        return 1.0
    cleaned = [re.sub(r"[^\d.,\-+eE]", "", v).replace(",", "") for v in values]
    ok = pd.to_numeric(pd.Series(cleaned, dtype="object"), errors="coerce").notna()
    return float(ok.mean())


def _looks_like(kind: str, sample: pd.Series | None) -> bool:
    """Whether a sample fits a canonical column kind (no sample: yes)."""
    if sample is None:
        return True
    present = _present(sample.tolist())
    if not present:
        return True
    if kind == "timestamp":
        if pd.api.types.is_datetime64_any_dtype(sample.dtype):
            return True
        return detect_date_format(present) is not None
    if kind == "number":
        return pd.api.types.is_numeric_dtype(sample.dtype) or _numeric_share(present) >= 0.9
    return True


def _repeats(sample: pd.Series) -> bool:
    """Whether a value repeats in the sample (then the column is not a row key)."""
    present = pd.Series(_present(sample.tolist()), dtype="object")
    return bool(present.duplicated().any())


def _is_boolean(sample: pd.Series | None) -> bool:
    if sample is None:
        return False
    if pd.api.types.is_bool_dtype(sample.dtype):
        return True
    present = {v.lower() for v in _present(sample.tolist())}
    return bool(present) and present <= _BOOL_VALUES


# ------------------------------------------------------------------------------ columns


def match_columns(table: str, columns: Sequence[str], sample: pd.DataFrame | None = None) -> dict[str, str]:
    """Canonical column → source column for ``table``, from names and (optionally) values.

    Parameters
    ----------
    table : str
        A canonical table name (:data:`crmscore.core.schema.SCHEMAS`).
    columns : sequence of str
        The source's column names.
    sample : DataFrame, optional
        Some rows of the source (source column names): timestamp and number candidates
        whose values do not fit are skipped.

    Returns
    -------
    dict
        Only the canonical columns found; each source column is used once.
    """
    spec: TableSpec = SCHEMAS[table]
    by_norm: dict[str, str] = {}
    for col in columns:
        by_norm.setdefault(normalise(col), col)
    used: set[str] = set()
    found: dict[str, str] = {}
    ordered = sorted(spec.columns, key=lambda c: not c.required)  # required columns choose first

    def is_key_repeating(name: str, src: str) -> bool:
        return name == spec.key and sample is not None and src in sample and _repeats(sample[src])

    # first pass: exact canonical names, so that a synonym never steals a column named as such
    for c in ordered:
        src = by_norm.get(normalise(c.name))
        if src is not None and src not in used and not is_key_repeating(c.name, src):
            found[c.name] = src
            used.add(src)
    for c in ordered:
        if c.name in found:
            continue
        for syn in COLUMN_SYNONYMS[table].get(c.name, ()):
            src = by_norm.get(syn)
            if src is None or src in used or is_key_repeating(c.name, src):
                continue
            values = sample[src] if sample is not None and src in sample else None
            if not _looks_like(c.kind, values):
                continue
            found[c.name] = src
            used.add(src)
            break
    return {c.name: found[c.name] for c in spec.columns if c.name in found}


# ------------------------------------------------------------------------------ currency


def detect_currency(columns: Mapping[str, str], sample: pd.DataFrame | None) -> tuple[str | None, str]:
    """Currency of a transactions table and what says so.

    Parameters
    ----------
    columns : mapping
        Canonical → source column of the table (``currency`` and ``amount`` are looked at).
    sample : DataFrame, optional
        Some rows of the source.

    Returns
    -------
    currency : str or None
        An ISO 4217 code, or ``None`` when nothing tells.
    evidence : str
        Why (for the summary), or why not.
    """
    if sample is not None and "currency" in columns and columns["currency"] in sample:
        values = Counter(v.upper() for v in _present(sample[columns["currency"]].tolist()))
        if values:
            code, n = values.most_common(1)[0]
            others = f" (also {', '.join(sorted(set(values) - {code}))})" if len(values) > 1 else ""
            return (
                code,
                f"column {columns['currency']!r}: {code} in {n} of {sum(values.values())} rows{others}",
            )
    amount = columns.get("amount")
    if sample is not None and amount is not None and amount in sample:
        text = " ".join(_present(sample[amount].tolist()))
        for symbol, code in sorted(_SYMBOLS.items(), key=lambda kv: -len(kv[0])):
            if symbol in text:
                return code, f"symbol {symbol!r} in {amount!r}"
        for code in _ISO_CODES:
            if re.search(rf"\b{code}\b", text, flags=re.IGNORECASE):
                return code, f"code {code} in {amount!r}"
    if amount is not None:
        low = amount.lower()
        for word, code in _NAME_CURRENCY:
            if word in low:
                return code, f"the name of {amount!r}"
    return None, "no currency column, symbol or code found"


def _symbols_in(values: pd.Series) -> bool:
    return any(re.search(r"[^\d.,\-+eE\s]", v) for v in _present(values.tolist()))


# ------------------------------------------------------------------------------ proposal


@dataclass(frozen=True)
class FileSample:
    """One source file (or database table): its name, its columns and some of its rows.

    ``name`` is the file stem (``orders`` for ``orders.csv``); ``file`` the file's name.
    """

    name: str
    columns: tuple[str, ...]
    rows: pd.DataFrame | None = None
    file: str = ""


@dataclass(frozen=True)
class TableProposal:
    """The proposed mapping of one canonical table.

    Attributes
    ----------
    table : str
        Canonical table name.
    source : str
        File stem (or database table) holding it.
    file : str
        The file's name.
    columns : dict
        Canonical → source column (only the columns found).
    missing : tuple of str
        Required canonical columns not found (the table cannot be used as it is).
    unmapped : tuple of str
        Source columns not mapped (kept as attributes in ``customers`` and ``leads``,
        ignored elsewhere).
    date_formats : dict
        Canonical timestamp column → :class:`DateFormat` of its sample (``None``: not dates,
        or mixed layouts).
    hints : tuple of str
        Advice for the user (a missing amount that a price and a quantity could give, …).
    """

    table: str
    source: str
    file: str
    columns: dict[str, str]
    missing: tuple[str, ...] = ()
    unmapped: tuple[str, ...] = ()
    date_formats: dict[str, DateFormat | None] = field(default_factory=dict)
    hints: tuple[str, ...] = ()


@dataclass(frozen=True)
class Proposal:
    """What :func:`propose` found.

    Attributes
    ----------
    tables : dict
        Canonical table → :class:`TableProposal`.
    unassigned : tuple of str
        Files that hold none of the tables.
    currency, currency_evidence : str or None, str
        See :func:`detect_currency`.
    models : tuple of str
        Model kinds the data supports, and ``model_notes`` why (or why not) for each kind.
    required_tables : tuple of str
        Proposed ``data.required_tables``.
    churn_definition : str
        Proposed ``churn.definition``; ``churn_label`` / ``leads_label`` the label columns.
    needs_timezone : bool
        Some timestamp column holds times of day without a UTC offset: ``data.source_timezone``
        must say their zone (proposed ``UTC``). Dates without a time are calendar days in UTC.
    warnings : tuple of str
        Problems the user must fix before the data can be read.
    """

    tables: dict[str, TableProposal]
    unassigned: tuple[str, ...]
    currency: str | None
    currency_evidence: str
    models: tuple[str, ...]
    model_notes: dict[str, str]
    required_tables: tuple[str, ...]
    churn_definition: str = "inactivity"
    churn_label: str | None = None
    leads_label: str | None = None
    needs_timezone: bool = False
    warnings: tuple[str, ...] = ()


def _name_says(table: str, name: str) -> bool:
    return normalise(name) in TABLE_SYNONYMS[table] or normalise(name) == normalise(table)


def _score(table: str, sample: FileSample, found: Mapping[str, str]) -> tuple[int, bool]:
    spec = SCHEMAS[table]
    complete = all(c in found for c in spec.required)
    points = sum(_SCORE_REQUIRED if c in spec.required else _SCORE_OPTIONAL for c in found)
    named = _name_says(table, sample.name)
    return points + (_SCORE_NAME if named else 0), complete or named


def _label_column(sample: FileSample, names: Sequence[str], mapped: Iterable[str]) -> str | None:
    taken = set(mapped)
    for col in sample.columns:
        if col in taken or normalise(col) not in names:
            continue
        values = sample.rows[col] if sample.rows is not None and col in sample.rows else None
        if values is None or _is_boolean(values):
            return col
    return None


def _table_proposal(table: str, sample: FileSample, found: dict[str, str]) -> TableProposal:
    spec = SCHEMAS[table]
    missing = tuple(c for c in spec.required if c not in found)
    unmapped = tuple(c for c in sample.columns if c not in set(found.values()))
    rows = sample.rows
    formats: dict[str, DateFormat | None] = {}
    for col in spec.timestamps:
        if col in found:
            values = rows[found[col]].tolist() if rows is not None and found[col] in rows else []
            formats[col] = detect_date_format(values)
    hints: list[str] = []
    key = spec.key
    named_key = match_columns(table, sample.columns).get(key) if key is not None else None
    if key is not None and named_key is not None and key not in found:
        hints.append(
            f"{named_key!r} repeats in the sample (one row per line item?): it is not the table's key, "
            f"so it was not mapped as {key}"
        )
    if "amount" in missing:
        norm = {normalise(c): c for c in sample.columns}
        price = next((norm[n] for n in ("unitprice", "price", "itemprice") if n in norm), None)
        qty = found.get("quantity")
        if price and qty:
            hints.append(
                f"no amount column: add one as {price} × {qty} (see docs/own-crm.md) and run init again"
            )
    amounts = (
        rows[found["amount"]] if "amount" in found and rows is not None and found["amount"] in rows else None
    )
    if amounts is not None and not pd.api.types.is_numeric_dtype(amounts.dtype) and _symbols_in(amounts):
        hints.append(
            f"{found['amount']!r} holds currency symbols or codes: strip them to plain numbers "
            "(such values are set aside as bad_type)"
        )
    for col, fmt in formats.items():
        if fmt is None and rows is not None and found[col] in rows and _present(rows[found[col]].tolist()):
            hints.append(f"{found[col]!r} ({col}): the sample is not in one date layout crmscore knows")
    return TableProposal(
        table, sample.name, sample.file or sample.name, found, missing, unmapped, formats, tuple(hints)
    )


def supported_models(
    tables: Mapping[str, TableProposal], churn_label: str | None = None, leads_label: str | None = None
) -> tuple[tuple[str, ...], dict[str, str], str]:
    """The model kinds the mapped tables support, why or why not, and the churn definition.

    Returns
    -------
    kinds : tuple of str
        Among ``churn``, ``leads``, ``clv``.
    notes : dict
        Kind → the reason it is (not) supported.
    churn_definition : str
        ``label``, ``inactivity`` or ``contractual``.
    """

    def usable(t: str) -> bool:
        return t in tables and not tables[t].missing

    kinds: list[str] = []
    notes: dict[str, str] = {}
    definition = "inactivity"
    if churn_label is not None and usable("customers"):
        kinds.append("churn")
        definition = "label"
        notes["churn"] = f"label column {churn_label!r} in customers (churn.definition: label)"
    elif usable("transactions"):
        kinds.append("churn")
        notes["churn"] = (
            "no purchase within churn.horizon_days after the cutoff (churn.definition: inactivity)"
        )
    elif usable("customers") and "churned_at" in tables["customers"].columns:
        kinds.append("churn")
        definition = "contractual"
        notes["churn"] = "customers.churned_at (churn.definition: contractual)"
    else:
        notes["churn"] = "needs transactions, a churn label column or customers.churned_at"
    if usable("leads") and (leads_label is not None or "converted_at" in tables["leads"].columns):
        kinds.append("leads")
        how = f"label column {leads_label!r}" if leads_label else "leads.converted_at"
        notes["leads"] = f"conversions from {how}"
    else:
        notes["leads"] = "needs a leads table with converted_at or a conversion label column"
    if usable("transactions"):
        kinds.append("clv")
        notes["clv"] = "BG/NBD + Gamma-Gamma on the transactions"
    else:
        notes["clv"] = "needs a transactions table (customer, date, amount)"
    return tuple(kinds), notes, definition


def propose(samples: Sequence[FileSample]) -> Proposal:
    """Propose the mapping of a set of source files onto the canonical tables.

    Parameters
    ----------
    samples : sequence of FileSample
        Each file's name, columns and a sample of its rows (a few hundred rows are plenty).

    Returns
    -------
    Proposal
        See the module docstring for the rules.
    """
    candidates: list[tuple[int, int, str, int, dict[str, str]]] = []
    for i, s in enumerate(samples):
        for order, table in enumerate(SCHEMAS):
            found = match_columns(table, s.columns, s.rows)
            points, eligible = _score(table, s, found)
            if eligible and points > 0:
                candidates.append((points, -order, table, i, found))
    candidates.sort(key=lambda c: (-c[0], -c[1], c[3]))
    tables: dict[str, TableProposal] = {}
    taken: set[int] = set()
    for _, _, table, i, found in candidates:
        if table in tables or i in taken:
            continue
        tables[table] = _table_proposal(table, samples[i], found)
        taken.add(i)
    tables = {t: tables[t] for t in SCHEMAS if t in tables}
    unassigned = tuple(s.file or s.name for i, s in enumerate(samples) if i not in taken)

    churn_label = leads_label = None
    if "customers" in tables:
        s = next(x for x in samples if x.name == tables["customers"].source)
        churn_label = _label_column(s, CHURN_LABELS, tables["customers"].columns.values())
    if "leads" in tables:
        s = next(x for x in samples if x.name == tables["leads"].source)
        leads_label = _label_column(s, CONVERSION_LABELS, tables["leads"].columns.values())
    models, notes, definition = supported_models(tables, churn_label, leads_label)

    currency, evidence = None, "no transactions table"
    if "transactions" in tables:
        s = next(x for x in samples if x.name == tables["transactions"].source)
        currency, evidence = detect_currency(tables["transactions"].columns, s.rows)

    usable = [t for t, p in tables.items() if not p.missing]
    required = tuple(t for t in ("customers", "transactions") if t in usable) or tuple(usable[:1])
    warnings: list[str] = []
    for t, p in tables.items():
        if p.missing:
            warnings.append(f"{t} ({p.file}): required column(s) {', '.join(p.missing)} not found")
        for col, fmt in p.date_formats.items():
            if fmt is not None and fmt.ambiguous:
                warnings.append(
                    f"{t}.{col} ({p.columns[col]}): no sample value tells day from month; "
                    f"{fmt.format} assumed, check it"
                )
    if not tables:
        warnings.append("no file holds a table crmscore knows (see docs/own-crm.md for the names)")
    needs_tz = any(
        fmt is not None and fmt.naive and fmt.has_time
        for p in tables.values()
        for fmt in p.date_formats.values()
    )
    return Proposal(
        tables=tables,
        unassigned=unassigned,
        currency=currency,
        currency_evidence=evidence,
        models=models,
        model_notes=notes,
        required_tables=required,
        churn_definition=definition,
        churn_label=churn_label,
        leads_label=leads_label,
        needs_timezone=needs_tz,
        warnings=tuple(warnings),
    )
