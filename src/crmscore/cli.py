"""The ``crmscore`` command line.

Each command parses its options, loads ``params.yaml`` once and calls one pipeline
function. Exit codes (README.md, "Exit codes"): 0 ok, 1 failure, 2 usage or configuration
error, 3 unusable data, 4 refused by an input guard (``score``; ``--force``), 130 interrupted
(SIGINT: nothing of the run committed).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import pandas as pd
import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from crmscore import __version__
from crmscore.config import Config, ConfigError, load_config, redact_url
from crmscore.core.progress import stage
from crmscore.core.schema import CRMData
from crmscore.estimators.specs import SPECS
from crmscore.pipelines.validate import run_validate

__all__ = ["app", "main"]

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INVALID_DATA, EXIT_REFUSED = 0, 1, 2, 3, 4
EXIT_INTERRUPTED = 130  # SIGINT (Ctrl-C), as shells report it: nothing of the run is committed
EXIT_TERMINATED = 143  # SIGTERM (a scheduler stopping the job): the same clean stop as SIGINT
KIND_LIST = ", ".join(SPECS)
#: Smallest synthetic CRM on which the demo's churn model passes its gates with the default
#: params (measured: 1,500 customers fail churn.min_positives, 2,000 pass; kept with a margin),
#: and the size from which the lead model has its leads.min_positives conversions too.
DEMO_MIN_CUSTOMERS = 3_000
DEMO_ALL_KINDS_CUSTOMERS = 12_000

log = logging.getLogger("crmscore")
out = Console()
err = Console(stderr=True)

app = typer.Typer(
    name="crmscore",
    help=(
        "Score customers and leads from CRM data: churn, lead conversion and lifetime value.\n\n"
        "Exit codes: 0 ok, 1 failure, 2 usage or configuration error, 3 unusable data, "
        "4 refused by an input guard (score --force), 130 interrupted, 143 terminated (nothing committed)."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class _State:
    params: Path = Path("params.yaml")
    verbose: bool = False
    terminated: bool = False  # SIGTERM received (exit 143 instead of 130)


_state = _State()

FolderOption = Annotated[
    Path | None, typer.Option(help="Read this folder of CSV/Parquet files instead of the configured source.")
]


class Sink(StrEnum):
    crm = "crm"
    folder = "folder"


class FileFormat(StrEnum):
    parquet = "parquet"
    csv = "csv"


def _setup_logging(verbose: bool, quiet: bool) -> None:
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    handler = RichHandler(console=err, show_path=False, show_time=False, markup=False)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("crmscore").setLevel(level)


def _fail(message: str, code: int) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def _config() -> Config:
    try:
        return load_config(_state.params)
    except ConfigError as exc:
        _fail(str(exc), EXIT_USAGE)


def _parse_day(value: str | None, option: str) -> date | None:
    """The day of an ISO ``YYYY-MM-DD`` option value; anything else is a usage error (exit 2).

    Only ISO is accepted, so ``01-02-1998`` is refused instead of silently becoming a day
    of either order.
    """
    if value is None:
        return None
    import re

    from crmscore.core.time import as_of_day

    text = value.strip()
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        raise typer.BadParameter(
            f"{value!r} is not an ISO day: expected YYYY-MM-DD (e.g. 2025-06-30)", param_hint=option
        )
    try:
        return as_of_day(text).date()
    except ValueError as exc:
        raise typer.BadParameter(f"{exc}: a real day is needed, e.g. 2025-06-30", param_hint=option) from None


def _version(value: bool) -> None:
    if value:
        out.print(f"crmscore {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    params: Annotated[
        Path,
        typer.Option("--params", "-p", help="The params.yaml to use (defaults apply when it is absent)."),
    ] = Path("params.yaml"),
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Debug logging and full tracebacks.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only warnings and errors.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Score customers and leads from CRM data."""
    _state.params = params
    _state.verbose = verbose
    _setup_logging(verbose, quiet)


# --------------------------------------------------------------------------- init & config

#: rows read from each file by ``crmscore init`` to detect date layouts, labels and currency
INIT_SAMPLE_ROWS = 2_000
_INIT_SUFFIXES = (".csv", ".csv.gz", ".parquet", ".pq")


