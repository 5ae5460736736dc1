"""Where things live: the package's data (config/, models/) in a checkout, a colcon or a pip
install; the bundled default model; the Fast DDS profile; the caches under ~/.cache/fsmde_ros."""
from __future__ import annotations

import sys
from functools import lru_cache
from pathlib import Path

from fsmde_ros.errors import MissingFileError

PACKAGE = "fsmde_ros"
DEFAULT_MODEL = "models/fsmde_default.onnx"  # the bundled student, relative to the share directory
DEFAULT_INT8_MODEL = "models/fsmde_default_int8.onnx"  # its INT8 twin (fsmde quantize): precision int8's default
FASTDDS_PROFILE = "config/fastdds_shm.xml"  # 64 MB shared-memory segments: large images are not lost
CACHE_DIR = "~/.cache/fsmde_ros"
DATASET_CACHE_DIR = CACHE_DIR + "/datasets"  # rendered synthetic worlds and dataset items at a size
ENGINE_CACHE_DIR = CACHE_DIR + "/engines"  # TensorRT engines, keyed by ONNX hash, GPU, version, precision


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
        from ament_index_python.packages import (
            PackageNotFoundError,
            get_package_share_directory,
        )

        try:
            return Path(get_package_share_directory(PACKAGE))
        except PackageNotFoundError:
            pass
    except ImportError:
        pass
    installed = Path(sys.prefix) / "share" / PACKAGE
    if installed.is_dir():
        return installed
    raise MissingFileError(f"cannot find the {PACKAGE} share directory (config/, models/): looked in {checkout}, "
                            f"the ament index and {installed}")


def config_dir() -> Path:
    return share_dir() / "config"


def fastdds_profile() -> Path:
    """The shipped Fast DDS profile (FASTDDS_DEFAULT_PROFILES_FILE) for images of a megabyte and more."""
    return share_dir() / FASTDDS_PROFILE


def use_fastdds_profile(env: dict | None = None) -> dict:
    """Point Fast DDS at the shipped profile in `env` (default: this process) unless one is set."""
    import os

    env = os.environ if env is None else env
    if not env.get("FASTDDS_DEFAULT_PROFILES_FILE"):
        env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(fastdds_profile())
    return env


def resolve_model(model: str | Path | None, option: str = "model:=", int8: bool = False) -> Path:
    """The model file to run: `model`, or the bundled default when empty (its INT8 twin with int8: precision int8);
    MissingFileError when absent.

    option: how the user passes a model in the calling tool (`model:=` for the node, `--model ` for a command).
    """
    path = Path(model).expanduser() if model else share_dir() / (DEFAULT_INT8_MODEL if int8 else DEFAULT_MODEL)
    if not path.is_file():
        hint = "the bundled default student is missing from this install" if not model else "check the path"
        raise MissingFileError(f"model {path} not found ({hint}); export one with `fsmde export` and pass "
                               f"{option}/path/to/student.onnx")
    return path
