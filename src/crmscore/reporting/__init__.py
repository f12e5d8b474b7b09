"""KPI and model report: KPIs, report content, HTML and JSON output.

Modules, imports pointing down only (each uses those below it, never the orchestration, I/O or
tracking):

* :mod:`.build`: :func:`~crmscore.reporting.build.build_report`, the whole content from plain
  inputs (it fits no model);
* :mod:`.sections` and :mod:`.quality`: the section builders;
* :mod:`.html`: :func:`~crmscore.reporting.html.render_html` and
  :func:`~crmscore.reporting.html.write_report`;
* :mod:`.content`: the data model (blocks, sections, :class:`~crmscore.reporting.content.QuickModels`),
  formatters and chart helpers;
* :mod:`.kpis`: every KPI per period and :func:`~crmscore.reporting.kpis.compute_kpis` (with
  :mod:`.kpis_acquisition` and :mod:`.kpi_base`, whose public names it re-exports).
"""
