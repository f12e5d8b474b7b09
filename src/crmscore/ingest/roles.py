"""Feature roles of the attribute columns, and the PII guard.

Every column of a table with attribute columns (``customers`` and ``leads``: the tables whose
extra columns are kept, :attr:`crmscore.core.schema.TableSpec.keeps_extra`) gets one role:

``identifier``
    names a record (never a feature);
``ownership``
    who works the record (owner, rep, account manager): describes the seller, not the customer;
    kept in the data for the worklist and the report, never a feature;
``pii``
    personal data (email, phone, person or account name, address, IP, national ids, birth date);
``free_text``
    long free text (notes, comments);
``feature``
    may be a model feature (the feature modules still drop dates, label columns and the
    contract's date columns for their own reasons).

A text column used as a feature stores every distinct value in the model (LightGBM keeps the
categories of a categorical feature), and so in MLflow and in every export: the roles keep
identifiers and personal data out of the model store.

Rules, in order (the first that applies decides):

1. **contract ids**: the id columns of the data contract (``customers.customer_id``,
   ``leads.lead_id``, ``leads.customer_id``) are ``identifier``; a declaration cannot make them
   features.
2. **declared**: ``data.tables.<table>.roles: {column: role}`` (canonical column names) decides;
   ``feature`` opts a column back in that a later rule would exclude.
3. **ownership** (always on): a column whose name has a token ``owner``, ``owners``, ``rep``,
   ``reps``, ``representative``, ``assignee``, ``csm``, ``salesperson``, or the token runs
   ``account_manager``, ``account_executive``, ``sales_rep``, ``sales_person``,
   ``success_manager``, ``assigned_to``, ``owned_by``, ``managed_by``, ``handled_by``.
4. **PII guard** (``features.pii_guard``, default on), on the whole table:

   a. *name* (text columns): the name has a token ``email``/``mail``/``e_mail``; ``phone``,
      ``telephone``, ``tel``, ``mobile``, ``cell``, ``cellphone``, ``fax``, ``msisdn``; is
      ``name``, ``names``, ``contact``, or has ``first``/``last``/``given``/``family``/
      ``middle``/``maiden``/``full``/``contact``/``person``/``customer``/``client``/
      ``account``/``company``/``user``/``display``/``nick``/``sur``/``fore`` followed by
      ``name`` (``first_name``, ``lastname``, ``contact_name`` ...), ends in ``_contact``, or has
      ``contact_person``, ``username``, ``signatory``; has a token ``address``, ``addr``,
      ``street``, ``house_number``, ``postcode``, ``post_code``, ``postal_code``, ``zip``,
      ``zipcode``, ``zip_code``, ``ip``, ``ipv4``, ``ipv6``, ``ip_address``; or ``ssn``,
      ``social_security``, ``national_id``, ``passport``, ``iban``, ``tax_id``, ``vat_id``,
      ``vat_number``, ``credit_card``, ``card_number``, ``dob``, ``date_of_birth``,
      ``birth_date``, ``birthdate``, ``birthday`` → ``pii``. Names are normalised first
      (camelCase split, lower case, other characters to ``_``: ``E-Mail`` → ``e_mail``,
      ``PhoneNumber`` → ``phone_number``). Number, boolean and date columns are ``pii`` only
      when their whole normalised name is one of ``phone``, ``phone_number``, ``telephone``,
      ``mobile``, ``mobile_number``, ``cell``, ``fax``, ``msisdn``, ``zip``, ``zip_code``,
      ``zipcode``, ``postcode``, ``post_code``, ``postal_code``, ``ssn``, ``dob``,
      ``date_of_birth``, ``birth_date``, ``birthdate``, ``birthday`` (digit-only phone numbers
      are read as numbers; ``email_opens`` or ``has_email`` stay features);
   b. *id-named and near-unique* (any kind): the name is ``id`` or ends in ``_id``, ``uuid``
      or ``guid``, and the column is near-unique (rule f) → ``identifier``;
   c. *email or phone values* (text): on the sample (below), at least 20 % of the values
      contain an email address (``x@domain.tld``) or are a phone number (7–15 digits and only
      digits, spaces, ``+ ( ) . - /``; starting with ``+``, ``00`` or ``(``, or with at least 9
      digits; not a date and not a range such as ``1000-4999``) → ``pii``;
   d. *person-name values* (text): at least 50 % of the sampled values are 2–4 words, each
      capitalised and alphabetic (hyphens and apostrophes allowed, initials such as ``J.``
      and particles such as ``van``/``de``/``al`` allowed, a leading ``Mr``/``Mrs``/``Dr`` ...
      ignored), with at least two capitalised words none of which is a common category word
      (``North``, ``America``, ``Enterprise``, ``Inc``, ``New``, ``San`` ...), **and** the
      column is not a low-cardinality category: at least ``min(50, half its non-missing
      values)`` distinct values and distinct / non-missing >= 0.02 (a category repeats a few
      levels over many rows) → ``pii``. So ``North America``, eight rep names or 60 campaign
      names over 10,000 rows are not caught by this rule;
   e. *long free text* (text): at least 20 % of the sampled values have 6 words or more, or
      60 characters or more, and the column has at least ``min(50, half its non-missing
      values)`` distinct values (a long category label repeated is a category) →
      ``free_text``;
   f. *near-unique* (text): at least 100 non-missing values and distinct / non-missing
      >= ``features.near_unique_ratio`` (default 0.9) → ``identifier``. Tables of fewer rows
      are not judged on this rule (every column of a tiny table is near-unique).

5. Otherwise ``feature``.

The *sample* is deterministic: at most 1,000 of the column's non-missing values at evenly
spaced positions (the same table always gives the same sample and the same roles). The
distinct counts are over the whole column. Measured at 1M customers: the synthetic CRM's 11
columns take 0.04–0.2 s; with five more text columns of up to 1M distinct emails, names, notes
and codes, 0.6–1.1 s of CPU (mostly the distinct counts of those columns).

The decision is made once per dataset on the whole validated table
(:mod:`crmscore.ingest.validation` stores it in :attr:`crmscore.core.schema.CRMData.roles`
and notes every excluded column), so every training cutoff sees the same columns. The feature
modules never use a column whose role is not ``feature``; without stored roles (a
``CRMData`` built by hand) they compute them with :func:`roles_for` on the whole table.
Nothing here logs or returns a value of the data: reasons carry column names and counts only.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from crmscore.core.schema import SCHEMAS, CRMData

if TYPE_CHECKING:
    from crmscore.config import Config

__all__ = [
    "FEATURE",
    "ROLES",
    "ROLE_TABLES",
    "RoleDecision",
    "TableRoles",
    "dataset_roles",
    "decide_roles",
    "non_features",
    "normalise_name",
    "role_notes",
    "roles_for",
    "table_roles",
]

FEATURE = "feature"
#: every role a column can have
ROLES: tuple[str, ...] = ("identifier", "ownership", "pii", "free_text", FEATURE)
#: tables whose columns get roles (those that keep attribute columns)
ROLE_TABLES: tuple[str, ...] = tuple(name for name, spec in SCHEMAS.items() if spec.keeps_extra)

#: at most this many non-missing values are checked by the value rules
SAMPLE_SIZE = 1_000
#: near-unique needs at least this many non-missing values
NEAR_UNIQUE_MIN_ROWS = 100
#: share of sampled values that contain an email address or are a phone number
CONTACT_SHARE = 0.2
#: share of sampled values that look like a person's name
PERSON_NAME_SHARE = 0.5
#: person names: distinct / non-missing at least this
PERSON_NAME_MIN_RATIO = 0.02
#: share of sampled values that are long text
FREE_TEXT_SHARE = 0.2
FREE_TEXT_MIN_WORDS = 6
FREE_TEXT_MIN_CHARS = 60
#: a column with fewer distinct values than min(this, half its values) is a category
CATEGORY_MAX_DISTINCT = 50

# ------------------------------------------------------------------------- name rules


def normalise_name(name: str) -> str:
    """``name`` in lower snake case: ``PhoneNumber`` → ``phone_number``, ``E-Mail`` → ``e_mail``."""
    s = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", str(name))
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", s)
    return re.sub(r"[^a-z0-9]+", "_", s.lower()).strip("_")


def _tokens(pattern: str) -> re.Pattern[str]:
    """``pattern`` between token boundaries of a normalised name (``_``, digits or the ends)."""
    return re.compile(rf"(?:^|_)(?:{pattern})(?=_|\d|$)")


_OWNERSHIP = _tokens(
    r"owners?|reps?|representative|assignee|csm|salesperson|account_manager|account_executive"
    r"|sales_rep|sales_person|success_manager|assigned_to|owned_by|managed_by|handled_by"
)
_PII_NAMES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("an email address", _tokens(r"e_?mail|mail|email_address")),
    ("a phone number", _tokens(r"phone|telephone|tel|mobile|cell|cellphone|fax|msisdn")),
    (
        "a person's or account's name",
        re.compile(
            r"^(?:names?|contact)$|(?:^|_)(?:first|last|given|family|middle|maiden|full|contact|person"
            r"|customer|client|account|company|user|display|nick|sur|fore)_?names?(?=_|\d|$)"
            r"|_contact$|(?:^|_)(?:contact_person|username|signatory)(?=_|\d|$)"
        ),
    ),
    (
        "an address",
        _tokens(
            r"address|addr|street|house_number|postcode|post_code|postal_code|zip|zipcode|zip_code"
            r"|ip|ipv4|ipv6|ip_address"
        ),
    ),
    (
        "a personal identifier or birth date",
        _tokens(
            r"ssn|social_security|national_id|passport|iban|tax_id|vat_id|vat_number|credit_card"
            r"|card_number|dob|date_of_birth|birth_date|birthdate|birthday"
        ),
    ),
)
#: whole names that are PII whatever the column's type
_PII_EXACT: dict[str, str] = {
    **dict.fromkeys(
        ("phone", "phone_number", "telephone", "mobile", "mobile_number", "cell", "fax", "msisdn"),
        "a phone number",
    ),
    **dict.fromkeys(("zip", "zip_code", "zipcode", "postcode", "post_code", "postal_code"), "an address"),
    **dict.fromkeys(
        ("ssn", "dob", "date_of_birth", "birth_date", "birthdate", "birthday"),
        "a personal identifier or birth date",
    ),
}
_ID_NAME = re.compile(r"(?:^|_)id$|uuid$|guid$")

# ------------------------------------------------------------------------- value rules

_EMAIL = re.compile(r"[^\s@<>()\[\],;:]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_PHONE_CHARS = re.compile(r"(?:\+|00)?[\d\s().\-/]+")
_DATE = re.compile(r"\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}")
_RANGE = re.compile(r"\d+\s*[-–]\s*\d+")
_HONORIFICS = frozenset({"mr", "mrs", "ms", "miss", "mx", "dr", "prof", "sir", "herr", "frau"})
_PARTICLES = frozenset(
    {"van", "von", "de", "der", "den", "da", "di", "del", "della", "du", "la", "le", "bin", "al", "el",
     "ten", "ter", "y", "dos", "das"}
)  # fmt: skip
#: capitalised words common in category values, which make a value not a person's name
_CATEGORY_WORDS = frozenset(
    {"north", "south", "east", "west", "central", "northern", "southern", "eastern", "western",
     "america", "americas", "europe", "asia", "africa", "pacific", "middle", "latin", "united",
     "new", "san", "los", "las", "saint", "st", "city", "inc", "ltd", "llc", "gmbh", "ag", "corp",
     "co", "group", "services", "service", "solutions", "systems", "enterprise", "enterprises",
     "business", "company", "small", "medium", "large", "mid", "market", "plan", "basic", "pro",
     "premium", "free", "trial", "paid", "search", "social", "web", "online", "email", "partner",
     "referral", "event", "other", "unknown", "none", "high", "low", "tier", "level", "team",
     "sales", "support", "marketing", "retail", "software", "healthcare", "finance", "media"}
)  # fmt: skip


def _has_email(v: str) -> bool:
    return _EMAIL.search(v) is not None


def _is_phone(v: str) -> bool:
    if not _PHONE_CHARS.fullmatch(v) or _DATE.fullmatch(v) or _RANGE.fullmatch(v):
        return False
    digits = sum(ch.isdigit() for ch in v)
    if not 7 <= digits <= 15:
        return False
    return v.startswith(("+", "00", "(")) or digits >= 9


def _capitalised(word: str) -> bool:
    parts = re.split(r"[-'’]", word)
    return all(p.isalpha() and p[0].isupper() and (len(p) == 1 or p[1:].islower()) for p in parts)


def _is_person_name(v: str) -> bool:
    words = v.split()
    if words and words[0].rstrip(".").lower() in _HONORIFICS:
        words = words[1:]
    if not 2 <= len(words) <= 4:
        return False
    capitalised = 0
    for w in words:
        low = w.lower()
        if low in _PARTICLES or re.fullmatch(r"[A-Z]\.", w):
            continue
        if low in _CATEGORY_WORDS or not _capitalised(w):
            return False
        capitalised += 1
    return capitalised >= 2


def _is_long_text(v: str) -> bool:
    return len(v) >= FREE_TEXT_MIN_CHARS or len(v.split()) >= FREE_TEXT_MIN_WORDS


# ------------------------------------------------------------------------- decisions


@dataclass(frozen=True)
class RoleDecision:
    """The role of one column and why (no data values, only names and counts)."""

    table: str
    column: str
    role: str
    reason: str
    declared: bool = False
    #: what the PII guard or the ownership rule would have decided (for a declared ``feature``)
    overridden: str | None = None

    @property
    def is_feature(self) -> bool:
        return self.role == FEATURE


@dataclass(frozen=True)
class TableRoles:
    """Roles of every column of one table, and the declarations that did not apply."""

    table: str
    decisions: dict[str, RoleDecision] = field(default_factory=dict)
    #: declarations naming no column of the table, or a contract id as a feature
    ignored: tuple[str, ...] = ()

    @property
    def roles(self) -> dict[str, str]:
        """Column → role."""
        return {c: d.role for c, d in self.decisions.items()}

    @property
    def excluded(self) -> list[RoleDecision]:
        """The decisions of the columns that are not features, in column order."""
        return [d for d in self.decisions.values() if not d.is_feature]


@dataclass(frozen=True)
class _Stats:
    """What the value rules need of one column (computed lazily, once)."""

    present: int
    distinct: int
    sample: list[str]


def _is_text(s: pd.Series) -> bool:
    dtype = s.dtype
    return (
        isinstance(dtype, pd.CategoricalDtype)
        or pd.api.types.is_string_dtype(dtype)
        or pd.api.types.is_object_dtype(dtype)
    ) and not pd.api.types.is_bool_dtype(dtype)


def _stats(s: pd.Series, sample_size: int) -> _Stats:
    present_mask = s.notna().to_numpy(dtype=bool, na_value=False)
    pos = np.flatnonzero(present_mask)
    n = len(pos)
    distinct = int(s.nunique(dropna=True)) if n else 0
    if n:
        take = np.unique(np.linspace(0, n - 1, num=min(n, sample_size)).round().astype(np.int64))
        sample = [str(v).strip() for v in s.iloc[pos[take]].tolist()]
    else:
        sample = []
    return _Stats(n, distinct, sample)


def _share(values: list[str], test: Callable[[str], bool]) -> float:
    return sum(1 for v in values if test(v)) / len(values) if values else 0.0


def _pct(x: float) -> str:
    return f"{100 * x:.0f} %"


def _near_unique(st: _Stats, ratio: float) -> bool:
    return st.present >= NEAR_UNIQUE_MIN_ROWS and st.distinct >= ratio * st.present


def _not_a_category(st: _Stats) -> bool:
    return st.distinct >= min(CATEGORY_MAX_DISTINCT, math.ceil(0.5 * st.present))


def _guard(column: str, s: pd.Series, near_unique_ratio: float, sample_size: int) -> tuple[str, str] | None:
    """``(role, reason)`` of the PII guard for one column, or None when it may be a feature."""
    norm = normalise_name(column)
    text = _is_text(s)
    if text:
        for what, pattern in _PII_NAMES:
            if pattern.search(norm):
                return "pii", f"its name looks like {what}"
    elif norm in _PII_EXACT:
        return "pii", f"its name looks like {_PII_EXACT[norm]}"
    if not text and not _ID_NAME.search(norm):
        return None
    st = _stats(s, sample_size)
    counts = f"{st.distinct:,} distinct of {st.present:,} values"
    if _ID_NAME.search(norm) and _near_unique(st, near_unique_ratio):
        return "identifier", f"its name looks like an id and its values are near-unique ({counts})"
    if not text or not st.sample:
        return None
    n = len(st.sample)
    emails = _share(st.sample, _has_email)
    phones = _share(st.sample, _is_phone)
    if emails + phones >= CONTACT_SHARE:
        found = [f"{_pct(emails)} contain an email address"] if emails else []
        found += [f"{_pct(phones)} are phone numbers"] if phones else []
        return "pii", f"of {n:,} sampled values, {' and '.join(found)}"
    if _not_a_category(st) and st.distinct >= PERSON_NAME_MIN_RATIO * st.present:
        names = _share(st.sample, _is_person_name)
        if names >= PERSON_NAME_SHARE:
            return "pii", f"{_pct(names)} of {n:,} sampled values look like person names ({counts})"
    if _not_a_category(st):
        long = _share(st.sample, _is_long_text)
        if long >= FREE_TEXT_SHARE:
            return "free_text", f"{_pct(long)} of {n:,} sampled values are long free text ({counts})"
    if _near_unique(st, near_unique_ratio):
        return "identifier", (
            f"its values are near-unique ({counts}; features.near_unique_ratio {near_unique_ratio})"
        )
    return None


def decide_roles(
    table: str,
    df: pd.DataFrame,
    *,
    declared: Mapping[str, str] | None = None,
    pii_guard: bool = True,
    near_unique_ratio: float = 0.9,
    sample_size: int = SAMPLE_SIZE,
) -> TableRoles:
    """The role of every column of ``df`` (the whole canonical table ``table``).

    Parameters
    ----------
    table : str
        Canonical table name (its contract ids are identifiers).
    df : DataFrame
        The whole table, canonical column names. Not modified.
    declared : mapping, optional
        Column → role (``data.tables.<table>.roles``); decides before the built-in rules.
    pii_guard : bool
        Apply the PII guard (rule 4 of the module docstring).
    near_unique_ratio : float
        Distinct / non-missing share at or above which a text column is near-unique.
    sample_size : int
        Values checked by the value rules (evenly spaced, deterministic).

    Returns
    -------
    TableRoles
        One :class:`RoleDecision` per column, in column order.
    """
    declared = dict(declared or {})
    spec = SCHEMAS.get(table)
    contract_ids = {c.name for c in spec.columns if c.kind == "id"} if spec is not None else set()
    where = f"data.tables.{table}.roles"
    decisions: dict[str, RoleDecision] = {}
    ignored: list[str] = []
    for col in df.columns:
        col = str(col)
        if col in contract_ids:
            decisions[col] = RoleDecision(table, col, "identifier", "an id column of the data contract")
            if declared.get(col, "identifier") != "identifier":
                ignored.append(f"{where}: {col!r} is an id of the data contract and stays an identifier")
            continue
        builtin = _builtin(col, df[col], pii_guard, near_unique_ratio, sample_size)
        if col in declared:
            role = declared[col]
            over = None if builtin is None or role != FEATURE else f"{builtin[0]}: {builtin[1]}"
            decisions[col] = RoleDecision(table, col, role, f"declared in {where}", True, over)
        elif builtin is not None:
            decisions[col] = RoleDecision(table, col, builtin[0], builtin[1])
        else:
            decisions[col] = RoleDecision(table, col, FEATURE, "no rule applies")
    for col in declared:
        if col not in decisions:
            ignored.append(f"{where}: {col!r} is not a column of {table}: ignored")
    return TableRoles(table, decisions, tuple(ignored))


def _builtin(
    column: str, s: pd.Series, pii_guard: bool, near_unique_ratio: float, sample_size: int
) -> tuple[str, str] | None:
    if _OWNERSHIP.search(normalise_name(column)):
        return (
            "ownership",
            "its name says who works the record (owner or rep): it describes the seller, not the "
            "customer; it stays in the worklist and the report",
        )
    if not pii_guard:
        return None
    return _guard(column, s, near_unique_ratio, sample_size)


def table_roles(table: str, df: pd.DataFrame, cfg: Config) -> TableRoles:
    """:func:`decide_roles` with the settings of ``cfg`` (declared roles, PII guard, ratio)."""
    tc = cfg.data.tables.get(table)  # type: ignore[call-overload]
    return decide_roles(
        table,
        df,
        declared=dict(tc.roles) if tc is not None else None,
        pii_guard=cfg.features.pii_guard,
        near_unique_ratio=cfg.features.near_unique_ratio,
    )


def dataset_roles(data: CRMData, cfg: Config) -> dict[str, TableRoles]:
    """:func:`table_roles` of every present table of :data:`ROLE_TABLES`."""
    return {t: table_roles(t, df, cfg) for t in ROLE_TABLES if (df := data.get(t)) is not None}


def roles_for(data: CRMData, table: str, cfg: Config) -> dict[str, str]:
    """Column → role of ``table``: the roles stored at validation, else computed on the whole table.

    Returns an empty mapping when the table is absent.
    """
    if table in data.roles:
        return dict(data.roles[table])
    df = data.get(table)
    return {} if df is None else table_roles(table, df, cfg).roles


def non_features(roles: Mapping[str, str], columns: Iterable[str] | None = None) -> frozenset[str]:
    """The columns whose role is not ``feature`` (of ``columns`` when given)."""
    cols = roles.keys() if columns is None else columns
    return frozenset(c for c in cols if roles.get(c, FEATURE) != FEATURE)


def role_notes(roles: TableRoles) -> list[str]:
    """One note per column that is not a feature (contract ids aside), per declaration that
    was ignored, and per column opted back in against the guard; each says how to change it."""
    table = roles.table
    where = f"data.tables.{table}.roles"
    notes: list[str] = []
    for d in roles.decisions.values():
        if d.reason == "an id column of the data contract":
            continue
        if d.is_feature and d.overridden:
            notes.append(
                f"{table}.{d.column}: used as a model feature as declared in {where}, although the "
                f"guard would exclude it ({d.overridden}); its values are stored in the model"
            )
        elif not d.is_feature:
            how = (
                f"remove it from {where} or set it to feature"
                if d.declared
                else f"set {where}: {{{d.column}: feature}}"
            )
            notes.append(
                f"{table}.{d.column}: not a model feature (role {d.role}: {d.reason}); to use it, {how}"
            )
    notes.extend(roles.ignored)
    return notes
