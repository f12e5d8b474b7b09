"""A password in the CRM URL never leaks: not to the console, the logs, the MLflow store, the
reports, the exports or the tables crmscore writes.

Canary passwords are put in every URL form crmscore must handle (a password in the user-info,
with an empty user, a ``password=`` or ``sslpassword=`` query parameter, a raw ``@`` inside the
password) and given the way credentials are meant to be given, ``CRMSCORE_CRM_URL``, to real
commands on the trained project with its CRM in PostgreSQL (trust authentication: every form
really connects, with ``PGUSER=postgres`` for the empty user); then each canary fragment is
searched for in everything the command printed and logged (``-v``: debug logging, full
tracebacks), in the MLflow store (the SQLite database's bytes, every artefact file), the reports,
the exports, the worklist and score files, and the score tables and run log in the CRM.

Also: the same URLs pointing at a closed port (the command fails, the error names the
problem, not the password), and each URL in ``params.yaml`` (refused at load, exit 2, without
echoing it). The unit-level canaries (redaction, refusal of every form) are in
tests/unit/test_config.py.
"""

from __future__ import annotations

import copy
import traceback
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
import yaml

from helpers import run_cli_captured
from projects import TrainedProject, logging_restored, own_artifacts, own_crm

HOST = "127.0.0.1:5432/test"
#: two fragments per password: a raw "@" between them must not turn the second into a host name
LEFT, RIGHT = "CanaryLeft7731", "CanaryRight7731"
FRAGMENTS = (LEFT, RIGHT, "Canary")
PASSWORD = f"{LEFT}-{RIGHT}"
URL_FORMS = {
    "userinfo": f"postgresql+psycopg://postgres:{PASSWORD}@{HOST}",
    "empty-user": f"postgresql+psycopg://:{PASSWORD}@{HOST}",
    "query-password": f"postgresql+psycopg://postgres@{HOST}?password={PASSWORD}",
    "query-sslpassword": f"postgresql+psycopg://postgres@{HOST}?sslpassword={PASSWORD}",
    "raw-at": f"postgresql+psycopg://postgres:{LEFT}@{RIGHT}@{HOST}",
}
#: each form scores its own day (its own run, written, not a replay of another form's)
SCORE_DAYS = {form: f"2025-12-{27 + i}" for i, form in enumerate(URL_FORMS)}


def assert_no_canary(content: str | bytes, where: str) -> None:
    """No fragment of the canary password in ``content``."""
    for fragment in FRAGMENTS:
        hit = fragment.encode() in content if isinstance(content, bytes) else fragment in content
        if hit:
            text = content.decode(errors="replace") if isinstance(content, bytes) else content
            i = text.find(fragment)
            raise AssertionError(f"the password leaked into {where}: …{text[max(0, i - 120) : i + 60]!r}…")


def assert_no_canary_in_folder(folder: Path, where: str) -> int:
    """No fragment in any file below ``folder`` (read as bytes); returns the number of files read."""
    files = [p for p in folder.rglob("*") if p.is_file()]
    for path in files:
        assert_no_canary(path.read_bytes(), f"{where}: {path.relative_to(folder)}")
    return len(files)


# ----------------------------------------------------------------------------- the project


@dataclass(frozen=True)
class PgProject:
    project: TrainedProject
    schema: str
    plain_url: str  #: the CRM's URL without a password (params.yaml)

    @property
    def root(self) -> Path:
        return self.project.root


