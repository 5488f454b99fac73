"""Renderers, one module per medium: ``terminal`` draws any Report's brief on one screen (rich),
``html`` any Report's sections as a self-contained page. They format; they never compute."""

from __future__ import annotations

from pinchpoint.renderers.terminal import (
    format_bytes,
    format_count,
    format_evidence,
    format_seconds,
    render_comparison,
    render_diagnosis,
    render_optimize,
    render_profile,
    render_scale,
    render_terminal,
    render_trace,
)

__all__ = [
    "format_bytes",
    "format_count",
    "format_evidence",
    "format_seconds",
    "render_comparison",
    "render_diagnosis",
    "render_optimize",
    "render_profile",
    "render_scale",
    "render_terminal",
    "render_trace",
]