def _sample_files(folder: Path) -> tuple[list[Any], list[str]]:
    """A :class:`~crmscore.ingest.mapping.FileSample` of each CSV/Parquet file in ``folder``.

    Returns the samples and one line per file that could not be read (or is not CSV/Parquet).
    """
    from crmscore.ingest.mapping import FileSample
    from crmscore.io.files import find_table_file

    samples, problems = [], []
    for path in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")):
        suffix = next((s for s in _INIT_SUFFIXES if path.name.lower().endswith(s)), None)
        if suffix is None:
            problems.append(f"{path.name}: not a CSV or Parquet file (skipped)")
            continue
        stem = path.name[: -len(suffix)]
        try:
            find_table_file(folder, stem)  # a table in both CSV and Parquet is ambiguous
            if suffix in (".parquet", ".pq"):
                import pyarrow.parquet as pq

                pf = pq.ParquetFile(path)
                rows = next(pf.iter_batches(batch_size=INIT_SAMPLE_ROWS), None)
                frame = rows.to_pandas() if rows is not None else pf.schema_arrow.empty_table().to_pandas()
            else:
                frame = pd.read_csv(
                    path, dtype=str, keep_default_na=False, na_values=[""], nrows=INIT_SAMPLE_ROWS
                )
        except Exception as exc:
            problems.append(f"{path.name}: cannot read ({exc})")
            continue
        samples.append(FileSample(stem, tuple(str(c) for c in frame.columns), frame, path.name))
    return samples, problems


#: tables whose columns outside the contract are kept as attributes (core.schema keeps_extra)
_KEEPS_EXTRA = ("customers", "leads")
#: plain scalars YAML 1.1 reads as booleans or null
_YAML_WORDS = ("yes", "no", "true", "false", "on", "off", "null", "y", "n")


def _yaml_scalar(value: Any) -> str:
    """A YAML scalar (JSON is YAML): names with spaces, colons or '#' stay one value."""
    import re

    plain = isinstance(value, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value) is not None
    if plain and value.lower() not in _YAML_WORDS:
        return value
    return json.dumps(value, ensure_ascii=False)


def _init_yaml(proposal: Any, folder: Path, output: Path, formats_supported: bool) -> str:
    """The commented ``params.yaml`` of a :class:`~crmscore.ingest.mapping.Proposal`."""
    from crmscore.config import validate_identifier

    lines = [
        f"# Proposed by 'crmscore init --folder {folder}' (crmscore {__version__}).",
        "# Check every mapping below against your export (lines marked CHECK or MISSING first), then run:",
        f"#   crmscore --params {output} validate --as-of YYYY-MM-DD",
        f"# Keys not written here take their defaults: 'crmscore --params {output} config' shows them all.",
        "data:",
        "  source: folder",
        f"  folder: {_yaml_scalar(str(folder))}",
    ]
    needs_tz = proposal.needs_timezone
    if not formats_supported:
        needs_tz = needs_tz or any(
            f is not None and not f.iso for p in proposal.tables.values() for f in p.date_formats.values()
        )
    if needs_tz:
        lines.append("  source_timezone: UTC   # CHECK: the times carry no UTC offset: your CRM's time zone")
    lines.append(f"  required_tables: [{', '.join(proposal.required_tables)}]")
    lines.append("  tables:" if proposal.tables else "  tables: {}")
    for table, p in proposal.tables.items():
        lines.append(f"    {table}:   # from {p.file}")
        if p.source != table:
            try:
                validate_identifier(p.source)
                lines.append(f"      name: {_yaml_scalar(p.source)}")
            except ValueError:
                lines.append(
                    f"      # name: {p.source!r} is not a valid table name: rename {p.file} to {table}"
                    f"{p.file[len(p.source) :]}"
                )
        lines.append("      columns:" if p.columns else "      columns: {}")
        for canonical, source in p.columns.items():
            note = ""
            fmt = p.date_formats.get(canonical)
            if fmt is not None and not fmt.iso:
                note = f"   # dates like {fmt.example!r}: {fmt.format}"
                if fmt.ambiguous:
                    note += " (CHECK: no value told day from month)"
            lines.append(f"        {canonical}: {_yaml_scalar(source)}{note}")
        non_iso = {c: f for c, f in p.date_formats.items() if f is not None and not f.iso}
        if non_iso and formats_supported:
            lines.append("      formats:")
            lines.extend(f"        {c}: {_yaml_scalar(f.format)}" for c, f in non_iso.items())
        elif non_iso:
            for c, f in non_iso.items():
                lines.append(f"      # {c} is written {f.format}: convert it to ISO 8601 (YYYY-MM-DD)")
        for col in p.missing:
            lines.append(f"      # MISSING: required column {col}: map it here ({col}: <your column>)")
        for hint in p.hints:
            lines.append(f"      # {hint}")
        if p.unmapped:
            kept = "kept as attributes" if table in _KEEPS_EXTRA else "ignored"
            lines.append(f"      # not mapped ({kept}): {', '.join(p.unmapped)}")
    if proposal.unassigned:
        lines.append(f"  # files that hold no table crmscore knows: {', '.join(proposal.unassigned)}")
    lines += ["training:", f"  models: [{', '.join(proposal.models)}]"]
    for kind, note in proposal.model_notes.items():
        lines.append(f"  # {kind}: {note}")
    if proposal.churn_definition != "inactivity" or proposal.churn_label:
        lines += ["churn:", f"  definition: {proposal.churn_definition}"]
        if proposal.churn_label:
            lines.append(f"  label_column: {_yaml_scalar(proposal.churn_label)}")
    if proposal.leads_label:
        lines += ["leads:", f"  label_column: {_yaml_scalar(proposal.leads_label)}"]
    lines.append("report:")
    if proposal.currency:
        lines.append(f"  currency: {_yaml_scalar(proposal.currency)}   # {proposal.currency_evidence}")
    else:
        lines.append(f"  currency: EUR   # CHECK: {proposal.currency_evidence}; the default EUR was written")
    return "\n".join(lines) + "\n"