@pytest.fixture(scope="module")
def pg_project(fork_trained_project, pg_engine) -> Iterator[PgProject]:
    """The trained project (own registry and artefacts) with its CRM in a PostgreSQL schema."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    plain = pg_engine.url.render_as_string(hide_password=False)
    with pg_engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        project = own_crm(own_artifacts(fork_trained_project("canary")), url=plain, schema=schema)
        yield PgProject(project, schema, plain)
    finally:
        with pg_engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))


def run_with_url(root: Path, url: str | None, *args: str, params: Path | None = None) -> tuple[int, str]:
    """``crmscore -v --params … ARGS`` in this process with ``CRMSCORE_CRM_URL=url``.

    Returns the exit code and everything shown: the CLI's consoles (the log records go there)
    and, under ``-v``, the traceback of an error as Python prints it.
    """
    with pytest.MonkeyPatch.context() as mp, logging_restored():
        mp.chdir(root)
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.setenv("PGUSER", "postgres")  # the user of the empty-user form
        if url is None:
            mp.delenv("CRMSCORE_CRM_URL", raising=False)
        else:
            mp.setenv("CRMSCORE_CRM_URL", url)
        argv = ["-v", "--params", str(params or root / "params.yaml"), *args]
        try:
            return run_cli_captured(argv, mp)
        except Exception as exc:  # -v re-raises: what the user would see is the traceback
            return 1, "".join(traceback.format_exception(exc))


def score_tables_text(pg: PgProject, engine: sa.Engine) -> str:
    """Every row of the score tables and the run log in the CRM, as CSV text."""
    from crmscore.config import config_from_mapping

    sc = config_from_mapping(pg.project.params).scoring
    insp = sa.inspect(engine)
    names = (sc.customer_scores_table, sc.customer_history_table, sc.lead_scores_table)
    names += (sc.lead_history_table, sc.runs_table)
    parts = []
    with engine.connect() as conn:
        for name in names:
            if insp.has_table(name, schema=pg.schema):
                table = sa.Table(name, sa.MetaData(), schema=pg.schema, autoload_with=conn)
                parts.append(pd.read_sql(sa.select(table), conn).to_csv(index=False))
    return "\n".join(parts)


# ------------------------------------------------------------------------------- commands


@pytest.mark.postgres
@pytest.mark.parametrize("form", list(URL_FORMS))
def test_password_in_the_environment_never_shows_in_validate_and_score(form, pg_project, pg_engine, capfd):
    url, day = URL_FORMS[form], SCORE_DAYS[form]
    code, text = run_with_url(pg_project.root, url, "validate", "--as-of", day)
    assert code == 0, text
    assert_no_canary(text, f"crmscore validate ({form})")
    out = pg_project.root / f"scores-{form}.csv"
    code, text = run_with_url(pg_project.root, url, "score", "--as-of", day, "--output", str(out))
    assert code == 0, text
    assert "written to the CRM" in text and "***" in text, text  # it logged the (redacted) target
    assert_no_canary(text, f"crmscore score ({form})")
    assert_no_canary("".join(capfd.readouterr()), "stdout/stderr")
    assert_no_canary(out.read_bytes(), "the score file")
    assert_no_canary_in_folder(pg_project.root / "reports", "the worklist")
    assert_no_canary(score_tables_text(pg_project, pg_engine), "the score tables or the run log")


@pytest.mark.postgres
@pytest.mark.parametrize("form", list(URL_FORMS))
def test_failing_connection_error_does_not_show_the_password(form, pg_project, capfd):
    """The same URL on a closed port: exit 2, the connection failure named, not the password."""
    url = URL_FORMS[form].replace("127.0.0.1:5432", "127.0.0.1:9")
    code, text = run_with_url(pg_project.root, url, "validate", "--as-of", "2025-12-31")
    assert code == 2, text
    assert "the database server 127.0.0.1:9 does not answer" in " ".join(text.split()), text
    assert_no_canary(text, f"the error of crmscore validate ({form})")
    assert_no_canary("".join(capfd.readouterr()), "stdout/stderr")


@pytest.mark.postgres
def test_password_never_reaches_the_model_store_reports_or_exports(pg_project, pg_engine, capfd):
    """train (MLflow params, tags, artefacts), report and export with every secret slot filled."""
    import sqlite3

    url = f"postgresql+psycopg://postgres:{LEFT}@{RIGHT}@{HOST}?password={LEFT}-q&sslpassword={RIGHT}-s"
    root = pg_project.root
    texts = {}
    code, texts["train"] = run_with_url(root, url, "train", "--only", "clv", "--report-json", "train.json")
    assert code == 0, texts["train"]
    code, texts["report"] = run_with_url(
        root, url, "report", "--as-of", "2025-12-31", "--train-json", "train.json",
        "--output", "report.html", "--json", "report.json",
    )  # fmt: skip
    assert code == 0, texts["report"]
    code, texts["export"] = run_with_url(root, url, "export", "--folder", str(root / "exported"))
    assert code == 0, texts["export"]
    for command, text in texts.items():
        assert_no_canary(text, f"crmscore {command}")
    assert_no_canary("".join(capfd.readouterr()), "stdout/stderr")
    # the MLflow store: the training run logged where its data came from, redacted
    db = root / "mlruns" / "mlflow.db"
    con = sqlite3.connect(db)
    try:
        (logged,) = con.execute(
            "SELECT p.value FROM params p JOIN runs r ON r.run_uuid = p.run_uuid "
            "WHERE p.key = 'data.location' ORDER BY r.start_time DESC LIMIT 1"
        ).fetchone()
    finally:
        con.close()
    assert "***" in logged and "127.0.0.1" in logged, logged  # this run's, redacted
    assert_no_canary(db.read_bytes(), "the MLflow database")
    for side in (db.with_name("mlflow.db-wal"), db.with_name("mlflow.db-journal")):
        if side.exists():
            assert_no_canary(side.read_bytes(), side.name)
    assert assert_no_canary_in_folder(root / "mlruns" / "artifacts", "the MLflow artefacts") > 0
    assert assert_no_canary_in_folder(root / "exported", "the exported models") > 0
    for name in ("train.json", "report.html", "report.json"):
        assert_no_canary((root / name).read_bytes(), name)


# ----------------------------------------------------------------------------- params.yaml


@pytest.mark.parametrize("key", ["data.crm_url", "tracking.tracking_uri"])
@pytest.mark.parametrize("form", list(URL_FORMS))
def test_password_in_params_is_refused_without_echoing_it(form, key, trained_project, tmp_path):
    params = copy.deepcopy(trained_project.params)
    block, name = key.split(".")
    params[block][name] = URL_FORMS[form]
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params), encoding="utf-8")
    code, text = run_with_url(tmp_path, None, "validate", "--as-of", "2025-12-31", params=path)
    flat = " ".join(text.split())
    assert code == 2, text
    assert key in flat and "password" in flat, flat  # the key named, and why
    assert_no_canary(text, f"the refusal of {key} ({form})")
