"""Errors that name the file, row and field of bad input."""

from __future__ import annotations

from dataclasses import dataclass

from valuation.errors import DataworthError


@dataclass(frozen=True)
class ValidationIssue:
    """One bad value: where it is and why it is refused. ``row`` counts data rows from 1."""

    file: str
    row: int | None
    field: str | None
    reason: str

    def __str__(self) -> str:
        where = self.file
        if self.row is not None:
            where += f", row {self.row}"
        if self.field is not None:
            where += f", field {self.field!r}"
        return f"{where}: {self.reason}"


class InputValidationError(DataworthError, ValueError):
    """A whole input file was rejected; nothing of it was stored."""

    def __init__(self, issues: list[ValidationIssue], limit: int = 20) -> None:
        self.issues = issues
        shown = "\n".join(f"  {issue}" for issue in issues[:limit])
        more = f"\n  ... and {len(issues) - limit} more" if len(issues) > limit else ""
        super().__init__(f"{len(issues)} problem(s), nothing was stored:\n{shown}{more}")


class CorpusValidationError(InputValidationError):
    """A corpus file was rejected."""


class QueryValidationError(InputValidationError):
    """A query file was rejected."""


class ArtifactError(DataworthError, RuntimeError):
    """An artifact is missing, corrupted or belongs to another checkpoint or configuration."""


class CorpusError(DataworthError):
    """The corpus cannot answer as asked (an unknown version, examples not made yet, a changed pin)."""


class QueryError(DataworthError):
    """A query operation cannot be done (unknown id, already valued)."""
