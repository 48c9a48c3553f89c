#!/usr/bin/env bash
# Install (or remove) EdgeMate as a systemd service. Idempotent: run it again after an
# update and it only changes what differs. See systemd/README.md.
#
#   sudo systemd/install.sh [--profile rpi4|rpi5|x86-mini|default] [--no-start] [--allow-tcp]
#   sudo systemd/install.sh --uninstall [--purge]
#   (PYTHON=/path/to/python3 picks the interpreter of the venv; default /usr/bin/python3)
#
# What it does: system packages (Debian/Raspberry Pi OS), the system user `edgemate` (groups
# video, render, audio), a virtual environment in /opt/edgemate with EdgeMate from this
# checkout (and the command /usr/local/bin/edgemate), /etc/edgemate/config.yaml from a board
# profile (never overwritten), the unit /etc/systemd/system/edgemate.service, enabled (and
# started unless --no-start).
# --uninstall stops and removes the unit and /opt/edgemate; --purge also removes the user,
# /etc/edgemate, /var/lib/edgemate and /var/cache/edgemate.
set -euo pipefail

PREFIX=/opt/edgemate
CONF_DIR=/etc/edgemate
UNIT_DIR=/etc/systemd/system
UNIT=edgemate.service
SERVICE_USER=edgemate
LINK=/usr/local/bin/edgemate
SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PROFILE=""
START=1
ALLOW_TCP=0
ACTION=install
PURGE=0

usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit "${1:-0}"; }  # the header
say() { printf 'install.sh: %s\n' "$*"; }
die() { printf 'install.sh: %s\n' "$*" >&2; exit 1; }

while [ $# -gt 0 ]; do
  case "$1" in
    --profile) PROFILE="${2:?--profile needs a name}"; shift 2 ;;
    --profile=*) PROFILE="${1#*=}"; shift ;;
    --no-start) START=0; shift ;;
    --allow-tcp) ALLOW_TCP=1; shift ;;
    --uninstall) ACTION=uninstall; shift ;;
    --purge) PURGE=1; shift ;;
    -h|--help) usage 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done

[ "$(id -u)" = 0 ] || die "run as root (sudo $0 $*)"
have_systemd() { [ -d /run/systemd/system ]; }  # booted with systemd (not a chroot or container build)

guess_profile() {
  local model=""
  [ -r /proc/device-tree/model ] && model="$(tr -d '\0' < /proc/device-tree/model)"
  case "$model" in
    *"Raspberry Pi 5"*) echo rpi5 ;;
    *"Raspberry Pi 4"*) echo rpi4 ;;
    *) [ "$(uname -m)" = x86_64 ] && echo x86-mini || echo default ;;
  esac
}

uninstall() {
  if have_systemd; then
    systemctl disable --now "$UNIT" 2>/dev/null || true
  else
    systemctl disable "$UNIT" >/dev/null 2>&1 || true
  fi
  rm -f "$UNIT_DIR/multi-user.target.wants/$UNIT" "$UNIT_DIR/$UNIT"
  rm -rf "$UNIT_DIR/$UNIT.d/10-allow-tcp.conf"
  rmdir "$UNIT_DIR/$UNIT.d" 2>/dev/null || true
  rm -rf "$PREFIX"
  [ "$(readlink "$LINK" 2>/dev/null)" = "$PREFIX/bin/edgemate" ] && rm -f "$LINK"
  have_systemd && systemctl daemon-reload
  say "removed the unit and $PREFIX"
  if [ "$PURGE" = 1 ]; then
    rm -rf "$CONF_DIR" /var/lib/edgemate /var/cache/edgemate /var/log/edgemate
    if id "$SERVICE_USER" >/dev/null 2>&1; then userdel "$SERVICE_USER"; fi
    say "purged $CONF_DIR, /var/lib/edgemate, /var/cache/edgemate and the user $SERVICE_USER"
  else
    say "kept $CONF_DIR, /var/lib/edgemate and the user $SERVICE_USER (--purge removes them)"
  fi
}

install_packages() {
  command -v apt-get >/dev/null || { say "no apt-get: install python3-venv, ffmpeg and PortAudio yourself"; return; }
  local missing=""
  for p in python3-venv ffmpeg portaudio19-dev procps; do
    dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
  done
  if [ -n "$missing" ]; then
    say "installing system packages:$missing"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing
  fi
}

ensure_user() {
  if ! id "$SERVICE_USER" >/dev/null 2>&1; then
    useradd --system --user-group --home-dir /var/lib/edgemate --no-create-home \
      --shell /usr/sbin/nologin --comment "EdgeMate appliance" "$SERVICE_USER"
    say "created the system user $SERVICE_USER"
  fi
  local group
  for group in video render audio; do
    # `render` exists only where a DRM render node does (most Bookworm systems).
    if getent group "$group" >/dev/null && ! id -nG "$SERVICE_USER" | tr ' ' '\n' | grep -qx "$group"; then
      usermod -aG "$group" "$SERVICE_USER"
      say "added $SERVICE_USER to $group"
    fi
  done
}

runs_as_service() { runuser -u "$SERVICE_USER" -- "$@" >/dev/null 2>&1; }