def _say(line: str) -> None:
    """One plain line on stdout (no markup, no wrapping: paths and column names as written)."""
    out.print(line, highlight=False, markup=False, soft_wrap=True)


@app.command()
def init(
    folder: Annotated[Path, typer.Option("--folder", help="Folder of the CSV/Parquet export to map.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="The params file to write.")] = (
        Path("params.yaml")
    ),
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing --output file.")] = False,
) -> None:
    """Propose a params.yaml for a folder of CSV/Parquet files (your own CRM export).

    Reads the header and the first rows of each file, maps the files to the
    tables (customers, transactions, leads ...) and their columns to the
    canonical names (case-insensitive, with common synonyms such as
    CustomerID, InvoiceDate, Total), detects date layouts, the currency and
    the model kinds the data supports, writes a commented params file to
    check, and prints what it found and what it could not map.

    Exit codes: 0 written (check the lines marked CHECK or MISSING); 1 failure;
    2 usage error (no such folder, --output exists without --force, or the
    result is not a valid params file); 3 no file holds a table crmscore knows.
    """
    import yaml

    from crmscore.config import TableConfig, config_from_mapping
    from crmscore.ingest.mapping import propose

    if not folder.is_dir():
        _fail(f"--folder {folder}: no such folder", EXIT_USAGE)
    if output.exists() and not force:
        _fail(f"{output} exists: give --force to overwrite it, or --output another file", EXIT_USAGE)
    samples, problems = _sample_files(folder)
    proposal = propose(samples)
    for line in problems:
        _say(f"skipped: {line}")
    if not proposal.tables:
        _fail(
            f"no file in {folder} holds a table crmscore knows (customers, transactions, leads, ...): "
            "see docs/own-crm.md",
            EXIT_INVALID_DATA,
        )
    text = _init_yaml(proposal, folder, output, "formats" in TableConfig.model_fields)
    try:
        config_from_mapping(yaml.safe_load(text), str(output))
    except ConfigError as exc:  # a column or file name the config refuses: say it, write nothing
        _fail(f"the proposed params are not valid, nothing written:\n{exc}", EXIT_USAGE)
    _say(f"mapping proposed for {folder}:")
    for table, p in proposal.tables.items():
        cols = ", ".join(f"{c}={s}" for c, s in p.columns.items())
        _say(f"  {table} <- {p.file}: {cols}")
        if p.unmapped:
            kept = "kept as attributes" if table in _KEEPS_EXTRA else "ignored"
            _say(f"    not mapped ({kept}): {', '.join(p.unmapped)}")
    for table, p in proposal.tables.items():
        for col, fmt in p.date_formats.items():
            if fmt is not None and (not fmt.iso or fmt.ambiguous):
                _say(f"dates: {table}.{col} read as {fmt.format} (e.g. {fmt.example})")
        for hint in p.hints:
            _say(f"hint: {table}: {hint}")
    for name in proposal.unassigned:
        _say(f"not mapped: {name} holds no table crmscore knows")
    currency = proposal.currency or "unknown (EUR written)"
    _say(f"currency: {currency} ({proposal.currency_evidence})")
    models = ", ".join(proposal.models) or "none"
    _say(f"models the data supports: {models}")
    for warning in proposal.warnings:
        _say(f"check: {warning}")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")
    nxt = f"crmscore --params {output} validate --as-of YYYY-MM-DD"
    _say(f"wrote {output}: check it, then run: {nxt}")


def resolved_config(cfg: Config) -> dict[str, Any]:
    """Every block of ``cfg`` with its defaults, as plain values, secrets masked.

    The CRM URL is the one in effect (``CRMSCORE_CRM_URL`` over ``params.yaml``) and the MLflow
    tracking URI too (``MLFLOW_TRACKING_URI`` over ``tracking.tracking_uri``), both through
    :func:`crmscore.config.redact_url`.
    """
    resolved = cfg.model_dump(mode="json")
    resolved["data"]["crm_url"] = redact_url(cfg.data.resolved_crm_url())
    tracking = os.environ.get("MLFLOW_TRACKING_URI") or cfg.tracking.tracking_uri
    resolved["tracking"]["tracking_uri"] = redact_url(tracking)
    if resolved["tracking"].get("registry_uri"):
        resolved["tracking"]["registry_uri"] = redact_url(resolved["tracking"]["registry_uri"])
    return resolved


@app.command("config")
def show_config() -> None:
    """Print the resolved configuration as YAML: every block with its defaults, secrets masked.

    The CRM URL shown is the one in effect (the environment variable
    CRMSCORE_CRM_URL wins over data.crm_url), with its password replaced by ***.

    Exit codes: 0 ok; 2 configuration error (the params file names the bad key).
    """
    import yaml

    from crmscore.config import CRM_URL_ENV

    cfg = _config()
    source = "the defaults" if not _state.params.exists() else str(_state.params)
    header = [f"# resolved configuration from {source}"]
    if os.environ.get(CRM_URL_ENV):
        header.append(f"# data.crm_url from the environment ({CRM_URL_ENV}), password masked")
    text = yaml.safe_dump(resolved_config(cfg), sort_keys=False, allow_unicode=True)
    out.print("\n".join(header) + "\n" + text, highlight=False, markup=False, soft_wrap=True, end="")


# --------------------------------------------------------------------------- generate


@app.command()
def generate(
    customers: Annotated[
        int | None,
        typer.Option("--customers", "-n", min=1, help="Number of customers (default: generate.customers)."),
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (default: generate.seed).")] = None,
    to: Annotated[
        Sink, typer.Option("--to", help="Write into the CRM store (data.crm_url) or a folder.")
    ] = Sink.crm,
    folder: Annotated[
        Path | None, typer.Option(help="Folder to write with --to folder (default: data.folder).")
    ] = None,
    file_format: Annotated[FileFormat, typer.Option("--format", help="File format with --to folder.")] = (
        FileFormat.parquet
    ),
    truth_dir: Annotated[
        Path | None, typer.Option(help="Where the true parameters go (default: next to the data).")
    ] = None,
) -> None:
    """Generate a seeded synthetic CRM with known ground truth."""
    from crmscore.pipelines.generate import run_generate

    cfg = _config()
    counts = run_generate(
        cfg,
        customers or cfg.generate.customers,
        cfg.generate.seed if seed is None else seed,
        to.value,
        folder or cfg.data.folder,
        file_format.value,
        truth_dir,
    )
    table = Table(title="generated", show_edge=False)
    table.add_column("table")
    table.add_column("rows", justify="right")
    for name, n in counts.items():
        table.add_row(name, f"{n:,}")
    out.print(table)


# --------------------------------------------------------------------------- validate


def _print_report(report) -> None:
    table = Table(title=f"validation as of {report.as_of.date()}", show_edge=False)
    for col, justify in (
        ("table", "left"),
        ("rows in", "right"),
        ("kept", "right"),
        ("set aside", "right"),
        ("reasons", "left"),
    ):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for name, t in report.tables.items():
        reasons = ", ".join(f"{k} {v:,}" for k, v in sorted(t.set_aside.items()))
        table.add_row(name, f"{t.rows_in:,}", f"{t.rows_kept:,}", f"{t.rows_set_aside:,}", reasons)
    out.print(table)
    for note in report.notes:
        out.print(f"note: {note}", highlight=False)
    for problem in report.problems:
        out.print(f"[bold red]problem:[/] {problem}", highlight=False)
    if report.usable and not report.rows_set_aside:
        out.print("[green]no problem found[/]")
    elif report.usable:
        out.print(f"[yellow]usable; {report.rows_set_aside:,} rows set aside (see the quarantine folder)[/]")
    else:
        out.print("[bold red]the data is unusable[/]")


def _validated(cfg: Config, day: date, *, for_scoring: bool = False):
    """Read and validate as of ``day``; print the report and exit 3 when unusable."""
    try:
        data, rep = run_validate(cfg, day, cfg.data.quarantine.folder, for_scoring=for_scoring)
    except FileNotFoundError as exc:
        _fail(str(exc), EXIT_INVALID_DATA)
    if not rep.usable:
        _print_report(rep)
        raise typer.Exit(EXIT_INVALID_DATA)
    for warning in getattr(rep, "cutoff_warnings", ()):  # after today or after the newest data
        out.print(f"[yellow]note:[/] {warning}", highlight=False)
    return data, rep


def _source_option_overrides(cfg: Config, folder: Path | None) -> Config:
    if folder is None:
        return cfg
    data = cfg.data.model_copy(update={"source": "folder", "folder": folder})
    return cfg.model_copy(update={"data": data})


@app.command()
def validate(
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of", help="Cutoff day YYYY-MM-DD; rows after it are set aside (default: today, UTC)."
        ),
    ] = None,
    folder: Annotated[
        Path | None,
        typer.Option(help="Validate this folder of CSV/Parquet files instead of the configured source."),
    ] = None,
    quarantine_dir: Annotated[
        Path | None, typer.Option(help="Where rows set aside are written (default: data.quarantine.folder).")
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the report as JSON here.")
    ] = None,
) -> None:
    """Check the CRM data against the data contract and report every problem at once.

    Exit codes: 0 the data is usable (rows set aside are counted, with their
    reason, in the quarantine folder); 1 failure; 2 usage or configuration error
    (also a CRM database that cannot be reached: driver, server, login, database);
    3 unusable data (a required table missing, empty or unreadable, a required
    column missing, a column name twice ..., or the SQLite file, data folder or
    data.db_schema not found).
    """
    cfg = _source_option_overrides(_config(), folder)
    day = _parse_day(as_of, "--as-of")
    try:
        _, report = run_validate(cfg, day, quarantine_dir or cfg.data.quarantine.folder)
    except FileNotFoundError as exc:
        _fail(str(exc), EXIT_INVALID_DATA)
    _print_report(report)
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(report.to_dict(), indent=2), encoding="utf-8")
    if not report.usable:
        raise typer.Exit(EXIT_INVALID_DATA)


