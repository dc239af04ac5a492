#!/usr/bin/env bash
# Install the LIBERO extra into the project's venv: headless, non-interactive, pinned (docs/libero.md).
#
#   bash scripts/setup_libero.sh          # after (or instead of) scripts/setup_env.sh; ~1-2 min, ~1.3 GB
#
# Idempotent: a stamp holding the hash of the requirement files makes a re-run a no-op.
# Steps: the base stack (setup_env.sh); libero, robosuite, bddl and the asset packages without their
# dependencies (requirements/libero.txt says why); their run-time imports (requirements/libero-deps.txt);
# the assets linked where LIBERO looks for them (else it tries to download them from a hub); LIBERO's
# config.yaml written by the project (else `import libero.libero` asks questions on stdin).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup_env.sh"
venv="${AMPLIFY_VENV:-$root/.venv}"
req="$root/requirements"
stamp="$venv/.amplify_libero_stamp"
want="$(cat "$req"/libero.txt "$req"/libero-deps.txt "$req"/constraints.txt "$root/amplify_core/libero/installation.py" | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
pip=("$venv/bin/python" -m pip --disable-pip-version-check -q)
echo "[setup-libero] installing libero, robosuite, bddl and the LIBERO assets (no dependencies)"
"${pip[@]}" install --no-deps -r "$req/libero.txt"
echo "[setup-libero] installing their run-time dependencies"
"${pip[@]}" install -c "$req/constraints.txt" -r "$req/libero-deps.txt"
echo "[setup-libero] linking the assets and writing LIBERO's config"
"$venv/bin/python" -m amplify_core.libero.installation --link-assets --write-config
echo "$want" > "$stamp"
echo "[setup-libero] done"
