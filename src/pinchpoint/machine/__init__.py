"""Facts about the machine a run happens on (and, in later stages, its calibrated peaks)."""

from __future__ import annotations

from pinchpoint.machine.facts import describe_environment, describe_machine

__all__ = ["describe_environment", "describe_machine"]
