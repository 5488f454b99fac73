"""What both trainer callbacks do: start a StepFinder when training starts, and when it ends,
diagnose the Profile, print the diagnosis and write it where asked."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from pinchpoint._profile import Profile
from pinchpoint.diagnosis import Diagnosis, diagnose
from pinchpoint.recorders.autostep import StepFinder, check_counts

__all__ = ["RecordingCallback", "TrainingSession"]


class TrainingSession:
    """One training run's recording, shared by the trainer callbacks (their arguments)."""

    def __init__(
        self,
        *,
        steps: int,
        warmup: int,
        stop: bool,
        json: str | Path | None,
        html: str | Path | None,
        show: bool,
    ) -> None:
        check_counts(steps, warmup)  # at construction, not when training starts
        self.steps, self.warmup, self.stop, self.show = steps, warmup, stop, show
        self.json = Path(json) if json is not None else None
        self.html = Path(html) if html is not None else None
        self.finder: StepFinder | None = None
        self.profile: Profile | None = None
        self.diagnosis: Diagnosis | None = None

    def start(self, name: str, model: Any, optimizer: Any) -> None:
        """Install the finder; ``model`` may be None (found from the first step's forwards)."""
        if self.finder is not None:
            self.finder.finish()
        self.profile = self.diagnosis = None
        self.finder = StepFinder(
            steps=self.steps, warmup=self.warmup, name=name, model=model, optimizer=optimizer
        ).install()

    @property
    def done(self) -> bool:
        """Whether the steps asked for are recorded (a trainer told to ``stop`` stops then)."""
        return self.finder is not None and self.finder.done

    def end(self) -> Diagnosis | None:
        """Stop recording; diagnose, print and save what was recorded (None if nothing was)."""
        if self.finder is None:
            return self.diagnosis
        self.profile = self.finder.finish()
        self.finder = None
        if self.profile is None:
            print("pinchpoint: no training step was recorded", file=sys.stderr)
            return None
        self.diagnosis = diagnose(self.profile, name=self.profile.name)
        if self.show:
            from rich.console import Console

            from pinchpoint.renderers.terminal import render_diagnosis

            Console(highlight=False, emoji=False).print(render_diagnosis(self.diagnosis))
        if self.json is not None:
            written = self.diagnosis.save(self.json)
            print(f"pinchpoint: diagnosis written to {written}", file=sys.stderr)
        if self.html is not None:
            from pinchpoint.renderers.html import write_html
            from pinchpoint.report import Report

            written = write_html(Report.build(self.diagnosis), self.html)
            print(f"pinchpoint: HTML report written to {written}", file=sys.stderr)
        return self.diagnosis


class RecordingCallback:
    """What the trainer callbacks share: their arguments, and ``profile`` / ``diagnosis``.

    Args:
        steps: measured steps to record (the recording then stops; training goes on).
        warmup: recorded steps left out of statistics.
        stop: end training once the steps are recorded.
        json: write the diagnosis (with its Profile) as JSON to this file.
        html: write the HTML report to this file.
        show: print the diagnosis to the terminal.
    """

    def __init__(
        self,
        *,
        steps: int = 20,
        warmup: int = 2,
        stop: bool = False,
        json: str | Path | None = None,
        html: str | Path | None = None,
        show: bool = True,
    ) -> None:
        self.session = TrainingSession(
            steps=steps, warmup=warmup, stop=stop, json=json, html=html, show=show
        )

    @property
    def profile(self) -> Profile | None:
        """The Profile of the recorded steps, once training has ended."""
        return self.session.profile

    @property
    def diagnosis(self) -> Diagnosis | None:
        """Its diagnosis, once training has ended."""
        return self.session.diagnosis
