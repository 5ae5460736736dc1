"""Where the package's data (config/, models/) lives: a source checkout, a colcon install or a pip install."""
from __future__ import annotations

import sys
from functools import lru_cache
from pathlib import Path

PACKAGE = "fsmde_ros"


@lru_cache(maxsize=1)
def share_dir() -> Path:
    """The directory holding config/ and models/.

    A source checkout (editable install) uses the repository root; a colcon install uses
    `share/fsmde_ros` from the ament index; a plain pip install uses `<prefix>/share/fsmde_ros`.
    """
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "package.xml").is_file() and (checkout / "config").is_dir():
        return checkout
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

        try:
            return Path(get_package_share_directory(PACKAGE))
        except PackageNotFoundError:
            pass
    except ImportError:
        pass
    installed = Path(sys.prefix) / "share" / PACKAGE
    if installed.is_dir():
        return installed
    raise FileNotFoundError(f"cannot find the {PACKAGE} share directory (config/, models/): looked in {checkout}, "
                            f"the ament index and {installed}")


def config_dir() -> Path:
    return share_dir() / "config"
