"""Facts about the machine a run happens on (and, in later stages, its calibrated peaks)."""

from __future__ import annotations

from pinchpoint.machine.calibrate import Peaks, cache_path, load_or_calibrate
from pinchpoint.machine.facts import describe_environment, describe_machine

# ``calibrate`` the function stays in its module: exported here it would hide the submodule
# ``pinchpoint.machine.calibrate`` behind the package attribute of the same name.
__all__ = ["Peaks", "cache_path", "describe_environment", "describe_machine", "load_or_calibrate"]
