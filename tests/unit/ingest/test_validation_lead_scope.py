"""A scoring run reads only the leads it can score (PostgreSQL), and scores exactly the same leads.

``load_validated(..., for_scoring=True)`` reads every row of the lead ids that may be open
with their conversion window running at the cutoff, and only those ids' activities; the
rows left unread are counted in the report's notes. The lead features must equal those of
a full read, duplicates of an in-scope id must be judged on all their rows, and stores
without typed timestamps (SQLite) read everything and say so.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import pandas as pd
import pytest
import sqlalchemy as sa

from crmscore.config import config_from_mapping
from crmscore.features.tables import build_lead_features
from crmscore.ingest import synth
from crmscore.ingest.validation import load_validated, score_lead_scope
from crmscore.io.crm import LeadScope, create_engine, write_sql_tables

AS_OF = date(2025, 12, 31)


def _crm() -> dict[str, pd.DataFrame]:
    """A small synthetic CRM plus two traps for the scope.

    * ``DUP``: an in-scope lead (created 10 days before the cutoff) with a second, conflicting
      row created long before: both rows must be read, so validation sets both aside;
    * ``OLD``: a lead created two years before the cutoff with an activity: not read.
    """
    tables = {k: v.copy() for k, v in synth.generate(1500, seed=11).tables.items()}
    leads, acts = tables["leads"], tables["lead_activities"]
    utc = lambda s: pd.Timestamp(s, tz="UTC")  # noqa: E731
    extra = leads.head(3).copy()
    extra["lead_id"] = ["DUP", "DUP", "OLD"]
    extra["created_at"] = [utc("2025-12-21"), utc("2023-01-05"), utc("2023-12-01")]
    extra["converted_at"] = pd.Series([pd.NaT] * 3, dtype="datetime64[us, UTC]", index=extra.index)
    extra["source"] = ["web", "event", "web"]
    tables["leads"] = pd.concat([leads, extra], ignore_index=True)
    act = acts.head(2).copy()
    act["lead_id"] = ["DUP", "OLD"]
    act["ts"] = [utc("2025-12-22"), utc("2024-01-02")]
    tables["lead_activities"] = pd.concat([acts, act], ignore_index=True)
    return tables


def _cfg(**data) -> object:
    return config_from_mapping({"data": {"source": "crm", **data}})


def _load(cfg, monkeypatch, url: str, for_scoring: bool):
    monkeypatch.setenv("CRMSCORE_CRM_URL", url)
    return load_validated(cfg, as_of=AS_OF, for_scoring=for_scoring)


@pytest.mark.postgres
def test_scoped_read_scores_the_same_leads_and_counts_what_it_left(pg_engine, pg_schema, monkeypatch):
    tables = _crm()
    write_sql_tables(pg_engine, tables, schema=pg_schema)
    cfg = _cfg(db_schema=pg_schema)
    url = pg_engine.url.render_as_string(hide_password=False)
    full, full_report = _load(cfg, monkeypatch, url, for_scoring=False)
    part, part_report = _load(cfg, monkeypatch, url, for_scoring=True)

    # far fewer rows read, every unread row counted
    assert len(part.leads) < len(full.leads) / 3
    notes = [n for n in part_report.notes if "rows read" in n]
    assert len(notes) == 2, part_report.notes
    n_read = part_report.tables["leads"].rows_in
    assert f"leads: {n_read:,} of {len(tables['leads']):,} rows read" in notes[0]
    n_acts = part_report.tables["lead_activities"].rows_in
    assert f"lead_activities: {n_acts:,} of {len(tables['lead_activities']):,} rows read" in notes[1]

    # exactly the scope: all rows of each id with an in-scope row, and only their activities
    scope = score_lead_scope(cfg, AS_OF)
    leads = tables["leads"]
    in_scope = (leads["created_at"] >= scope.created_since) & (
        leads["converted_at"].isna() | (leads["converted_at"] >= scope.open_since)
    )
    ids = set(leads.loc[in_scope, "lead_id"])
    assert n_read == int(leads["lead_id"].isin(ids).sum())
    assert n_acts == int(tables["lead_activities"]["lead_id"].isin(ids).sum())
    assert "OLD" not in set(part.leads["lead_id"])

    # the conflicting duplicate is judged on both rows, as in the full read
    for report in (full_report, part_report):
        aside = report.quarantine["leads"]
        assert (aside.loc[aside["lead_id"] == "DUP", "_reason"] == "duplicate_conflict").sum() == 2

    # the same lead features, row for row and column for column
    a = build_lead_features(part, AS_OF, cfg)
    b = build_lead_features(full, AS_OF, cfg)
    assert len(a) > 100 and a.index.equals(b.index) and list(a.columns) == list(b.columns)
    for col in a.columns:
        pd.testing.assert_series_equal(a[col].astype(object), b[col].astype(object), check_names=False)


def test_sqlite_reads_every_lead_and_says_so(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'crm.sqlite'}"
    write_sql_tables(create_engine(url), _crm())
    cfg = _cfg()
    full, _ = _load(cfg, monkeypatch, url, for_scoring=False)
    part, report = _load(cfg, monkeypatch, url, for_scoring=True)
    assert len(part.leads) == len(full.leads)
    assert any("every lead read" in n and "sqlite" in n for n in report.notes), report.notes


def test_folder_reads_every_lead_and_says_so(tmp_path):
    from crmscore.io.files import write_folder

    write_folder(_crm(), tmp_path / "crm", "parquet")
    cfg = config_from_mapping({"data": {"source": "folder", "folder": str(tmp_path / "crm")}})
    full, _ = load_validated(cfg, as_of=AS_OF)
    part, report = load_validated(cfg, as_of=AS_OF, for_scoring=True)
    assert len(part.leads) == len(full.leads)
    assert any("every lead read (files are read whole)" in n for n in report.notes), report.notes


def test_no_scope_when_every_open_lead_is_scored():
    assert score_lead_scope(config_from_mapping({"leads": {"include_stale": True}}), AS_OF) is None
    assert score_lead_scope(config_from_mapping({"leads": {"label_column": "won"}}), AS_OF) is None
    scope = score_lead_scope(config_from_mapping({"leads": {"conversion_window_days": 30}}), AS_OF)
    # cutoff end 2026-01-01; window 30 days; one day of margin on each bound
    assert scope.created_since == datetime(2025, 12, 1, tzinfo=UTC)
    assert scope.open_since == datetime(2025, 12, 31, tzinfo=UTC)


def test_scope_uses_mapped_columns_and_refuses_untyped_dates():
    md = sa.MetaData()
    leads = sa.Table(
        "leads",
        md,
        sa.Column("LeadId", sa.Text),
        sa.Column("Created", sa.DateTime(timezone=True)),
        sa.Column("Won", sa.DateTime(timezone=True)),
    )
    acts = sa.Table("acts", md, sa.Column("Lead", sa.Text), sa.Column("ts", sa.DateTime(timezone=True)))
    since = datetime(2025, 10, 1, tzinfo=UTC)
    scope = LeadScope(
        since,
        since,
        leads_columns={"lead_id": "LeadId", "created_at": "Created", "converted_at": "Won"},
        activities_columns={"lead_id": "Lead"},
    )
    statements = scope.statements(leads, acts)
    assert set(statements) == {"leads", "lead_activities"}
    assert '"Lead" IN' in str(statements["lead_activities"])
    assert "has no column" in LeadScope(since, since).statements(leads, acts)
    naive = sa.Table(
        "leads2",
        md,
        sa.Column("lead_id", sa.Text),
        sa.Column("created_at", sa.Text),
        sa.Column("converted_at", sa.DateTime(timezone=True)),
    )
    assert "not timestamp with time zone" in LeadScope(since, since).statements(naive, None)