install_venv() {
  # The system's Python, not whichever python3 comes first in root's PATH: a pyenv or
  # conda interpreter under /root is one the service user cannot even execute.
  local python="${PYTHON:-/usr/bin/python3}"
  [ -x "$python" ] || python="$(command -v python3)" || die "no python3 (install python3-venv)"
  if [ -x "$PREFIX/bin/python" ] && ! runs_as_service "$PREFIX/bin/python" -c ''; then
    say "recreating $PREFIX: $SERVICE_USER cannot run its interpreter ($(readlink -f "$PREFIX/bin/python"))"
    rm -rf "$PREFIX"
  fi
  [ -x "$PREFIX/bin/python" ] || "$python" -m venv "$PREFIX"
  runs_as_service "$PREFIX/bin/python" -c '' || die "$SERVICE_USER cannot run $PREFIX/bin/python" \
    "(-> $(readlink -f "$PREFIX/bin/python")): give a system-wide Python 3.10+, e.g. PYTHON=/usr/bin/python3 $0"
  "$PREFIX/bin/pip" install -q --upgrade pip
  # A regular (non-editable) install: the configs and models land in $PREFIX/share/edgemate.
  "$PREFIX/bin/pip" install -q --upgrade "$SRC[audio]"
  say "EdgeMate $("$PREFIX/bin/edgemate" --version | cut -d' ' -f2) in $PREFIX"
  # `edgemate status|say|stop` for everyone in the group edgemate; never over another file.
  if [ ! -e "$LINK" ] || [ "$(readlink "$LINK")" = "$PREFIX/bin/edgemate" ]; then
    ln -sfn "$PREFIX/bin/edgemate" "$LINK"
  else
    say "left $LINK alone (not ours): use $PREFIX/bin/edgemate"
  fi
}

install_config() {
  install -d -m 0755 "$CONF_DIR"
  if [ -e "$CONF_DIR/config.yaml" ]; then
    say "kept $CONF_DIR/config.yaml"
    return
  fi
  local profile="${PROFILE:-$(guess_profile)}"
  [ -f "$SRC/firmware_config/$profile.yaml" ] || die "no profile $profile in $SRC/firmware_config"
  cat > "$CONF_DIR/config.yaml" <<EOF
# EdgeMate configuration of this box. Only what differs from the profile goes here; every
# key is documented in $PREFIX/share/edgemate/firmware_config/default.yaml.
# Check: edgemate check -c $CONF_DIR/config.yaml; apply: systemctl reload edgemate
extends: $profile
display:
  sink: window
  fullscreen: true
  driver: kmsdrm
  # No display (another program holds DRM master, no screen attached): keep running with
  # nothing shown, so the control socket, status and metrics still answer and say why.
  # (record would fill the disk: a recording has no size limit.)
  fallback: null
EOF
  chmod 0644 "$CONF_DIR/config.yaml"
  say "wrote $CONF_DIR/config.yaml (extends $profile)"
}

install_unit() {
  install -m 0644 "$SRC/systemd/$UNIT" "$UNIT_DIR/$UNIT"
  local dropin="$UNIT_DIR/$UNIT.d/10-allow-tcp.conf"
  if [ "$ALLOW_TCP" = 1 ]; then
    install -d -m 0755 "$UNIT_DIR/$UNIT.d"
    cat > "$dropin" <<'EOF'
# control.tcp_port: loopback TCP for the control API (written by install.sh --allow-tcp).
[Service]
IPAddressAllow=localhost
RestrictAddressFamilies=AF_INET AF_INET6
EOF
    say "allowed loopback TCP ($dropin); set control.tcp_port in $CONF_DIR/config.yaml"
  elif [ -e "$dropin" ]; then
    rm -f "$dropin"
    say "removed $dropin (no --allow-tcp)"
  fi
  if have_systemd; then
    systemctl daemon-reload
    systemctl enable "$UNIT" >/dev/null
    if [ "$START" = 1 ]; then
      systemctl restart "$UNIT"
      say "started: journalctl -u edgemate -f; edgemate status"
    fi
  else
    systemctl enable "$UNIT" >/dev/null 2>&1 || ln -sf "$UNIT_DIR/$UNIT" "$UNIT_DIR/multi-user.target.wants/$UNIT"
    say "enabled $UNIT (systemd is not running here: it starts at the next boot)"
  fi
}

if [ "$ACTION" = uninstall ]; then
  uninstall
  exit 0
fi
install_packages
ensure_user
install_venv
check_as_service() {
  # As the service will run: its user (so a file it cannot read shows now), its home and its
  # cache directory. That also decodes the avatar's template loop into /var/cache/edgemate,
  # so the first start maps it instead of decoding it (a minute on a Pi's SD card).
  install -d -o "$SERVICE_USER" -g "$SERVICE_USER" -m 0750 /var/lib/edgemate /var/cache/edgemate
  # A clean environment, like the unit's: nothing of this shell (EDGEMATE_* overrides) leaks in.
  if (cd /var/lib/edgemate && runuser -u "$SERVICE_USER" -- env -i PATH=/usr/bin:/bin LANG=C.UTF-8 \
        HOME=/var/lib/edgemate CACHE_DIRECTORY=/var/cache/edgemate \
        "$PREFIX/bin/edgemate" check -c "$CONF_DIR/config.yaml"); then
    say "checked the config and models as $SERVICE_USER"
  else
    say "edgemate check reported problems (above); the service exits 78 until they are fixed"
  fi
}

install_config
check_as_service
install_unit