# --------------------------------------------------------------------------- features


def run_features(cfg: Config, as_of: date, output: Path, data: CRMData | None = None) -> pd.DataFrame:
    """Build the feature table as of ``as_of`` and write it to ``output``.

    ``data`` is already-validated CRM data; when absent the configured source is read and
    validated as of ``as_of`` first.
    """
    from crmscore.pipelines.features import run_features as build_and_write

    if data is None:
        data, _ = _validated(cfg, as_of)
    return build_and_write(cfg, as_of, output, data)


@app.command()
def features(
    output: Annotated[
        Path, typer.Option("--output", "-o", help="CSV or Parquet file to write (by extension).")
    ],
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="Cutoff day YYYY-MM-DD (default: features.as_of in params).")
    ] = None,
    folder: FolderOption = None,
) -> None:
    """Write the point-in-time feature table (one row per customer) for a cutoff day.

    Exit codes: 0 ok; 1 failure; 2 usage or configuration error; 3 unusable data.
    """
    cfg = _source_option_overrides(_config(), folder)
    day = _parse_day(as_of, "--as-of") or cfg.features.as_of
    if day is None:
        _fail("give --as-of or set features.as_of in params.yaml", EXIT_USAGE)
    table = run_features(cfg, day, output)
    out.print(f"{len(table):,} customers × {table.shape[1]} columns written to {output}")


