"""Facts about the machine a run happens on, and its calibrated peaks.

Names load on first use: describing a machine (for a trace analysis, say) must not pay for
importing the calibration microbenchmarks.
"""

from __future__ import annotations

import importlib
from typing import Any

# ``calibrate`` the function stays in its module: exported here it would hide the submodule
# ``pinchpoint.machine.calibrate`` behind the package attribute of the same name.
__all__ = ["Peaks", "cache_path", "describe_environment", "describe_machine", "load_or_calibrate"]

_WHERE = {
    "Peaks": "calibrate",
    "cache_path": "calibrate",
    "load_or_calibrate": "calibrate",
    "describe_environment": "facts",
    "describe_machine": "facts",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        module = importlib.import_module(f"pinchpoint.machine.{_WHERE[name]}")
        return getattr(module, name)
    raise AttributeError(f"module 'pinchpoint.machine' has no attribute {name!r}")
