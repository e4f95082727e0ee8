"""What one run import is made of: the run attempt and its report files (pure data)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from ingest.timestamps import parse_timestamp


@dataclass(frozen=True)
class RunInfo:
    repo: str
    run_id: int
    run_attempt: int
    sha: str
    branch: str = ""
    event: str = ""
    workflow: str = ""
    started_at: datetime | None = None
    completed_at: datetime | None = None

    @property
    def dedup_key(self) -> str:
        return f"ingest:{self.repo}:{self.run_id}:{self.run_attempt}"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("started_at", "completed_at"):
            data[key] = data[key].isoformat() if data[key] else None
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunInfo:
        values = dict(data)
        for key in ("started_at", "completed_at"):
            values[key] = parse_timestamp(values.get(key), field=key)
        return cls(**values)


@dataclass(frozen=True)
class RunFile:
    """A report on local disk: ``.xml`` or a ``.zip`` artifact of XML members.

    The configuration label is the explicit ``label`` (manifest ``job``, GitHub
    job or artifact name), else what the report itself says, else ``folder_label``.
    """

    path: Path
    label: str = ""
    display: str = ""
    folder_label: str = ""

    @property
    def name(self) -> str:
        return self.display or str(self.path)

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "label": self.label,
            "display": self.display,
            "folder_label": self.folder_label,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunFile:
        return cls(
            path=Path(data["path"]),
            label=data.get("label", ""),
            display=data.get("display", ""),
            folder_label=data.get("folder_label", ""),
        )
