"""The trained CRM shared by the integration tests, built once per test session (per xdist worker).

:func:`trained_project` is a small synthetic CRM (3,000 customers) in a SQLite database, a
``params.yaml`` and an MLflow store (SQLite) with version 1 of every model as champion, trained
through ``crmscore train``. Tests use it read-only as far as the registry goes: scoring writes
score tables into the CRM database and files into the folder, nothing else. A test that
registers, promotes or rolls back works on a copy of its registry (:func:`fork_trained_project`).

Both fixtures live in ``tests/projects.py`` (shared with ``tests/reliability/``, which gets its
own instance); importing them here makes them this folder's.
"""

from __future__ import annotations

from projects import AS_OF, FAST, TrainedProject, fork_trained_project, project_params, trained_project

__all__ = ["AS_OF", "FAST", "TrainedProject", "fork_trained_project", "project_params", "trained_project"]
