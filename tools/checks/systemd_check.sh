#!/usr/bin/env bash
# The shipped unit under a real systemd: Debian bookworm's systemd 252 (the version of
# Raspberry Pi OS Bookworm) booted as PID 1 in a systemd-nspawn container, EdgeMate installed
# in it by systemd/install.sh from this working tree, then checked for real:
#
#   1. the service reaches active (running) through READY=1
#   2. a frozen frame loop is killed by the watchdog (WatchdogSec) and restarted
#   3. systemctl reload with a bad config keeps the running one and logs why
#   4. systemctl stop ends it within a second
#   5. a user added with usermod -aG edgemate runs edgemate status, say and stop under the
#      shipped hardening (ProtectProc=invisible)
#   6. the journal holds one-line reasons, no tracebacks
#
#   sudo tools/checks/systemd_check.sh [--clean]
#
# Root; idempotent: the container root is built once (debootstrap, about 2 minutes and
# 600 MB) in $EDGEMATE_SYSTEMD_ROOT (default /var/tmp/edgemate-systemd-root) and reused;
# --clean deletes it afterwards. The container is powered off and its cgroups removed on
# every way out. Needs the Debian mirror and PyPI (install.sh installs into a venv).
set -euo pipefail

ROOT="${EDGEMATE_SYSTEMD_ROOT:-/var/tmp/edgemate-systemd-root}"
SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
CLEAN=0
[ "${1:-}" = "--clean" ] && CLEAN=1
NSPAWN_PID=""
RESULTS=()
FAILED=0

say() { printf 'systemd_check: %s\n' "$*"; }
die() { printf 'systemd_check: %s\n' "$*" >&2; exit 1; }
pass() { local text="${1//$'\n'/ }"; RESULTS+=("PASS  $text"); say "PASS $text"; }
fail() { local text="$1: ${2//$'\n'/ }"; RESULTS+=("FAIL  $text"); say "FAIL $text"; FAILED=1; }

[ "$(id -u)" = 0 ] || die "run as root (sudo $0)"

sd() { nsenter -t "$(pgrep -P "$NSPAWN_PID" -x systemd)" -a -- "$@"; }

teardown() {
  if [ -n "$NSPAWN_PID" ] && kill -0 "$NSPAWN_PID" 2>/dev/null; then
    sd systemctl poweroff >/dev/null 2>&1 || true
    for _ in $(seq 100); do kill -0 "$NSPAWN_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$NSPAWN_PID" 2>/dev/null || true
  fi
  # nspawn leaves empty payload/supervisor cgroups behind (NOTES.md).
  for top in /sys/fs/cgroup/unified /sys/fs/cgroup/systemd /sys/fs/cgroup; do
    find "$top" -depth -type d \( -name 'payload' -o -name 'supervisor' \) -path '*edgemate*' \
      -exec rmdir {} + 2>/dev/null || true
  done
  [ "$CLEAN" = 1 ] && rm -rf "$ROOT"
  return 0
}
trap teardown EXIT

# --- the container root ---------------------------------------------------------------
need=""
command -v systemd-nspawn >/dev/null || need="$need systemd-container"
command -v debootstrap >/dev/null || need="$need debootstrap"
if [ -n "$need" ]; then
  say "installing$need"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need >/dev/null
fi
if [ ! -x "$ROOT/usr/lib/systemd/systemd" ] || [ ! -e "$ROOT/.edgemate-root-ready" ]; then
  rm -rf "$ROOT"
  say "building a bookworm root in $ROOT (debootstrap)"
  # gcc and python3-dev: PyAudio (the audio extra) has no Linux wheel and builds from source.
  debootstrap --variant=minbase \
    --include=systemd,systemd-sysv,dbus,python3,python3-venv,python3-dev,gcc,libc6-dev,procps,passwd,ca-certificates \
    bookworm "$ROOT" "$MIRROR" >/dev/null
  echo edgemate-check > "$ROOT/etc/hostname"
  touch "$ROOT/.edgemate-root-ready"
fi
# The working tree as a user would have it (tracked and new files, no venvs or caches).
rm -rf "$ROOT/opt/src" && mkdir -p "$ROOT/opt/src"
(cd "$SRC" && git ls-files -co --exclude-standard -z | xargs -0 -I{} cp --parents {} "$ROOT/opt/src/")
cp /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null || true
# A network behind a TLS-inspecting proxy: the container trusts what the host trusts, and
# pip inside uses the host's settings (index, constraints) as a user's pip would.
cp /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/ssl/certs/ca-certificates.crt" 2>/dev/null || true
[ -f /etc/pip.conf ] && cp /etc/pip.conf "$ROOT/etc/pip.conf"
[ -d /etc/xdg/pip ] && mkdir -p "$ROOT/etc/xdg" && cp -r /etc/xdg/pip "$ROOT/etc/xdg/"

# --- boot -----------------------------------------------------------------------------
say "booting systemd in the container"
SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1 systemd-nspawn -q -D "$ROOT" --boot --console=pipe \
  --register=no --keep-unit --system-call-filter=bpf --machine=edgemate-check \
  >/tmp/edgemate-systemd-console.log 2>&1 &
NSPAWN_PID=$!
for _ in $(seq 100); do pgrep -P "$NSPAWN_PID" -x systemd >/dev/null && break; sleep 0.1; done
pgrep -P "$NSPAWN_PID" -x systemd >/dev/null || die "systemd did not start (see /tmp/edgemate-systemd-console.log)"
for _ in $(seq 100); do
  state="$(sd systemctl is-system-running 2>/dev/null || true)"
  case "$state" in running|degraded) break ;; esac
  sleep 0.2