# --------------------------------------------------------------------------- train & registry


def _print_train_result(result) -> None:
    table = Table(title=f"training as of {result.as_of}", show_edge=False)
    for col, justify in (
        ("model", "left"),
        ("v", "right"),
        ("metric", "left"),
        ("value", "right"),
        ("baseline", "right"),
        ("champion", "right"),
        ("promoted", "left"),
        ("why", "left"),
    ):
        table.add_column(col, justify=justify, overflow="fold")  # type: ignore[arg-type]

    def num(v: float | None) -> str:
        return "—" if v is None else f"{v:.4f}"

    notes = []
    for kind, m in result.models.items():
        if m.status != "trained":
            status = "[red]failed[/]" if m.status == "failed" else "[yellow]skipped[/]"
            table.add_row(kind, "—", m.metric or "—", "—", "—", "—", status, m.reason)
            continue
        champ = f"{num(m.champion_value)} v{m.champion_version}" if m.champion_version else "—"
        promoted = "[green]yes[/]" if m.promoted else "[yellow]no[/]"
        table.add_row(
            kind,
            str(m.version),
            m.metric,
            num(m.value),
            num(m.baseline_value),
            champ,
            promoted,
            m.promotion_reason,
        )
        if m.baseline:
            notes.append(f"{kind}: {m.baseline}")
    out.print(table)
    if notes:
        out.print("best baselines — " + "; ".join(notes), highlight=False)
    out.print(f"parent run {result.parent_run_id} at {redact_url(result.tracking_uri)}", highlight=False)


def _parse_only(only: str) -> list[str]:
    kinds = [k.strip() for k in only.split(",") if k.strip()]
    bad = [k for k in kinds if k not in SPECS]
    if bad or not kinds:
        raise typer.BadParameter(f"unknown model(s) {bad}: choose from {KIND_LIST}", param_hint="--only")
    return kinds


