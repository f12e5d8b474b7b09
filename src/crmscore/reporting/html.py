"""HTML rendering of :class:`crmscore.reporting.content.ReportContent`: one file, inline CSS, embedded PNGs.

:func:`render_html` makes the document; :func:`write_report` writes it beside the JSON of the
report's numbers. Every piece of text is passed through :func:`html.escape`; images are
``data:`` URIs, so the file has no external asset and no script (it works offline and as an
e-mail attachment). Text notes (among them the "no data" notes) are highlighted paragraphs.
"""

from __future__ import annotations

import html
import json
import logging
from pathlib import Path

from crmscore.core.serial import jsonable
from crmscore.reporting.content import Card, FigureBlock, ReportContent, Section, TableBlock, figure_data_uri

__all__ = ["CSS", "render_html", "write_report"]

logger = logging.getLogger(__name__)

CSS = """
*{box-sizing:border-box}
body{font-family:-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:0;background:#f6f7f9;
color:#1f2937;line-height:1.45}
header{background:#1e3a8a;color:#fff;padding:22px 32px}
header h1{margin:0 0 4px;font-size:24px}
header p{margin:0;opacity:.85;font-size:14px}
nav{background:#fff;border-bottom:1px solid #e5e7eb;padding:8px 32px;font-size:13px;
position:sticky;top:0;z-index:2}
nav a{color:#1e3a8a;margin-right:16px;text-decoration:none}
main{max-width:1200px;margin:0 auto;padding:8px 24px 40px}
section{background:#fff;border:1px solid #e5e7eb;border-radius:8px;margin:20px 0;padding:18px 22px}
section h2{margin:0 0 4px;font-size:19px;color:#1e3a8a}
p.intro{margin:0 0 14px;color:#4b5563;font-size:14px}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(250px,1fr));gap:12px}
.card{border:1px solid #e5e7eb;border-radius:8px;padding:12px 14px;background:#fafbff}
.card .label{font-size:12px;color:#6b7280;text-transform:uppercase;letter-spacing:.03em}
.card .value{font-size:24px;font-weight:600;margin:2px 0}
.card .note{font-size:12px;color:#4b5563}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(520px,1fr));gap:16px}
figure{margin:0;border:1px solid #eef0f3;border-radius:6px;padding:10px}
figure img{width:100%;height:auto;display:block}
figcaption{font-size:13px;color:#4b5563;margin-top:6px}
figcaption b{color:#1f2937}
.tbl{margin:16px 0 4px;overflow-x:auto}
.tbl h3{font-size:15px;margin:0 0 2px}
.tbl p{font-size:13px;color:#4b5563;margin:0 0 6px}
table{border-collapse:collapse;width:100%;font-size:13px}
th{background:#eef2ff;text-align:left;padding:6px 8px;border-bottom:1px solid #c7d2fe}
td{padding:5px 8px;border-bottom:1px solid #f0f1f3;vertical-align:top}
tr:nth-child(even) td{background:#fafafa}
td.num{text-align:right;white-space:nowrap}
p.note{font-size:13px;color:#92400e;background:#fffbeb;border:1px solid #fde68a;padding:8px 10px;
border-radius:6px}
footer{text-align:center;color:#9ca3af;font-size:12px;padding:20px}
"""

_NUMERIC = set("0123456789.,-−+% ")


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _sentence(title: str) -> str:
    return title if title[-1:] in ".?!" else title + "."


def _is_num(cell: str) -> bool:
    head = cell.split(" ")[0] if cell else ""
    return bool(head) and all(ch in _NUMERIC for ch in head) and any(ch.isdigit() for ch in head)


def _section(s: Section) -> str:
    out = [f'<section id="{_e(s.key)}"><h2>{_e(s.heading)}</h2><p class="intro">{_e(s.intro)}</p>']
    cards = [b for b in s.blocks if isinstance(b, Card)]
    if cards:
        out.append('<div class="cards">')
        for c in cards:
            out.append(
                f'<div class="card"><div class="label">{_e(c.label)}</div>'
                f'<div class="value">{_e(c.value)}</div>'
                f'<div class="note">{_e(c.note)}</div></div>'
            )
        out.append("</div>")
    figs = [b for b in s.blocks if isinstance(b, FigureBlock)]
    if figs:
        out.append('<div class="grid">')
        for f in figs:
            out.append(
                f'<figure><img alt="{_e(f.title)}" src="{figure_data_uri(f.png)}">'
                f"<figcaption><b>{_e(_sentence(f.title))}</b> {_e(f.caption)}</figcaption></figure>"
            )
        out.append("</div>")
    for b in s.blocks:
        if isinstance(b, TableBlock):
            head = "".join(f"<th>{_e(c)}</th>" for c in b.columns)
            body = "".join(
                "<tr>"
                + "".join(
                    f"<td{' class=num' if i > 0 and _is_num(c) else ''}>{_e(c)}</td>"
                    for i, c in enumerate(row)
                )
                + "</tr>"
                for row in b.rows
            )
            out.append(
                f'<div class="tbl"><h3>{_e(b.title)}</h3><p>{_e(b.caption)}</p>'
                f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"
            )
        elif isinstance(b, str):
            out.append(f'<p class="note">{_e(b)}</p>')
    out.append("</section>")
    return "".join(out)


def render_html(content: ReportContent) -> str:
    """The whole report as one HTML document (UTF-8 text)."""
    nav = "".join(f'<a href="#{_e(s.key)}">{_e(s.heading)}</a>' for s in content.sections)
    body = "\n".join(_section(s) for s in content.sections)
    date = content.as_of.date().isoformat()
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{_e(content.title)} — {_e(date)}</title><style>{CSS}</style></head><body>"
        f"<header><h1>{_e(content.title)}</h1>"
        f"<p>Report date {_e(date)} · data up to the end of that day (UTC) · "
        f"{_e(content.numbers.get('period', ''))}ly figures</p></header>"
        f"<nav>{nav}</nav><main>{body}</main>"
        "<footer>Generated by crmscore · every number is also in the accompanying JSON file</footer>"
        "</body></html>\n"
    )


def write_report(content: ReportContent, html_path: str | Path, json_path: str | Path) -> tuple[Path, Path]:
    """Write the self-contained HTML report and the JSON of its numbers (no NaN: missing is ``null``).

    Returns
    -------
    tuple of Path
        The HTML and JSON paths (parent folders are created).
    """
    h, j = Path(html_path), Path(json_path)
    for p in (h, j):
        p.parent.mkdir(parents=True, exist_ok=True)
    h.write_text(render_html(content), encoding="utf-8")
    j.write_text(json.dumps(jsonable(content.numbers), indent=2, allow_nan=False), encoding="utf-8")
    logger.info("wrote report %s and %s", h, j)
    return h, j
