#!/usr/bin/env bash
# Sets up a development checkout: .venv/, the ROS interface packages and human3r_ros in
# install/ (colcon), and env.sh. Run through `make setup`.
#
# H3R_ROS picks the ROS 2 wheels (`make ... ROS=jazzy` sets it): kilted (default: .venv/,
# build/, install/, log/, env.sh) or jazzy (.venv-jazzy/, build-jazzy/, install-jazzy/,
# log-jazzy/, env-jazzy.sh). Each distro gets its own venv: their wheels are the same ros-*
# distributions at different versions.
#
# Two modes, picked automatically:
#   distro: a ROS 2 distribution is sourced (ROS_DISTRO set, rclpy importable). The venv sees
#           the distro's packages (--system-site-packages); no ROS wheels, no compat tf2_msgs.
#   wheels: otherwise. ROS 2 Kilted comes from PyPI wheels (manylinux, CPython 3.10-3.13)
#           into a plain venv.
#
# Idempotent: each step records a hash of its inputs (.venv/.h3r-*, install/.h3r-build) and
# is skipped while they match, so a rerun with nothing changed takes about a second.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
PY_REQS=requirements.txt
# Bump when this script changes what it puts into .venv or install/.
LAYOUT=1

log() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] error: %s\n' "$*" >&2; exit 1; }

H3R_ROS=${H3R_ROS:-kilted}
case $H3R_ROS in
  kilted) SUFFIX="" ROS_REQS=requirements-ros.txt ;;
  jazzy) SUFFIX=-jazzy ROS_REQS=requirements-ros-jazzy.txt ;;
  *) die "ROS=$H3R_ROS: expected kilted or jazzy (other distros: source them, see README)" ;;
esac
VENV=$ROOT/.venv$SUFFIX
VPY=$VENV/bin/python
BUILD=build$SUFFIX INSTALL=install$SUFFIX LOGS=log$SUFFIX ENV_FILE=env$SUFFIX.sh

# sha256 over file names and contents, so renames count as changes too.
hash_files() {
  local f
  for f in "$@"; do printf '%s\n' "$f"; cat "$f"; done | sha256sum | cut -d' ' -f1
}

# Drop this checkout's own install*/ and .venv*/ from path variables: a shell that already sourced
# an env file must not make the build see its previous output (nor change the compat tf2_msgs
# decision), nor another distro's libraries.
strip_own_install() {
  local var=$1 out="" part
  local IFS=:
  for part in ${!var:-}; do
    [[ -z $part || $part == "$ROOT/install"* || $part == "$ROOT/.venv"* ]] && continue
    out=${out:+$out:}$part
  done
  if [[ -n $out ]]; then export "$var=$out"; else unset "$var"; fi
}
for var in PYTHONPATH AMENT_PREFIX_PATH CMAKE_PREFIX_PATH COLCON_PREFIX_PATH LD_LIBRARY_PATH; do
  strip_own_install "$var"
done

# --- interpreter and mode ---------------------------------------------------------------
# Resolve the interpreter behind any active venv, so a shell with env.sh sourced does not
# build .venv from .venv itself.
BASE_PY=$("${PYTHON:-python3}" -c 'import os, sys; print(os.path.realpath(getattr(sys, "_base_executable", sys.executable)))')
if [[ -n ${ROS_DISTRO:-} ]] && "$BASE_PY" -c 'import rclpy' 2>/dev/null; then
  MODE=distro
else
  MODE=wheels
fi
if [[ $MODE == distro && $H3R_ROS != kilted && $H3R_ROS != "$ROS_DISTRO" ]]; then
  die "ROS=$H3R_ROS asks for the $H3R_ROS wheels, but ROS 2 $ROS_DISTRO is sourced: use a shell without it"
fi
log "mode: $MODE, $([[ $MODE == wheels ]] && echo "ROS 2 $H3R_ROS wheels" || echo "ROS 2 $ROS_DISTRO") (python: $BASE_PY)"

# --- 1. virtual environment -------------------------------------------------------------
venv_id="$MODE $BASE_PY $("$BASE_PY" -c 'import sys; print(sys.version)') layout=$LAYOUT"
if [[ ! -x $VPY || "$(cat "$VENV/.h3r-venv" 2>/dev/null)" != "$venv_id" ]]; then
  log "creating ${VENV#"$ROOT/"}"
  rm -rf "$VENV"
  if [[ $MODE == distro ]]; then
    "$BASE_PY" -m venv --system-site-packages "$VENV"
  else
    "$BASE_PY" -m venv "$VENV"
  fi
  printf '%s\n' "$venv_id" > "$VENV/.h3r-venv"
fi

