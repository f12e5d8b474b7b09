"""PII canaries: personal data planted in every CRM table never leaves the CRM.

A small synthetic CRM (3,000 customers, seed 5) gets unique canary values in every table:
extra columns ``email``, ``full_name``, ``phone`` and ``notes`` (free text that mixes all of
them) everywhere, and in the attribute tables (customers, leads) also columns the guard can
only judge by their values (``secondary``: emails, ``who``: person names, ``ref``: near-unique
codes). The synthetic tables have no free-text column of their own (activity types, products,
priorities and channels are categories), so ``notes`` is the free-text column.

The whole job then runs through the CLI (``validate``, ``train``, ``score --output``,
``export``, ``report``) and no canary may appear in any byte of the MLflow store (its SQLite
database: params, tags, metrics, model versions; every artefact), the export folder, the
report HTML and JSON, the training summary, the score output and worklist, or the console
output. Only the CRM database itself (which holds the canaries and receives the scores) and the
quarantine folder (raw rows set aside, by design a copy of the input) are not scanned.
"""

from __future__ import annotations

import json
import uuid
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from helpers import run_cli_captured

AS_OF = date(2025, 12, 31)
#: few, small trees, as tests/integration/conftest.py's FAST: plumbing, not model quality
FAST = {"n_estimators": 40, "num_leaves": 7, "n_jobs": 1, "min_rows": 200, "min_positives": 30}

#: planted emails and codes start with "canary-", names end in one of _LAST (case-insensitive)
MARKER = b"canary-"
#: every planted phone number starts with this (also searched without spaces)
PHONE = "+49 170 555"
PLANTED = ("email", "full_name", "phone", "notes")
BY_VALUE = ("secondary", "who", "ref")  # attribute tables only: names that say nothing
_SYL = ("zyx", "qor", "vel", "mab", "tun", "kes", "dro", "lim", "fap", "wen", "sut", "gro", "hib")
_LAST = ("Canarysson", "Canaryberg", "Canarystein", "Canaryfield", "Canarywood")


def _canaries(n: int, rng: np.random.Generator) -> dict[str, list[str]]:
    emails = [f"canary-{uuid.UUID(bytes=rng.bytes(16))}@example.com" for _ in range(n)]
    k = len(_SYL)
    names = [
        f"{(_SYL[i % k] + _SYL[(i // k) % k]).capitalize()} {_LAST[(i // k // k) % len(_LAST)]}"
        for i in range(n)
    ]
    names[0] = "Zyx Canarysson"
    phones = [f"{PHONE}{i % 10_000:04d}" for i in range(n)]
    notes = [
        f"Spoke with {names[i]} on the phone, call back on {phones[i]} or write to {emails[i]} (case {i})"
        for i in range(n)
    ]
    return {"email": emails, "full_name": names, "phone": phones, "notes": notes}


def _plant(tables: dict[str, pd.DataFrame], seed: int = 7) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    out = {}
    for name, df in tables.items():
        c = _canaries(len(df), rng)
        extra = {col: c[col] for col in PLANTED}
        if name in ("customers", "leads"):
            extra["secondary"] = _canaries(len(df), rng)["email"]
            extra["who"] = list(reversed(c["full_name"]))
            extra["ref"] = [f"canary-ref-{i:06d}" for i in range(len(df))]
        out[name] = df.assign(**{k: pd.array(v, dtype="str") for k, v in extra.items()})
    return out


