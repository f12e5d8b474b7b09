"""Fixtures of the reliability probes (tests/reliability/).

:func:`trained_project` and :func:`fork_trained_project` are the integration tests' trained
CRM project (``tests/projects.py``): a SQLite CRM of 3,000 customers, ``params.yaml`` and an
MLflow store with every model as champion. Importing them here gives this folder its own
session instance (per xdist worker), so a probe that writes scores, tampers with a copy or
kills a writer never changes what an integration test reads. A probe that changes the
registry or the artefacts works on a fork, never on the shared project.
"""

from __future__ import annotations

from projects import AS_OF, FAST, TrainedProject, fork_trained_project, project_params, trained_project

__all__ = ["AS_OF", "FAST", "TrainedProject", "fork_trained_project", "project_params", "trained_project"]