# The wheels' .pth hook re-executes every interpreter to set LD_LIBRARY_PATH; we set it
# ourselves (here and in env.sh), so tell the hook it is done.
export _ROS_WHEELS_BOOTSTRAP_COMPLETE=1
SITE=$("$VPY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
ros_lib_dirs() {
  local d
  printf '%s\n' "$VENV/lib"
  for d in "$SITE"/ros_*.libs; do [[ -d $d ]] && printf '%s\n' "$d"; done
  return 0
}

# --- 2. Python packages (every pip install of the project happens here) -----------------
reqs=("$PY_REQS")
[[ $MODE == wheels ]] && reqs+=("$ROS_REQS")
pkgs_id=$(hash_files "${reqs[@]}")
if [[ "$(cat "$VENV/.h3r-packages" 2>/dev/null)" != "$pkgs_id" ]]; then
  log "installing Python packages from ${reqs[*]}"
  py_reqs=$(mktemp)
  trap 'rm -f "$py_reqs"' EXIT
  if "$VPY" -c 'import torch' 2>/dev/null; then
    # Keep the torch this environment already has (e.g. a robot's CUDA build).
    grep -v '^torch\b' "$PY_REQS" > "$py_reqs"
  else
    cp "$PY_REQS" "$py_reqs"
  fi
  pip_args=(-r "$py_reqs")
  [[ $MODE == wheels ]] && pip_args+=(-r "$ROS_REQS")
  # One resolver run over everything, so shared pins (setuptools<80 for colcon) hold.
  # (The filter drops one harmless warning per package about local index folders that some
  # machines' pip.conf names but that lack the package.)
  "$VPY" -m pip install --disable-pip-version-check -q "${pip_args[@]}" \
    2> >(grep -v "^WARNING: Location 'file://.*' is ignored" >&2)

  if [[ $MODE == wheels ]]; then
    # Snag: the wheels' exported CMake files name the wheel builder's Python and numpy
    # include dirs; point them at this interpreter's, or CMake rejects the imported targets.
    py_inc=$("$VPY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
    np_inc=$("$VPY" -c 'import numpy; print(numpy.get_include())')
    [[ -f $py_inc/Python.h ]] || die "no Python.h in $py_inc: install the Python development headers (python3-dev)"
    builder='/opt/python/cp3[0-9]+-cp3[0-9]+'
    { grep -rlE "$builder/" "$VENV"/share/*/cmake/ || true; } | while read -r f; do
      sed -i -E \
        -e "s#$builder/lib/python3\.[0-9]+/site-packages/numpy/_?core/include#$np_inc#g" \
        -e "s#$builder/include/python3\.[0-9]+#$py_inc#g" "$f"
    done
  fi
  printf '%s\n' "$pkgs_id" > "$VENV/.h3r-packages"
fi

# --- 3. colcon build into install/ (install-jazzy/) ------------------------------------
build_env=(env)
if [[ $MODE == wheels ]]; then
  libs=$(ros_lib_dirs | paste -sd:)
  build_env+=(
    "PATH=$VENV/bin:$PATH"
    "VIRTUAL_ENV=$VENV"
    "AMENT_PREFIX_PATH=$VENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
    "CMAKE_PREFIX_PATH=$VENV${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
    "LD_LIBRARY_PATH=$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  )
else
  build_env+=("PATH=$VENV/bin:$PATH" "VIRTUAL_ENV=$VENV")
fi

# Each stand-in interface package compat/<pkg> is built only where nothing provides the real one.
packages=("$ROOT" "$ROOT/human3r_msgs")
compat_built=()
for dir in "$ROOT"/compat/*/; do
  pkg=$(basename "$dir")
  if ! "${build_env[@]}" "$VPY" -c "import $pkg.msg" 2>/dev/null; then
    compat_built+=("$pkg")
    packages+=("$ROOT/compat/$pkg")
  fi
done

build_inputs=(package.xml setup.py setup.cfg)
while IFS= read -r f; do build_inputs+=("$f"); done < <(
  find resource launch config rviz human3r_msgs compat -type f \
    -not -name '*.pyc' -not -path '*/__pycache__/*' | LC_ALL=C sort)
build_id="$(hash_files "${build_inputs[@]}") $pkgs_id $venv_id compat=${compat_built[*]:-}"
if [[ "$(cat "$INSTALL/.h3r-build" 2>/dev/null)" != "$build_id" ]]; then
  "${build_env[@]}" sh -c 'command -v colcon' >/dev/null \
    || die "colcon not found: install it (e.g. apt install python3-colcon-common-extensions)"
  # the interface packages are C/C++ (rosidl type support): say so before colcon fails on it
  "${build_env[@]}" sh -c 'command -v cmake' >/dev/null || die "cmake not found: install it (e.g. apt install cmake)"
  "${build_env[@]}" sh -c 'command -v "${CC:-cc}" && command -v "${CXX:-c++}"' >/dev/null \
    || die "no C/C++ compiler (cc, c++) found: install one (e.g. apt install build-essential)"
  log "colcon build: human3r_ros human3r_msgs$(for pkg in "${compat_built[@]}"; do printf ' %s(compat)' "$pkg"; done)"
  [[ $MODE == wheels ]] && log "(colcon's warning that .venv has no local_setup files is expected: the wheels make it an ament prefix without setup scripts)"
  rm -f "$INSTALL/.h3r-build"
  "${build_env[@]}" colcon --log-base "$LOGS" build \
    --build-base "$BUILD" --install-base "$INSTALL" \
    --paths "${packages[@]}" \
    --cmake-args -DPython3_EXECUTABLE="$VPY" -DBUILD_TESTING=OFF \
    || die "colcon build failed (logs: $LOGS/latest_build/)"
  printf '%s\n' "$build_id" > "$INSTALL/.h3r-build"
fi

# --- 4. env.sh (env-jazzy.sh) ----------------------------------------------------------
env_tmp=$(mktemp)
{
  printf '# Generated by scripts/setup.sh (mode: %s); rerun `make setup` instead of editing.\n' "$MODE"
  printf '# Usage: source %s   (bash or zsh; one env file per shell)\n' "$ENV_FILE"
  printf "_h3r_root='%s'\n" "$ROOT"
  printf "_h3r_install='%s'\n" "$INSTALL"
  cat <<'EOF'
# colcon's setup scripts read unset variables: lift `set -u` while sourcing, restore it after.
case $- in *u*) _h3r_nounset=1; set +u ;; *) _h3r_nounset= ;; esac
_h3r_prepend() {  # _h3r_prepend VAR DIR: put DIR first in VAR unless it is already there
  eval "_h3r_cur=\"\${$1:-}\""
  case ":$_h3r_cur:" in
    *":$2:"*) ;;
    *) eval "export $1=\"\$2\${_h3r_cur:+:\$_h3r_cur}\"" ;;
  esac
}
# Drop this checkout's venvs and install trees from VAR: the shell may have sourced the env
# file of another distro (env.sh vs env-jazzy.sh), whose libraries and messages must not mix.
_h3r_strip() {
  eval "_h3r_rest=\"\${$1:-}\""
  _h3r_keep=
  while [ -n "$_h3r_rest" ]; do
    _h3r_part=${_h3r_rest%%:*}
    case $_h3r_rest in *:*) _h3r_rest=${_h3r_rest#*:} ;; *) _h3r_rest= ;; esac
    case $_h3r_part in
      "$_h3r_root"/.venv*|"$_h3r_root"/install*|"") ;;
      *) _h3r_keep=${_h3r_keep:+$_h3r_keep:}$_h3r_part ;;
    esac
  done
  if [ -n "$_h3r_keep" ]; then eval "export $1=\"\$_h3r_keep\""; else unset "$1"; fi
}
for _h3r_var in PATH LD_LIBRARY_PATH PYTHONPATH AMENT_PREFIX_PATH CMAKE_PREFIX_PATH COLCON_PREFIX_PATH; do
  _h3r_strip "$_h3r_var"