done
say "systemd $(sd systemctl --version | head -1 | awk '{print $2}'), system $state"

# --- install --------------------------------------------------------------------------
say "systemd/install.sh --profile default (pip install from the working tree)"
if ! sd bash /opt/src/systemd/install.sh --profile default >/tmp/edgemate-install.log 2>&1; then
  tail -5 /tmp/edgemate-install.log
  sd journalctl -u edgemate -n 40 --no-pager -o cat 2>/dev/null | tail -25
  die "install.sh failed (log: /tmp/edgemate-install.log)"
fi

active() { [ "$(sd systemctl show -p ActiveState --value edgemate)" = active ] \
  && [ "$(sd systemctl show -p SubState --value edgemate)" = running ]; }
wait_for() {  # wait_for SECONDS COMMAND...
  local until=$((SECONDS + $1)); shift
  while [ $SECONDS -lt $until ]; do "$@" && return 0; sleep 0.2; done
  return 1
}

# 1. READY=1: Type=notify reaches active (running) only after READY.
sd systemctl restart edgemate || true
if wait_for 120 active; then
  pass "active (running) through READY=1: $(sd systemctl show -p StatusText --value edgemate)"
else
  fail "ready" "state $(sd systemctl show -p ActiveState,SubState --value edgemate | tr '\n' ' ')"
fi

# 2. Watchdog: freeze the process (SIGSTOP): no WATCHDOG=1, systemd kills and restarts it.
main="$(sd systemctl show -p MainPID --value edgemate)"
restarts="$(sd systemctl show -p NRestarts --value edgemate)"
more_restarts() { [ "$(sd systemctl show -p NRestarts --value edgemate)" -gt "$restarts" ]; }
sd kill -STOP "$main" 2>/dev/null || true
# WatchdogSec=10, then SIGABRT; a stopped process gets SIGKILL after TimeoutAbortSec.
if wait_for 90 more_restarts && wait_for 120 active; then
  pass "frozen loop: watchdog killed pid $main, restarted (NRestarts $(sd systemctl show -p NRestarts --value edgemate))"
else
  fail "watchdog" "no restart after freezing pid $main"
fi

# 3. Reload with a bad config: the running one stays, the journal says why.
main="$(sd systemctl show -p MainPID --value edgemate)"
sd cp /etc/edgemate/config.yaml /etc/edgemate/config.yaml.good
printf 'extends: default\ngovernor:\n  hot_c: 1000\n' | sd tee /etc/edgemate/config.yaml >/dev/null
sd systemctl reload edgemate || true
sleep 3
if active && [ "$(sd systemctl show -p MainPID --value edgemate)" = "$main" ] \
   && sd journalctl -u edgemate --since "-30s" -o cat | grep -q "reload rejected"; then
  pass "bad reload kept pid $main: $(sd journalctl -u edgemate --since '-30s' -o cat | grep -m1 'reload rejected')"
else
  fail "reload" "not kept, or no reason in the journal"
fi
sd mv /etc/edgemate/config.yaml.good /etc/edgemate/config.yaml

# 5. A member of the group by usermod -aG (before 4: it needs the service running).
sd bash -c 'id tester >/dev/null 2>&1 || useradd -m tester; usermod -aG edgemate tester'
sd bash -c 'python3 - <<EOF
import math, struct, wave
with wave.open("/home/tester/hello.wav", "wb") as w:
    w.setnchannels(1); w.setsampwidth(2); w.setframerate(16000)
    w.writeframes(b"".join(struct.pack("<h", int(8000 * math.sin(i / 8))) for i in range(16000)))
EOF
chown tester /home/tester/hello.wav'
ok=1
out_status="$(sd runuser -u tester -- edgemate status 2>&1)" || ok=0
out_say="$(sd runuser -u tester -- edgemate say /home/tester/hello.wav 2>&1)" || ok=0
out_stop="$(sd runuser -u tester -- edgemate stop 2>&1)" || ok=0
if [ $ok = 1 ]; then
  pass "group member by usermod -aG: status ($(echo "$out_status" | head -1)), say, stop ($(echo "$out_stop" | tail -1))"
else
  fail "group member" "$(printf '%s | %s | %s' "$out_status" "$out_say" "$out_stop" | tr '\n' ' ' | cut -c1-300)"
fi

# 4. Stop within a second.
start_ms=$(($(date +%s%N) / 1000000))
sd systemctl stop edgemate
took_ms=$(($(date +%s%N) / 1000000 - start_ms))
if [ "$took_ms" -lt 1000 ]; then
  pass "systemctl stop: $took_ms ms"
else
  fail "stop" "took $took_ms ms"
fi

# 6. One-line reasons only.
if sd journalctl -u edgemate -o cat | grep -q "Traceback"; then
  fail "journal" "a traceback: $(sd journalctl -u edgemate -o cat | grep -m1 -A3 Traceback | tr '\n' ' ')"
else
  pass "journal: no tracebacks ($(sd journalctl -u edgemate -o cat | wc -l) lines)"
fi

printf '%s\n' "" "${RESULTS[@]}"
[ $FAILED = 0 ] && say "all checks passed" || say "some checks failed"
exit $FAILED
