"""Configuration (crmscore.config): params.yaml, unknown keys, secrets, identifiers, and the
scoring and tracking blocks."""

from __future__ import annotations

import pytest

from crmscore.config import (
    CRM_URL_ENV,
    Config,
    ConfigError,
    ScoringConfig,
    TrackingConfig,
    config_from_mapping,
    load_config,
    redact_url,
    validate_identifier,
)
from helpers import REPO_ROOT as ROOT


def test_shipped_params_load_and_match_defaults_where_documented():
    cfg = load_config(ROOT / "params.yaml")
    assert cfg.data.crm_url == "sqlite:///data/crm.sqlite"
    assert cfg.churn.definition == "inactivity"
    assert cfg.clv.horizon_months == 12
    assert set(cfg.model_fields_set) >= {"data", "generate", "features", "churn", "leads", "clv"}


def test_missing_default_file_gives_defaults_but_named_file_is_an_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_config("params.yaml") == Config()
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"data": {"bogus": 1}}, "data.bogus: unknown key"),
        ({"nonsense": {}}, "nonsense: unknown key"),
        ({"churn": {"definition": "maybe"}}, "churn.definition"),
        ({"churn": {"horizon_days": 0}}, "churn.horizon_days"),
        ({"clv": {"interval": 1.5}}, "clv.interval"),
        ({"data": {"source_timezone": "Mars/Olympus"}}, "data.source_timezone"),
        ({"data": {"db_schema": "x; drop table y"}}, "data.db_schema"),
        ({"data": {"tables": {"transactions": {"name": "orders--"}}}}, "data.tables.transactions.name"),
        ({"data": {"tables": {"invoices": {}}}}, "data.tables.invoices"),
    ],
)
def test_bad_keys_and_values_name_the_key(raw, key):
    with pytest.raises(ConfigError) as info:
        config_from_mapping(raw, "params.yaml")
    assert key in str(info.value)


def test_not_yaml_and_not_a_mapping(tmp_path):
    p = tmp_path / "p.yaml"
    p.write_text("data: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(p)
    p.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(p)


def test_password_in_params_is_refused_and_env_overrides(monkeypatch):
    with pytest.raises(ConfigError) as info:
        config_from_mapping({"data": {"crm_url": "postgresql://bob:hunter2@db/crm"}})
    assert CRM_URL_ENV in str(info.value)
    assert "hunter2" not in str(info.value)
    cfg = config_from_mapping({"data": {"crm_url": "sqlite:///x.sqlite"}})
    monkeypatch.delenv(CRM_URL_ENV, raising=False)
    assert cfg.data.resolved_crm_url() == "sqlite:///x.sqlite"
    monkeypatch.setenv(CRM_URL_ENV, "postgresql://bob:hunter2@db/crm")
    assert cfg.data.resolved_crm_url() == "postgresql://bob:hunter2@db/crm"
    assert redact_url(cfg.data.resolved_crm_url()) == "postgresql://bob:***@db/crm"


def test_config_is_frozen_and_column_maps_resolve():
    cfg = config_from_mapping(
        {"data": {"tables": {"transactions": {"name": "orders", "columns": {"ts": "InvoiceDate"}}}}}
    )
    assert cfg.data.table_name("transactions") == "orders"
    assert cfg.data.table_name("customers") == "customers"
    assert cfg.data.column_map("transactions") == {"ts": "InvoiceDate"}
    with pytest.raises(Exception):  # noqa: B017 - pydantic's frozen-instance error
        cfg.data.source = "folder"  # type: ignore[misc]


@pytest.mark.parametrize("name", ["customers", "_x1", "Orders_2024"])
def test_identifier_ok(name):
    assert validate_identifier(name) == name


@pytest.mark.parametrize("name", ["", "1abc", "a-b", 'x"; drop', "a b", "x" * 64])
def test_identifier_refused(name):
    with pytest.raises(ConfigError):
        validate_identifier(name, "t")


def test_report_top_accounts_must_be_explained() -> None:
    from crmscore.config import ConfigError, config_from_mapping

    with pytest.raises(
        ConfigError, match=r"report.top_n \(300\) must not exceed scoring.explain_top_n \(250\)"
    ):
        config_from_mapping({"report": {"top_n": 300}, "scoring": {"explain_top_n": 250}})
    assert (
        config_from_mapping({"report": {"top_n": 250}, "scoring": {"explain_top_n": 250}}).report.top_n == 250
    )


# ------------------------------------------------------- scoring and tracking blocks


def test_scoring_config_block():
    from crmscore.config import ConfigError, config_from_mapping, load_config

    params = ROOT / "params.yaml"
    assert load_config(params).scoring == ScoringConfig()  # params.yaml states the defaults
    with pytest.raises(ConfigError, match=r"scoring\.trend_trheshold: unknown key"):
        config_from_mapping({"scoring": {"trend_trheshold": 0.1}})
    with pytest.raises(ConfigError, match="health_weights"):
        config_from_mapping({"scoring": {"health_weights": {"retention": -1.0}}})
    with pytest.raises(ConfigError, match="csat_scale"):
        config_from_mapping({"scoring": {"csat_scale": [5, 1]}})


def test_explain_top_n_must_cover_the_worklist():
    from crmscore.config import ConfigError, config_from_mapping

    assert ScoringConfig().explain_top_n == 10_000
    assert ScoringConfig(explain_top_n=200, worklist_top_n=200).explain_top_n == 200
    with pytest.raises(ValueError, match=r"explain_top_n \(100\) must be at least worklist_top_n \(200\)"):
        ScoringConfig(explain_top_n=100)
    with pytest.raises(ConfigError, match=r"scoring\.explain_top_n or lower scoring\.worklist_top_n"):
        config_from_mapping({"scoring": {"explain_top_n": 50, "worklist_top_n": 60}})


def test_password_in_tracking_uri_is_refused():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="password"):
        TrackingConfig(tracking_uri="postgresql://u:secret@db/mlflow")


