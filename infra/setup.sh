#!/usr/bin/env bash
# One-time setup for a fresh Debian machine with Node 20 (the README's setup step; CI runs it too):
#   - nats-server and postgresql from apt, only when missing (we never start the system services: the launcher
#     and the tests run private servers on free ports);
#   - pnpm through corepack;
#   - the workspace's dependencies.
# Idempotent, and silent when everything is already there. Works as root, or as a user with sudo.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# The corepack bundled with Node 20 cannot verify the signatures of current pnpm releases, and the registry's
# signing keys are newer than even a current corepack may know: skip that key check and never prompt.
export COREPACK_ENABLE_DOWNLOAD_PROMPT=0 COREPACK_INTEGRITY_KEYS=0

say() { printf 'setup: %s\n' "$*"; }

# Runs a command with its output hidden unless it fails.
quietly() {
  local log status=0
  log="$(mktemp)"
  "$@" >"$log" 2>&1 || status=$?
  if [ "$status" -ne 0 ]; then
    cat "$log" >&2
    say "failed ($status): $*" >&2
  fi
  rm -f "$log"
  return "$status"
}

as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    say "need root for: $* (run as root or install sudo)" >&2
    return 1
  fi
}

have_nats() { command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ]; }
have_initdb() { command -v initdb >/dev/null 2>&1 || compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; }

packages=()
have_nats || packages+=(nats-server)
have_initdb || packages+=(postgresql)
if [ "${#packages[@]}" -gt 0 ]; then
  say "installing ${packages[*]} with apt-get"
  # Keep the package scripts from starting the system services during installation (policy-rc.d is Debian's
  # switch for that); an existing policy file is left alone.
  policy=/usr/sbin/policy-rc.d
  added_policy=no
  if [ ! -e "$policy" ]; then
    as_root sh -c "printf '#!/bin/sh\nexit 101\n' > $policy && chmod 755 $policy"
    added_policy=yes
  fi
  install_status=0
  {
    quietly as_root env DEBIAN_FRONTEND=noninteractive apt-get update &&
      quietly as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${packages[@]}"
  } || install_status=$?
  if [ "$added_policy" = yes ]; then as_root rm -f "$policy"; fi
  [ "$install_status" -eq 0 ] || exit "$install_status"
fi

# pnpm, in the version package.json pins, through corepack. A pnpm that exists but cannot run (the old bundled
# corepack failing its signature check) counts as missing.
if ! pnpm --version >/dev/null 2>&1; then
  say "installing corepack and enabling pnpm"
  quietly as_root npm install --global --no-fund --no-audit corepack@latest
  quietly as_root corepack enable
  hash -r
  quietly pnpm --version
fi

if [ -f pnpm-lock.yaml ]; then
  quietly pnpm install --frozen-lockfile
else
  say "no pnpm-lock.yaml yet: resolving dependencies"
  quietly pnpm install
fi