def _leaks(data: bytes) -> list[str]:
    low = data.lower()
    markers = (MARKER, *(n.lower().encode() for n in _LAST), PHONE.encode(), PHONE.replace(" ", "").encode())
    return [m.decode() for m in markers if m in low]


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    from crmscore.ingest import synth
    from crmscore.io.crm import create_engine, write_sql_tables

    root = tmp_path_factory.mktemp("pii")
    tables = _plant(synth.generate(3000, seed=5).tables)
    engine = create_engine(f"sqlite:///{root / 'crm.sqlite'}")
    write_sql_tables(engine, tables)
    engine.dispose()
    params = {
        "data": {"crm_url": f"sqlite:///{root / 'crm.sqlite'}", "quarantine": {"folder": str(root / "q")}},
        "churn": FAST,
        "leads": FAST,
        "clv": {"n_bootstrap": 20},
        "training": {"as_of": AS_OF.isoformat()},
        "tracking": {
            "tracking_uri": f"sqlite:///{root}/mlruns/mlflow.db",
            "artifact_location": str(root / "mlruns" / "artifacts"),
            "export_dir": str(root / "models"),
        },
        "report": {
            "html_path": str(root / "reports" / "report.html"),
            "json_path": str(root / "reports" / "r.json"),
        },
    }
    (root / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    return root


def _run(root: Path, monkeypatch: pytest.MonkeyPatch, *args: str) -> str:
    code, text = run_cli_captured(["--params", str(root / "params.yaml"), *args], monkeypatch)
    assert code == 0, text
    return text


def test_no_canary_leaves_the_crm(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = project
    monkeypatch.chdir(root)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("CRMSCORE_CRM_URL", raising=False)
    day = AS_OF.isoformat()
    assert {"canary-", "canarysson", PHONE} <= set(_leaks((root / "crm.sqlite").read_bytes()))  # found there

    score_out = ("--output", str(root / "scores.csv"), "--worklist-dir", str(root / "worklist"))
    validated = _run(root, monkeypatch, "validate", "--as-of", day, "--json", str(root / "validation.json"))
    notes = json.loads((root / "validation.json").read_text())["notes"]
    assert json.loads((root / "q" / "report.json").read_text())["notes"] == notes  # the quarantine report
    consoles = {
        "train": _run(root, monkeypatch, "train", "--report-json", str(root / "train.json")),
        "score": _run(root, monkeypatch, "score", "--as-of", day, *score_out),
        "export": _run(root, monkeypatch, "export"),
        "report": _run(root, monkeypatch, "report", "--as-of", day, "--train-json", str(root / "train.json")),
    }

    # the validation notes name every planted column of the attribute tables (nothing of the others
    # reaches the data: their columns outside the contract are dropped)
    for table in ("customers", "leads"):
        for col in (*PLANTED, *BY_VALUE):
            assert any(n.startswith(f"{table}.{col}: not a model feature (role ") for n in notes), (
                table,
                col,
            )
    assert any(n.startswith("customers.owner: not a model feature (role ownership") for n in notes)
    assert "customers.email: not a model feature" in validated

    # every model trained
    train = json.loads((root / "train.json").read_text())
    assert {k: m["status"] for k, m in train["models"].items()} == {
        **dict.fromkeys(("churn", "leads", "clv"), "trained"),
        "clv_contractual": "skipped",  # clv.kind auto with transactions: the transactional CLV
    }

    # the exported models' inputs: real attributes in, planted columns and the owner out
    for kind, kept in (("churn", "plan"), ("leads", "source")):
        features = set(json.loads(next((root / "models" / kind).rglob("model.json")).read_text())["features"])
        assert kept in features and not {*PLANTED, *BY_VALUE, "owner"} & features, kind

    # no canary in any file written by the job or in any console output
    scanned = [
        p for p in root.rglob("*")
        if p.is_file() and p.name != "crm.sqlite" and "q" not in p.relative_to(root).parts[:1]
    ]  # fmt: skip
    assert any(p.name == "mlflow.db" for p in scanned) and any("artifacts" in p.parts for p in scanned)
    assert any(p.suffix == ".txt" for p in (root / "models").rglob("*"))  # the exported boosters
    for folder in ("models", "worklist", "reports"):
        assert any((root / folder).rglob("*.*")), folder
    leaks = {str(p.relative_to(root)): found for p in scanned if (found := _leaks(p.read_bytes()))}
    assert not leaks, leaks
    for what, text in consoles.items():
        assert not _leaks(text.encode()), what

    # the worklist shows ids, the owner (the rep: kept for the worklist, never a feature), scores
    # and reasons over real features; the score output ids, scores and reasons (scanned above)
    from crmscore.ingest.simulate import OWNERS

    worklist = pd.read_csv(root / "worklist" / "worklist.csv")
    assert {"customer_id", "owner", "reasons"} <= set(worklist.columns)
    assert set(worklist["owner"].dropna()) <= set(OWNERS) and worklist["owner"].notna().any()
    assert len(pd.read_csv(root / "scores.csv")) == 3000