@app.command()
def train(
    as_of: Annotated[
        str | None,
        typer.Option("--as-of", help="Training cutoff day YYYY-MM-DD (default: training.as_of in params)."),
    ] = None,
    only: Annotated[
        str | None, typer.Option("--only", help=f"Comma-separated subset of {KIND_LIST}.")
    ] = None,
    report_json: Annotated[
        Path | None, typer.Option("--report-json", help="Also write the training summary as JSON here.")
    ] = None,
) -> None:
    """Retrain the models the data supports, track them in MLflow, register them.

    Every model kind is optional: one whose tables are absent is skipped,
    one that fails a data gate is failed (the reason is printed), and the
    others still train. A new version gets the alias @challenger and becomes
    @champion only through the metric gate in training.promotion.

    Exit codes: 0 when at least one kind trained and every kind asked for
    explicitly (--only, training.required) trained; 1 otherwise; 2 usage or
    configuration error; 3 unusable data.
    """
    cfg = _config()
    day = _parse_day(as_of, "--as-of") or cfg.training.as_of
    if day is None:
        _fail("give --as-of or set training.as_of in params.yaml (crmscore never assumes 'now')", EXIT_USAGE)
    kinds = None if only is None else _parse_only(only)
    from crmscore.pipelines.train import train_models

    data, rep = _validated(cfg, day)
    result = train_models(cfg, day, only=kinds, data=data, report=rep)
    _print_train_result(result)
    if report_json is not None:
        report_json.parent.mkdir(parents=True, exist_ok=True)
        report_json.write_text(json.dumps(result.to_dict(), indent=2), encoding="utf-8")
    if not result.ok:
        _fail("; ".join(result.problems), EXIT_FAILURE)


#: The model kinds, for the arguments (one per spec).
ModelKind = StrEnum("ModelKind", {k: k for k in SPECS})  # type: ignore[misc]


@app.command()
def promote(
    model: Annotated[ModelKind, typer.Argument(help=f"Which model: {KIND_LIST}.")],
    version: Annotated[
        int | None, typer.Option("--version", help="Version to promote (default: the @challenger).")
    ] = None,
) -> None:
    """Move the @champion alias to a version by hand (recorded in the registry's history tag)."""
    cfg = _config()
    from crmscore.tracking import CHALLENGER, TrackingSession

    name = SPECS[model.value].registered_name(cfg)
    with TrackingSession(cfg.tracking, must_exist=True) as ts:
        if version is None:
            try:
                version = int(ts.client.get_model_version_by_alias(name, CHALLENGER).version)
            except Exception:
                _fail(f"{name} has no @{CHALLENGER}: give --version", EXIT_FAILURE)
        before = ts.champion(name)
        try:
            ts.promote(name, version, "promoted by hand (crmscore promote)")
        except ValueError as exc:  # no such version: the message lists those that exist
            _fail(str(exc), EXIT_FAILURE)
    out.print(f"{name}: @champion v{before if before is not None else '—'} → v{version}", highlight=False)


@app.command()
def rollback(
    model: Annotated[ModelKind, typer.Argument(help=f"Which model: {KIND_LIST}.")],
) -> None:
    """Move @champion back to the previous champion version (recorded in a tag)."""
    cfg = _config()
    from crmscore.tracking import TrackingSession
    from crmscore.tracking import rollback as _rollback

    name = SPECS[model.value].registered_name(cfg)
    with TrackingSession(cfg.tracking, must_exist=True) as ts:
        try:
            before, after = _rollback(ts.client, name)
        except ValueError as exc:
            _fail(str(exc), EXIT_FAILURE)
    out.print(f"{name}: @champion v{before} → v{after}", highlight=False)


@app.command()
def export(
    folder: Annotated[
        Path | None, typer.Option("--folder", help="Where to write (default: tracking.export_dir).")
    ] = None,
    only: Annotated[
        str | None, typer.Option("--only", help=f"Comma-separated subset of {KIND_LIST}.")
    ] = None,
) -> None:
    """Write the @champion models as self-contained MLflow model folders for offline scoring."""
    cfg = _config()
    from crmscore.tracking import TrackingSession, export_champions

    kinds = _parse_only(only) if only else list(SPECS)
    names = {k: SPECS[k].registered_name(cfg) for k in kinds}
    target = folder or cfg.tracking.export_dir
    with TrackingSession(cfg.tracking, must_exist=True) as ts, stage(f"exporting champions to {target}"):
        written = export_champions(ts, names, target)
    for kind, path in written.items():
        out.print(f"{kind}: {path}", highlight=False)
    missing = sorted(set(kinds) - set(written))
    if not written or (only and missing):
        _fail(f"no @champion for {', '.join(missing)}: run 'crmscore train' first", EXIT_FAILURE)
    for kind in missing:
        out.print(f"{kind}: no @champion, not exported", highlight=False)


