#!/usr/bin/env bash
# Install (or remove) EdgeMate as a systemd service. Idempotent: run it again after an
# update and it only changes what differs. See systemd/README.md.
#
#   sudo systemd/install.sh [--profile rpi4|rpi5|x86-mini|default] [--no-start] [--allow-tcp]
#   sudo systemd/install.sh --uninstall [--purge]
#
# What it does: system packages (Debian/Raspberry Pi OS), the system user `edgemate` (groups
# video, render, audio), a virtual environment in /opt/edgemate with EdgeMate from this
# checkout, /etc/edgemate/config.yaml from a board profile (never overwritten), the unit
# /etc/systemd/system/edgemate.service, enabled (and started unless --no-start).
# --uninstall stops and removes the unit and /opt/edgemate; --purge also removes the user,
# /etc/edgemate and /var/lib/edgemate.
set -euo pipefail

PREFIX=/opt/edgemate
CONF_DIR=/etc/edgemate
UNIT_DIR=/etc/systemd/system
UNIT=edgemate.service
SERVICE_USER=edgemate
SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PROFILE=""
START=1
ALLOW_TCP=0
ACTION=install
PURGE=0

usage() { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
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
  have_systemd && systemctl daemon-reload
  say "removed the unit and $PREFIX"
  if [ "$PURGE" = 1 ]; then
    rm -rf "$CONF_DIR" /var/lib/edgemate /var/cache/edgemate /var/log/edgemate
    if id "$SERVICE_USER" >/dev/null 2>&1; then userdel "$SERVICE_USER"; fi
    say "purged $CONF_DIR, /var/lib/edgemate and the user $SERVICE_USER"
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

install_venv() {
  [ -x "$PREFIX/bin/python" ] || python3 -m venv "$PREFIX"
  "$PREFIX/bin/pip" install -q --upgrade pip
  # A regular (non-editable) install: the configs and models land in $PREFIX/share/edgemate.
  "$PREFIX/bin/pip" install -q --upgrade "$SRC[audio]"
  say "EdgeMate $("$PREFIX/bin/edgemate" --version | cut -d' ' -f2) in $PREFIX"
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
  # No window, no kiosk: record to the state directory rather than exit.
  fallback: record
  record:
    path: /var/lib/edgemate/fallback-recording.mp4
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
install_config
"$PREFIX/bin/edgemate" check -c "$CONF_DIR/config.yaml" || \
  say "edgemate check reported problems (above); the service exits 78 until they are fixed"
install_unit
