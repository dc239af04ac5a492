"""Where the package's data folders (``config/``, ``urdf/``) are, however it was installed. No ROS import: the
same answer as ``ament_index_python`` for the installs that matter, found from the paths alone."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE = "amplify_ros"


def package_folder(name: str) -> Path:
    """``<name>`` of the package: beside the sources (a checkout, ``pip install -e``), else in the share folder of
    the install that holds these sources (``colcon build``, ``pip install``: ``<prefix>/share/amplify_ros/<name>``),
    else in that of a prefix on ``AMENT_PREFIX_PATH``. Raises FileNotFoundError naming every place looked at."""
    here = Path(__file__).resolve()
    candidates = [here.parents[1] / name]
    candidates += [parent / "share" / PACKAGE / name for parent in here.parents[1:]]
    candidates += [Path(p) / "share" / PACKAGE / name
                   for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    for c in candidates:
        if c.is_dir():
            return c
    raise FileNotFoundError(f"the {name}/ folder of {PACKAGE} is in none of {[str(c) for c in candidates]}")