def run_score_command(
    cfg: Config,
    day: date,
    data: CRMData,
    output: Path | None,
    worklist_dir: Path | None,
    write_back: bool,
    report: Any = None,
    force: bool = False,
) -> None:
    """Score, write back, print a summary (shared by ``score`` and ``demo``)."""
    from crmscore.core.manifest import ArtifactIntegrityError
    from crmscore.core.score_contract import InputGuardError, LockTimeoutError, ScoreValidationError
    from crmscore.io.score_lock import WriterSessionTimeoutError
    from crmscore.pipelines.score import NoChampionError, run_score

    digest = getattr(report, "input_digest", None) or None
    try:
        run = run_score(
            data,
            day,
            cfg,
            output=output,
            worklist_dir=worklist_dir,
            write_back=write_back,
            input_digest=digest,
            force=force,
        )
    except InputGuardError as exc:
        _fail(f"{exc}; nothing was written (crmscore score --force writes anyway)", EXIT_REFUSED)
    except (
        NoChampionError,
        ScoreValidationError,
        ArtifactIntegrityError,
        LockTimeoutError,
        WriterSessionTimeoutError,
    ) as exc:
        _fail(str(exc), EXIT_FAILURE)
    versions = ", ".join(f"{v['name']} v{v['version']}" for v in run.model_versions.values())
    n_leads = 0 if run.lead_scores is None else len(run.lead_scores)
    n_customers = 0 if run.customer_scores is None else len(run.customer_scores)
    out.print(f"scored {n_customers:,} customers and {n_leads:,} leads as of {day} with {versions}")
    for note in run.notes:
        out.print(f"note: {note}", highlight=False)
    out.print(f"run {run.run_id}", highlight=False)
    if run.written is not None:
        if cfg.data.source == "folder":
            from crmscore.io.score_files import scores_folder

            where = f"the score store {scores_folder(cfg)}"
        else:
            where = "the CRM"
        out.print(
            f"written to {where}: latest {run.written.latest_updated}, history {run.written.history_inserted}"
        )
        if not run.written.runs_logged and not any(run.written.history_inserted.values()):
            # the same run id: the same logical inputs, models and settings (docs/scoring.md)
            note = f"replay: run {run.run_id} of {day} was already written: nothing changed"
            out.print(note, highlight=False)
    for path in run.files:
        out.print(f"wrote {path}", highlight=False)


@app.command()
def score(
    as_of: Annotated[str | None, typer.Option("--as-of", help="Scoring day YYYY-MM-DD (required).")] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Also write the scores to this CSV or Parquet file.")
    ] = None,
    worklist_dir: Annotated[
        Path | None, typer.Option(help="Folder of the customer-success worklist (default: reports/).")
    ] = None,
    write_back: Annotated[
        bool, typer.Option("--write/--no-write", help="Write the scores back to the CRM store.")
    ] = True,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Write even when an input guard refuses (input volume dropped, inputs unlike the "
            "training data); logged.",
        ),
    ] = False,
    folder: FolderOption = None,
    allow_future: Annotated[
        bool,
        typer.Option("--allow-future", help="Allow a scoring day after today (UTC); refused otherwise."),
    ] = False,
) -> None:
    """Score every customer and open lead with the @champion models, write them to the CRM.

    Writes latest scores and history in one transaction (a replay changes
    nothing) and a worklist of accounts ranked by value at risk. Scores with
    whichever champions exist: the columns of a kind without a champion (or
    without its data) stay NULL and a note says why.

    Exit codes: 0 ok; 1 no champion can score this CRM, the scores fail
    their checks, a tampered model or a lock wait timed out; 2 usage or
    configuration error (also: --as-of not YYYY-MM-DD, or after today without
    --allow-future); 3 unusable data; 4 refused by an input guard
    (inputs truncated or unlike the training data: --force); 130 interrupted.
    """
    cfg = _source_option_overrides(_config(), folder)
    day = _parse_day(as_of, "--as-of")
    if day is None:
        _fail("give --as-of: the scoring day (crmscore never assumes 'now')", EXIT_USAGE)
    from datetime import UTC, datetime

    today = datetime.now(UTC).date()
    if day > today and not allow_future:
        _fail(
            f"--as-of {day} is after today ({today}, UTC): scores of a future day are refused; "
            "pass --allow-future to score it anyway",
            EXIT_USAGE,
        )
    data, report = _validated(cfg, day, for_scoring=True)
    run_score_command(cfg, day, data, output, worklist_dir, write_back, report, force=force)


@app.command()
def report(
    as_of: Annotated[str | None, typer.Option("--as-of", help="Report day YYYY-MM-DD (required).")] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="HTML file to write (default: report.html_path).")
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="JSON file of every number (default: report.json_path).")
    ] = None,
    train_json: Annotated[
        Path | None, typer.Option(help="The --report-json of 'crmscore train' for the model-quality section.")
    ] = None,
    folder: FolderOption = None,
) -> None:
    """Write the KPI and model report: one self-contained HTML file and a JSON file of every number.

    Exit codes: 0 ok; 1 failure; 2 usage or configuration error; 3 unusable data.
    """
    from crmscore.pipelines.report import run_report

    cfg = _source_option_overrides(_config(), folder)
    day = _parse_day(as_of, "--as-of")
    if day is None:
        _fail("give --as-of: the report day", EXIT_USAGE)
    data, _ = _validated(cfg, day)
    with stage("building the report"):
        html, js = run_report(data, day, cfg, html_path=output, json_path=json_out, train_summary=train_json)
    out.print(f"report written to {html} and {js}", highlight=False)


