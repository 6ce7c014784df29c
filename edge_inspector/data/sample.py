"""What every dataset layout yields: one labelled sample, and the protocol's four parts."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Sample:
    image: Path
    mask: Path | None  # None: no mask (a normal image, or a layout without masks)
    label: int  # 0 normal, 1 anomalous
    defect_type: str  # "good" for normal samples


@dataclass
class Split:
    """The benchmark protocol's parts; a model may see train_normal and few_shot only."""

    train_normal: list[Sample] = field(default_factory=list)
    few_shot: list[Sample] = field(default_factory=list)
    test_normal: list[Sample] = field(default_factory=list)
    test_anomalous: list[Sample] = field(default_factory=list)

    @property
    def test(self) -> list[Sample]:
        return self.test_normal + self.test_anomalous

    def sizes(self) -> dict[str, int]:
        return {
            "train_normal": len(self.train_normal),
            "few_shot": len(self.few_shot),
            "test_normal": len(self.test_normal),
            "test_anomalous": len(self.test_anomalous),
        }
