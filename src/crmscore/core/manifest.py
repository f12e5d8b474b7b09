"""SHA-256 manifests of artefact folders: what was registered is what gets loaded.

A model version's files (the MLflow ``MLmodel``, the models-from-code script, the bundle) are
hashed when the version is registered (:func:`file_manifest`) and checked before every load
(:func:`verify_manifest`): a file changed, removed or added since registration refuses the load
and names the file. The models-from-code script is executable by design and ``MLmodel`` says
how to load the model, so both are covered, not only the weights. See docs/models.md, "Trust".
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path

__all__ = ["ArtifactIntegrityError", "file_manifest", "manifest_json", "parse_manifest", "verify_manifest"]

#: Files MLflow writes into a folder when it downloads a registered model (not part of the version).
DOWNLOAD_ONLY_FILES: frozenset[str] = frozenset({"registered_model_meta"})
_CHUNK = 1 << 20


class ArtifactIntegrityError(RuntimeError):
    """A model artefact does not match the manifest recorded when it was registered."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def file_manifest(root: str | Path, ignore: Iterable[str] = DOWNLOAD_ONLY_FILES) -> dict[str, str]:
    """``{relative path: sha256 hex}`` of every file below ``root`` (POSIX paths, sorted).

    Parameters
    ----------
    root : str or Path
        The folder (e.g. a downloaded model version).
    ignore : iterable of str
        Top-level file names left out (files the download itself adds).
    """
    base = Path(root)
    skip = set(ignore)
    out: dict[str, str] = {}
    for path in sorted(p for p in base.rglob("*") if p.is_file()):
        rel = path.relative_to(base).as_posix()
        if rel in skip:
            continue
        out[rel] = _sha256(path)
    return out


def manifest_json(manifest: Mapping[str, str]) -> str:
    """Compact, key-sorted JSON of a manifest (what the version tag holds)."""
    return json.dumps(dict(sorted(manifest.items())), separators=(",", ":"))


def parse_manifest(text: str | None, what: str) -> dict[str, str]:
    """The manifest of a version tag.

    Raises
    ------
    ArtifactIntegrityError
        No manifest was recorded, or it is not a ``{path: sha256}`` mapping.
    """
    if not text:
        raise ArtifactIntegrityError(
            f"{what}: no artefact manifest was recorded at registration, so its files cannot be "
            "verified; register it again with 'crmscore train' (or promote a version that has one)"
        )
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ArtifactIntegrityError(f"{what}: the recorded artefact manifest is not valid JSON") from exc
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        raise ArtifactIntegrityError(
            f"{what}: the recorded artefact manifest is not a {{path: sha256}} mapping"
        )
    return data


def verify_manifest(root: str | Path, expected: Mapping[str, str], what: str) -> None:
    """Refuse the folder ``root`` unless its files are exactly those of ``expected``, byte for byte.

    Raises
    ------
    ArtifactIntegrityError
        Naming every file changed, missing or added since registration.
    """
    actual = file_manifest(root)
    changed = sorted(k for k in expected.keys() & actual.keys() if expected[k] != actual[k])
    missing = sorted(expected.keys() - actual.keys())
    added = sorted(actual.keys() - expected.keys())
    if changed or missing or added:
        parts = [
            f"{label}: {', '.join(files)}"
            for label, files in (("changed", changed), ("missing", missing), ("added", added))
            if files
        ]
        raise ArtifactIntegrityError(
            f"{what}: the model artefact does not match what was registered ({'; '.join(parts)}); "
            "refusing to load it. Someone with write access to the artefact store changed it: "
            "restore it or register a new version with 'crmscore train'"
        )