# --------------------------------------------------------------------------- demo


@app.command()
def demo(
    customers: Annotated[
        int,
        typer.Option(
            "--customers", "-n", help=f"Synthetic customers to generate (at least {DEMO_MIN_CUSTOMERS:,})."
        ),
    ] = 20_000,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 42,
) -> None:
    """Run the whole job end to end on the embedded default (a synthetic SQLite CRM).

    generate → validate → features → train (MLflow) → score (written back to the CRM, worklist)
    → report, as of the last day of the synthetic data.

    Exit codes: 0 ok; 1 a model kind failed or scoring failed; 2 usage error
    (too few --customers); 3 unusable data; 4 scoring refused by an input
    guard (score --force writes anyway).
    """
    from crmscore.pipelines.generate import run_generate
    from crmscore.pipelines.report import run_report
    from crmscore.pipelines.train import train_models

    if customers < DEMO_MIN_CUSTOMERS:
        _fail(
            f"--customers {customers:,} is too few: the demo needs at least {DEMO_MIN_CUSTOMERS:,} customers "
            "for the churn model to reach its training minimums (churn.min_rows, churn.min_positives); "
            f"the lead model needs about {DEMO_ALL_KINDS_CUSTOMERS:,} (leads.min_positives conversions)",
            EXIT_USAGE,
        )
    cfg = _config()
    run_generate(cfg, customers, seed, Sink.crm.value, cfg.data.folder, FileFormat.parquet.value, None)
    as_of = cfg.generate.end
    data, rep = run_validate(cfg, as_of, cfg.data.quarantine.folder)
    _print_report(rep)
    if not rep.usable:
        raise typer.Exit(EXIT_INVALID_DATA)
    feature_file = Path("data/features.parquet")
    table = run_features(cfg, as_of, feature_file, data)
    out.print(f"features: {len(table):,} customers × {table.shape[1]} columns → {feature_file}")
    result = train_models(cfg, as_of, data=data, report=rep)
    _print_train_result(result)
    train_json = Path("data/train.json")
    train_json.write_text(json.dumps(result.to_dict(), indent=2), encoding="utf-8")
    run_score_command(cfg, as_of, data, Path("data/scores.parquet"), Path("reports"), True, rep)
    with stage("building the report"):
        html, js = run_report(data, as_of, cfg, train_summary=train_json)
    out.print(f"report written to {html} and {js}", highlight=False)
    out.print("browse the MLflow runs: .venv/bin/mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db")
    if not result.ok:
        raise typer.Exit(EXIT_FAILURE)


def _quiet_openmp_waits() -> None:
    """Let idle OpenMP threads sleep rather than spin (unless the user set it).

    LightGBM's threads spin while waiting by default. When anything else wants the cores
    (another job, a database), spinning threads take the time the working ones need (the
    measurement is in README.md, "Environment"). Read once, when the OpenMP runtime loads, so
    it is set before any model library is imported.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


_INTERRUPTED = "interrupted: nothing of this run was committed"
_TERMINATED = "terminated (SIGTERM): nothing of this run was committed"


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the main thread is, so the open transaction rolls back."""


def _on_sigterm(signum: int, frame: Any) -> None:
    _state.terminated = True
    raise _Terminated()


def _stopped() -> NoReturn:
    if _state.terminated:
        err.print(_TERMINATED)
        sys.exit(EXIT_TERMINATED)
    err.print(_INTERRUPTED)
    sys.exit(EXIT_INTERRUPTED)


def main() -> None:
    """Console-script entry point with the documented exit codes."""
    _quiet_openmp_waits()
    signal.signal(signal.SIGTERM, _on_sigterm)  # a stopped job rolls back like Ctrl-C, exit 143
    try:
        code = app(standalone_mode=False)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except ConfigError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(EXIT_USAGE)
    except (typer.Abort, KeyboardInterrupt):
        _stopped()
    except Exception as exc:
        if callable(getattr(exc, "show", None)) and isinstance(getattr(exc, "exit_code", None), int):
            exc.show()  # a usage error of the (vendored) click parser: its own message and code 2
            sys.exit(exc.exit_code)
        from crmscore.io.crm import StoreError

        if isinstance(exc, StoreError):  # a CRM or model store that cannot be opened, in one line
            err.print(f"[bold red]error:[/] {exc}", highlight=False)
            sys.exit(exc.exit_code)
        if _state.verbose:
            raise
        err.print(f"[bold red]error:[/] {exc.__class__.__name__}: {exc}", highlight=False)
        err.print("run with -v for the full traceback")
        sys.exit(EXIT_FAILURE)
    if code == EXIT_INTERRUPTED:  # typer returns a KeyboardInterrupt as this code, silently
        _stopped()
    sys.exit(code if isinstance(code, int) else EXIT_OK)
