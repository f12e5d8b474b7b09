"""Feature roles and the PII guard (crmscore.ingest.roles): each rule, declarations, determinism."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from crmscore.config import config_from_mapping
from crmscore.core.schema import CRMData
from crmscore.ingest.roles import (
    decide_roles,
    non_features,
    normalise_name,
    role_notes,
    roles_for,
    table_roles,
)

N = 400  # enough rows for every rule (near-unique needs 100)


def _text(values) -> pd.Series:
    return pd.Series(pd.array(list(values), dtype="str"))


def _customers(**cols) -> pd.DataFrame:
    n = len(next(iter(cols.values()))) if cols else N
    base = {"customer_id": _text(f"C{i:05d}" for i in range(n))}
    base.update(cols)
    return pd.DataFrame(base)


def _role(df: pd.DataFrame, col: str, table: str = "customers", **kw) -> tuple[str, str]:
    d = decide_roles(table, df, **kw).decisions[col]
    return d.role, d.reason


REGIONS = ["North America", "Western Europe", "Latin America", "Asia Pacific", "Middle East"]
FIRST = ["Anna", "Ben", "Clara", "David", "Eva", "Felix", "Greta", "Hans", "Ida", "Jonas", "Karla", "Lena"]
LAST = ["Meyer", "Schmidt", "Jensen", "Rossi", "Novak", "O'Brien", "van Dijk", "Smith-Jones", "Garcia"]


def _names(n: int) -> list[str]:
    """``n`` distinct person names (first, middle initial, last)."""
    return [f"{FIRST[i % 12]} {chr(65 + (i // 12) % 26)}. {LAST[(i // 312) % len(LAST)]}" for i in range(n)]


def test_normalise_name():
    assert normalise_name("PhoneNumber") == "phone_number"
    assert normalise_name("E-Mail") == "e_mail"
    assert normalise_name("IPAddress") == "ip_address"
    assert normalise_name("firstName") == "first_name"


def test_contract_ids_identifiers_and_plain_categories_features():
    leads = pd.DataFrame(
        {
            "lead_id": _text(f"L{i}" for i in range(N)),
            "customer_id": _text(f"C{i}" for i in range(N)),
            "source": _text(["web", "event", "partner", "referral"][i % 4] for i in range(N)),
            "budget": np.arange(N, dtype=float),  # numeric, unique: stays a feature
        }
    )
    roles = decide_roles("leads", leads).roles
    assert roles == {
        "lead_id": "identifier",
        "customer_id": "identifier",
        "source": "feature",
        "budget": "feature",
    }


@pytest.mark.parametrize(
    "name", ["owner", "account_owner", "owner_id", "sales_rep", "AccountManager", "assigned_to", "csm", "rep"]
)
def test_ownership_by_name_whatever_the_guard(name):
    df = _customers(**{name: _text(["Alex Meyer", "Bea Schmidt"][i % 2] for i in range(N))})
    assert _role(df, name)[0] == "ownership"
    assert _role(df, name, pii_guard=False)[0] == "ownership"


@pytest.mark.parametrize(
    ("name", "what"),
    [
        ("email", "email"),
        ("E-Mail", "email"),
        ("work_email_address", "email"),
        ("phone", "phone"),
        ("MobileNumber", "phone"),
        ("fax", "phone"),
        ("first_name", "name"),
        ("LastName", "name"),
        ("full_name", "name"),
        ("contact_name", "name"),
        ("name", "name"),
        ("primary_contact", "name"),
        ("street", "address"),
        ("address_line1", "address"),
        ("postal_code", "address"),
        ("ip_address", "address"),
        ("date_of_birth", "birth"),
    ],
)
def test_pii_by_name_for_text_columns(name, what):
    df = _customers(**{name: _text(["a", "b"][i % 2] for i in range(N))})  # values say nothing
    role, reason = _role(df, name)
    assert role == "pii" and what in reason
    assert _role(df, name, pii_guard=False)[0] == "feature"


def test_name_rules_spare_numbers_unless_the_whole_name_is_pii():
    df = _customers(
        email_opens=np.arange(N, dtype=float) % 7,
        has_email=pd.Series(np.arange(N) % 2 == 0),
        phone=4917055500000.0 + np.arange(N),  # digit-only phone numbers read as numbers
        plan_name=_text(["basic", "pro"][i % 2] for i in range(N)),
    )
    roles = decide_roles("customers", df).roles
    assert roles["email_opens"] == roles["has_email"] == roles["plan_name"] == "feature"
    assert roles["phone"] == "pii"


def test_id_named_near_unique_numbers_are_identifiers():
    df = _customers(external_id=np.arange(N, dtype=float), region_id=np.arange(N, dtype=float) % 5)
    assert _role(df, "external_id")[0] == "identifier"
    assert _role(df, "region_id")[0] == "feature"


def test_email_and_phone_values():
    df = _customers(
        x1=_text(f"person{i}@example.com" if i % 4 == 0 else "none" for i in range(N)),  # 25 %
        x2=_text(
            ["+49 170 5550123", "(030) 1234567", "0049 30 1234567", "030 12345678"][i % 4] for i in range(N)
        ),
        x3=_text(f"person{i}@example.com" if i % 10 == 0 else "none" for i in range(N)),  # 10 %
        size=_text(["1-9", "10-49", "1000-4999", "10000-49999"][i % 4] for i in range(N)),  # ranges
        day=_text(["2024-03-01", "2024-03-02"][i % 2] for i in range(N)),  # dates
    )
    roles = decide_roles("customers", df).roles
    assert roles["x1"] == "pii" and roles["x2"] == "pii"
    assert roles["x3"] == roles["size"] == roles["day"] == "feature"
    assert "email" in _role(df, "x1")[1]


def test_person_name_values_but_not_low_cardinality_categories():
    people = _customers(who=_text(_names(N)))
    role, reason = _role(people, "who")
    assert role == "pii" and "person names" in reason
    regions = _customers(region=_text(REGIONS[i % len(REGIONS)] for i in range(N)))
    assert _role(regions, "region")[0] == "feature"
    reps = _customers(team_lead=_text(_names(8)[i % 8] for i in range(N)))  # 8 names: a category
    assert _role(reps, "team_lead")[0] == "feature"
    campaigns = _customers(campaign=_text(_names(60)[i % 60] for i in range(4000)))  # 1.5 % distinct
    assert _role(campaigns, "campaign")[0] == "feature"
    repeated = _customers(contact_of=_text(_names(300)[i % 300] for i in range(4000)))  # 7.5 % distinct
    assert _role(repeated, "contact_of")[0] == "pii"
    cities = ["New York", "San Francisco", "Los Angeles", "Las Vegas", "Saint Louis"]
    many = _customers(
        city=_text(f"{cities[i % 5]} {['North', 'South', 'East', 'West'][i % 4]}" for i in range(N))
    )
    assert _role(many, "city")[0] == "feature"


def test_long_free_text_but_not_a_long_category_label():
    notes = _customers(
        remark=_text(f"Called on day {i} about the renewal, follows up next week" for i in range(N))
    )
    assert _role(notes, "remark")[0] == "free_text"
    labels = ["Enterprise software and cloud services for the public sector (EMEA)", "Small business"]
    cat = _customers(segment=_text(labels[i % 2] for i in range(N)))
    assert _role(cat, "segment")[0] == "feature"


def test_near_unique_threshold_and_small_tables():
    codes = _customers(ref=_text(f"R{i}" if i % 10 else "R0" for i in range(N)))  # 361/400 distinct
    assert _role(codes, "ref")[0] == "identifier"
    assert _role(codes, "ref", near_unique_ratio=0.95)[0] == "feature"
    tiny = _customers(ref=_text(f"R{i}" for i in range(40)), plan=_text(["a", "b"][i % 2] for i in range(40)))
    roles = decide_roles("customers", tiny).roles
    assert roles["ref"] == roles["plan"] == "feature"  # too few rows to judge uniqueness
    tiny_names = _customers(who=_text(_names(40)), mail=_text(f"p{i}@example.com" for i in range(40)))
    roles = decide_roles("customers", tiny_names).roles
    assert roles["who"] == "pii" and roles["mail"] == "pii"  # small tables are still guarded


def test_declared_roles_both_ways_and_ignored_declarations():
    df = _customers(
        email=_text(f"p{i}@example.com" for i in range(N)),
        plan=_text(["basic", "pro"][i % 2] for i in range(N)),
    )
    declared = {"email": "feature", "plan": "pii", "customer_id": "feature", "gone": "pii"}
    r = decide_roles("customers", df, declared=declared)
    assert r.roles == {"customer_id": "identifier", "email": "feature", "plan": "pii"}
    assert r.decisions["email"].declared and "pii" in r.decisions["email"].overridden
    assert len(r.ignored) == 2 and any("'gone'" in m for m in r.ignored)
    notes = role_notes(r)
    assert any(n.startswith("customers.plan: not a model feature (role pii: declared") for n in notes)
    assert any(n.startswith("customers.email: used as a model feature as declared") for n in notes)
    assert not any(n.startswith("customers.customer_id") for n in notes)


def test_notes_name_column_role_reason_and_opt_in_without_values():
    df = _customers(email=_text(f"secret{i}@example.com" for i in range(N)))
    (note,) = role_notes(decide_roles("customers", df))
    assert note.startswith("customers.email: not a model feature (role pii: its name looks like an email")
    assert "data.tables.customers.roles: {email: feature}" in note
    assert "secret" not in note


def test_deterministic_and_input_untouched():
    df = _customers(who=_text(_names(N)), plan=_text(["a", "b"][i % 2] for i in range(N)))
    before = df.copy()
    a, b = decide_roles("customers", df), decide_roles("customers", df)
    assert a == b
    pd.testing.assert_frame_equal(df, before)


def test_missing_values_and_categorical_dtype():
    who = pd.Series(pd.Categorical([*_names(N // 2), *[None] * (N // 2)]))
    df = _customers(who=who, empty=_text([None] * N))
    roles = decide_roles("customers", df).roles
    assert roles["who"] == "pii" and roles["empty"] == "feature"


def test_config_settings_and_roles_for():
    cfg = config_from_mapping(
        {
            "data": {"tables": {"customers": {"roles": {"plan": "free_text"}}}},
            "features": {"pii_guard": False},
        }
    )
    df = _customers(email=_text(f"p{i}@example.com" for i in range(N)), plan=_text(["a", "b"] * (N // 2)))
    assert table_roles("customers", df, cfg).roles == {
        "customer_id": "identifier",
        "email": "feature",
        "plan": "free_text",
    }
    data = CRMData(customers=df)
    assert roles_for(data, "customers", cfg)["plan"] == "free_text"  # computed on the fly
    data.roles = {"customers": {"plan": "feature"}}
    assert roles_for(data, "customers", cfg) == {"plan": "feature"}  # stored roles win
    assert roles_for(data, "leads", cfg) == {}
    assert non_features({"a": "pii", "b": "feature"}, ["a", "b", "c"]) == {"a"}


# ----------------------------------------------------------- at validation (crmscore.ingest.validation)


def test_validation_stores_roles_and_notes_each_excluded_column():
    from crmscore.ingest.validation import validate_tables

    n = 150
    customers = pd.DataFrame(
        {
            "customer_id": [f"C{i}" for i in range(n)],
            "created_at": ["2024-01-01T00:00:00Z"] * n,
            "owner": ["Alex Meyer", "Bea Schmidt"] * (n // 2),
            "Mail": [f"secret{i}@example.com" for i in range(n)],
            "plan": ["basic", "pro", "team"] * (n // 3),
        }
    )
    tx = pd.DataFrame({"customer_id": ["C1"], "ts": ["2025-01-01T10:00:00Z"], "amount": ["1"]})
    cfg = config_from_mapping(
        {
            "data": {
                "tables": {
                    "customers": {"columns": {"email": "Mail"}, "roles": {"plan": "pii"}},
                    "transactions": {"roles": {"amount": "pii"}},
                }
            }
        }
    )
    data, report = validate_tables(
        {"customers": customers, "transactions": tx}, cfg, as_of="2025-06-30", now="2025-07-01T00:00:00Z"
    )
    assert data.roles == {
        "customers": {
            "customer_id": "identifier",
            "created_at": "feature",
            "owner": "ownership",
            "email": "pii",  # canonical name: the mapped column
            "plan": "pii",
        }
    }
    notes = [m for m in report.notes if m.startswith("customers.")]
    assert [m.split(":")[0] for m in notes] == ["customers.owner", "customers.email", "customers.plan"]
    assert "data.tables.customers.roles: {owner: feature}" in notes[0]
    assert "remove it from data.tables.customers.roles" in notes[2]
    assert any(m.startswith("data.tables.transactions.roles: ignored") for m in report.notes)
    assert "secret" not in " ".join(report.notes)
    assert report.to_dict()["notes"] == report.notes  # shown in report.json and `crmscore validate`