# -- secrets in URLs: one routine for every form -------------------------------------------

CANARY = "Canary-Secret-7731"
SECRET_URLS = [
    f"postgresql://bob:{CANARY}@db/crm",  # password in the user-info
    f"postgresql://:{CANARY}@db/crm",  # empty user
    f"postgresql://bob:p@{CANARY}@db/crm",  # raw @ in the password
    f"postgresql://bob@db/crm?password={CANARY}&sslmode=require",  # query parameter
    f"postgresql://db/crm?sslpassword={CANARY}",
    f"https://user:{CANARY}@mlflow.example:5000",
]


@pytest.mark.parametrize("url", SECRET_URLS)
def test_every_url_form_is_redacted_and_refused_in_params(url):
    from crmscore.config import url_has_secret

    assert url_has_secret(url)
    assert CANARY not in redact_url(url) and "***" in redact_url(url)
    with pytest.raises(ConfigError) as exc:
        config_from_mapping({"data": {"crm_url": url}})
    assert CANARY not in str(exc.value)
    with pytest.raises(ConfigError) as exc:
        config_from_mapping({"tracking": {"tracking_uri": url}})
    assert CANARY not in str(exc.value)


@pytest.mark.parametrize(
    "url", ["sqlite:///data/crm.sqlite", "postgresql+psycopg://bob@db:5432/crm?sslmode=require", "file:///x"]
)
def test_urls_without_secrets_are_kept_as_they_are(url):
    from crmscore.config import url_has_secret

    assert not url_has_secret(url) and redact_url(url) == url


def test_a_raw_at_sign_in_the_password_stays_in_the_password():
    from crmscore.io.crm import create_engine

    engine = create_engine(f"postgresql://bob:p@{CANARY}@db.example:5433/crm")
    assert (engine.url.host, engine.url.port, engine.url.password) == ("db.example", 5433, f"p@{CANARY}")
    assert CANARY not in repr(engine.url)
