"""Renderers: turn pinchpoint's results into something to read. They format; they never compute."""

from __future__ import annotations

from pinchpoint.renderers.terminal import (
    format_bytes,
    format_count,
    format_evidence,
    format_seconds,
    render_diagnosis,
    render_profile,
    render_trace,
)

__all__ = [
    "format_bytes",
    "format_count",
    "format_evidence",
    "format_seconds",
    "render_diagnosis",
    "render_profile",
    "render_trace",
]