done
unset -f _h3r_strip
unset _h3r_var _h3r_rest _h3r_keep _h3r_part
EOF
  if [[ $MODE == distro ]]; then
    cat <<'EOF'
if [ -z "${ROS_DISTRO:-}" ]; then
  echo "env.sh: source your ROS 2 distribution first (. /opt/ros/<distro>/setup.bash)" >&2
  if [ -n "$_h3r_nounset" ]; then set -u; fi
  return 1
fi
EOF
  fi
  printf '. "$_h3r_root/.venv%s/bin/activate"\n' "$SUFFIX"
  if [[ $MODE == wheels ]]; then
    cat <<'EOF'
# ROS 2 from PyPI wheels: their shared libraries must be on the loader path before Python
# starts; with it set here, the wheels' own re-exec hook has nothing left to do.
export _ROS_WHEELS_BOOTSTRAP_COMPLETE=1
_h3r_prepend AMENT_PREFIX_PATH "$VIRTUAL_ENV"
EOF
    ros_lib_dirs | while read -r d; do
      printf '_h3r_prepend LD_LIBRARY_PATH "$VIRTUAL_ENV%s"\n' "${d#"$VENV"}"
    done
    echo 'export RMW_IMPLEMENTATION=rmw_fastrtps_cpp  # the only RMW the wheels ship'
  else
    echo 'export RMW_IMPLEMENTATION="${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}"'
  fi
  cat <<'EOF'
if [ -n "${ZSH_VERSION:-}" ]; then
  . "$_h3r_root/$_h3r_install/local_setup.zsh"
else
  . "$_h3r_root/$_h3r_install/local_setup.bash"
fi
# The working tree comes before the installed copy, so Python edits need no rebuild.
_h3r_prepend PYTHONPATH "$_h3r_root"
# console scripts (human3r-process, human3r-replay, human3r_node) without `ros2 run`
_h3r_prepend PATH "$_h3r_root/$_h3r_install/human3r_ros/lib/human3r_ros"
unset -f _h3r_prepend
unset _h3r_cur _h3r_install
if [ -n "$_h3r_nounset" ]; then set -u; fi
unset _h3r_nounset
EOF
} > "$env_tmp"
if cmp -s "$env_tmp" "$ENV_FILE"; then
  rm -f "$env_tmp"
else
  chmod 644 "$env_tmp"
  mv "$env_tmp" "$ENV_FILE"
  log "wrote $ENV_FILE"
fi
log "ready: source $ENV_FILE"
