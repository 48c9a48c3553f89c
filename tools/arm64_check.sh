#!/usr/bin/env bash
# EdgeMate on arm64, checked under emulation: an arm64 Debian bookworm userland run by
# qemu-user, EdgeMate installed into it from this working tree as a user would (pip install .),
# then for each emulated CPU
#
#   cortex-a72  Raspberry Pi 4 (no fp16 arithmetic)
#   cortex-a76  Raspberry Pi 5 (fp16 arithmetic)
#   max         every feature qemu has, fp16 arithmetic like an Apple M1
#
#   1. edgemate check (default avatar, shipped audio model)
#   2. the torch-free tests that exercise ncnn's arithmetic and the models
#   3. edgemate demo with the record sink (an MP4 and a frame of it come back)
#   4. python -m tools.parity dump: the audio model and both renderer stages on fixed inputs,
#      with the options the sidecars ship and with ncnn's defaults
#
# and afterwards, on this machine, the same dump on x86 and `tools.parity compare` against each
# CPU: the parity table (mouth parameters within 0.01, crops >= 40 dB) goes to the summary.
#
#   sudo tools/arm64_check.sh [--cpus "cortex-a72 cortex-a76 max"] [--bundle DIR] [--full-suite]
#                             [--clean]
#
#   --bundle DIR  the parity of another avatar bundle (one the avatar builder made) instead of
#                 the default avatar's (check and demo still use the default avatar)
#   --full-suite  also the whole torch-free suite once, on cortex-a72 (slow: timed, not CI)
#   --clean       delete the arm64 root afterwards
#
# Root; idempotent: the root is built once (debootstrap, about 5 minutes, 700 MB) in
# $EDGEMATE_ARM64_ROOT (default /var/tmp/edgemate-arm64-root) and reused; the project is
# reinstalled from the working tree on every run. Every mount is undone on every way out.
# Results: $EDGEMATE_ARM64_OUT (default build/arm64-check) with summary.md. Needs the Debian
# mirror and PyPI. Timings under emulation mean nothing (fp32 is about 80x slower than x86,
# fp16 about 330x); outputs do.
set -euo pipefail

SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ROOT="${EDGEMATE_ARM64_ROOT:-/var/tmp/edgemate-arm64-root}"
OUT="${EDGEMATE_ARM64_OUT:-$SRC/build/arm64-check}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
CPUS="cortex-a72 cortex-a76 max"
FULL_SUITE=0
CLEAN=0
# ncnn's arithmetic, the models and the renderers: what an fp16 or Winograd difference breaks.
NUMERIC_TESTS="tests/test_models.py tests/test_model_shapes.py tests/test_upscale.py
 tests/test_patch_painter.py tests/test_chunk_invariance.py tests/test_default_avatar.py
 tests/test_compositor.py tests/test_template_cache.py tests/test_mouth_cli.py"
GUEST_SRC=/opt/edgemate-src
GUEST_VENV=/opt/edgemate-venv
GUEST_OUT=/opt/edgemate-out
GUEST_BUNDLE=/opt/edgemate-bundle
BUNDLE=""

# All of it in one function: bash reads a script as it runs, so an edit to this file
# during a run (it takes minutes) would otherwise run half of each version.
main() {
while [ $# -gt 0 ]; do
  case "$1" in
    --cpus) CPUS="$2"; shift 2 ;;
    --bundle) BUNDLE="$(cd "$2" && pwd)" || exit 2; shift 2 ;;
    --full-suite) FULL_SUITE=1; shift ;;
    --clean) CLEAN=1; shift ;;
    -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
    *) echo "arm64_check: unknown argument '$1' (allowed: --cpus LIST, --bundle DIR, --full-suite, --clean)" >&2
       exit 2 ;;
  esac
done

RESULTS=()
FAILED=0
say() { printf 'arm64_check: %s\n' "$*"; }
die() { printf 'arm64_check: %s\n' "$*" >&2; exit 1; }
record() {  # cpu step status seconds detail
  RESULTS+=("$(printf '| %-10s | %-8s | %-4s | %6s | %s |' "$1" "$2" "$3" "$4" "$5")")
  say "$1 $2: $3 (${4} s) $5"
  [ "$3" = PASS ] || FAILED=1
}

[ "$(id -u)" = 0 ] || die "run as root (sudo $0)"

unmount_all() {
  # Deepest first; the rbinds expose the live /dev and /sys, so never delete ROOT before this.
  local target
  for target in dev sys proc "${GUEST_SRC#/}" "${GUEST_OUT#/}"; do
    if mountpoint -q "$ROOT/$target" 2>/dev/null; then
      umount -R "$ROOT/$target" 2>/dev/null || umount -R -l "$ROOT/$target" || true
    fi
  done
}
teardown() {
  unmount_all
  if [ "$CLEAN" = 1 ] && [ -d "$ROOT" ]; then
    if grep -q " $ROOT/" /proc/mounts; then
      say "not deleting $ROOT: something is still mounted under it"
    else
      rm -rf "$ROOT"
    fi
  fi
  return 0
}
trap teardown EXIT

# --- the emulator -------------------------------------------------------------------------
need=""
command -v qemu-aarch64-static >/dev/null || need="$need qemu-user-static"
command -v debootstrap >/dev/null || need="$need debootstrap"
command -v rsync >/dev/null || need="$need rsync"
[ -f /usr/share/keyrings/debian-archive-keyring.gpg ] || need="$need debian-archive-keyring"
if [ -n "$need" ]; then
  say "installing$need"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need >/dev/null
fi
BINFMT=/proc/sys/fs/binfmt_misc
[ -e "$BINFMT/register" ] || mount -t binfmt_misc binfmt_misc "$BINFMT" \
  || die "cannot mount binfmt_misc (a container without it cannot run foreign binaries)"
# Debian registers qemu-aarch64 without the F flag: the kernel then looks the interpreter up
# inside the chroot, where it does not exist. F opens it now, from the host.
entry="$BINFMT/qemu-aarch64"
if [ -e "$entry" ] && ! { grep -q '^flags: .*F' "$entry" && grep -q 'qemu-aarch64-static' "$entry"; }; then
  echo -1 > "$entry"
fi
if [ ! -e "$entry" ]; then
  magic='\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00'
  mask='\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff'
  printf ':qemu-aarch64:M::%s:%s:/usr/bin/qemu-aarch64-static:FPC\n' "$magic" "$mask" \
    > "$BINFMT/register"
fi

# --- the arm64 root (built once) ----------------------------------------------------------
if [ ! -e "$ROOT/.edgemate-root-complete" ]; then
  unmount_all
  rm -rf "$ROOT"
  say "building the arm64 bookworm root in $ROOT (debootstrap, about 5 minutes)"
  started=$SECONDS
  debootstrap --arch=arm64 --variant=minbase \
    --include=python3,python3-venv,python3-pip,ca-certificates,ffmpeg \
    bookworm "$ROOT" "$MIRROR" > "$ROOT.debootstrap.log" 2>&1 \
    || die "debootstrap failed: see $ROOT.debootstrap.log"
  touch "$ROOT/.edgemate-root-complete"
  say "root built in $((SECONDS - started)) s"
fi
# The host's network and certificate setup, refreshed each run (a proxy or its CA may change):
# the host's whole CA bundle (it may hold a proxy's CA) is what pip in the root trusts.
cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null || true
HOST_CA="${SSL_CERT_FILE:-${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}}"
GUEST_CA=/etc/ssl/certs/ca-certificates.crt
if [ -f "$HOST_CA" ]; then
  cp -L "$HOST_CA" "$ROOT/etc/edgemate-host-ca.crt"
  GUEST_CA=/etc/edgemate-host-ca.crt
fi
PROXIES=""
for var in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY; do
  [ -n "${!var:-}" ] && PROXIES="$PROXIES $var=${!var}"
done

mkdir -p "$ROOT/proc" "$ROOT/sys" "$ROOT/dev" "$ROOT$GUEST_SRC" "$ROOT$GUEST_OUT" "$OUT"
mount -t proc proc "$ROOT/proc"
mount --rbind /sys "$ROOT/sys" && mount --make-rslave "$ROOT/sys"
mount --rbind /dev "$ROOT/dev" && mount --make-rslave "$ROOT/dev"
mount --bind "$OUT" "$ROOT$GUEST_OUT"

guest() {  # QEMU_CPU=... guest CMD: run a shell command in the root as the given CPU
  # shellcheck disable=SC2086  # PROXIES is a list of VAR=value words
  chroot "$ROOT" /usr/bin/env -i HOME=/root PATH="$GUEST_VENV/bin:/usr/bin:/bin" LANG=C.UTF-8 \
    QEMU_CPU="${QEMU_CPU:-max}" SDL_AUDIODRIVER=dummy SDL_VIDEODRIVER=dummy \
    PIP_CERT="$GUEST_CA" SSL_CERT_FILE="$GUEST_CA" PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_DEFAULT_TIMEOUT=180 $PROXIES /bin/sh -c "$1"
}

started=$SECONDS
# The working tree as git sees it (tracked + untracked, not ignored): what a user would clone,
# plus what is being worked on. Copied, not bind-mounted, so pip builds as from a clone.
(cd "$SRC" && git ls-files -co --exclude-standard -z) \
  | rsync -a --delete --from0 --files-from=- "$SRC/" "$ROOT$GUEST_SRC/"
GUEST_PARITY_ARGS=""
HOST_PARITY_ARGS=()
if [ -n "$BUNDLE" ]; then
  [ -f "$BUNDLE/avatar.yaml" ] || die "--bundle $BUNDLE: no avatar.yaml there"
  rsync -a --delete "$BUNDLE/" "$ROOT$GUEST_BUNDLE/"
  GUEST_PARITY_ARGS="--bundle $GUEST_BUNDLE"
  HOST_PARITY_ARGS=(--bundle "$BUNDLE")
fi
say "installing EdgeMate into $GUEST_VENV (pip install .)"
if QEMU_CPU=max guest "set -e; [ -x $GUEST_VENV/bin/python ] || python3 -m venv $GUEST_VENV
    cd $GUEST_SRC && pip install -q --force-reinstall --no-deps . && pip install -q '.[dev]'" \
    > "$OUT/install.log" 2>&1; then
  record aarch64 install PASS $((SECONDS - started)) "pip install . ($(guest "python3 -c 'import platform; print(platform.machine())'" 2>/dev/null))"
else
  record aarch64 install FAIL $((SECONDS - started)) "see $OUT/install.log"
  die "the install failed: $(tail -3 "$OUT/install.log" | tr '\n' ' ')"
fi

# --- each CPU -----------------------------------------------------------------------------
first_cpu="${CPUS%% *}"
for cpu in $CPUS; do
  dir="$GUEST_OUT/$cpu"
  mkdir -p "$OUT/$cpu"
  export QEMU_CPU="$cpu"
  hw=$(guest "python3 -c \"import ncnn; print('fp16 arithmetic' if getattr(ncnn, 'cpu_support_arm_asimdhp', lambda: 0)() else 'no fp16 arithmetic')\"" 2>/dev/null || echo "?")

  started=$SECONDS
  if guest "cd /tmp && edgemate check" > "$OUT/$cpu/check.log" 2>&1; then
    record "$cpu" check PASS $((SECONDS - started)) "ncnn reports $hw"
  else
    record "$cpu" check FAIL $((SECONDS - started)) "$(tail -1 "$OUT/$cpu/check.log")"
  fi

  started=$SECONDS
  tests="$NUMERIC_TESTS"
  what="ncnn and model tests"
  if [ "$FULL_SUITE" = 1 ] && [ "$cpu" = "$first_cpu" ]; then
    tests="tests"; what="whole torch-free suite"
  fi
  if guest "cd $GUEST_SRC && EDGEMATE_SOAK_MINUTES=0 python -m pytest -q -rs -p no:cacheprovider $(echo $tests)" \
      > "$OUT/$cpu/tests.log" 2>&1; then
    record "$cpu" tests PASS $((SECONDS - started)) "$what: $(grep -E '[0-9]+ (passed|failed)' "$OUT/$cpu/tests.log" | tail -1 | tr -d '=')"
  else
    record "$cpu" tests FAIL $((SECONDS - started)) "$what: $(grep -E '[0-9]+ (passed|failed)|error' "$OUT/$cpu/tests.log" | tail -1 | tr -d '=')"
  fi

  started=$SECONDS
  # Emulated, the scheduler drops the frames it cannot render in time and the record sink
  # repeats the previous picture for them (the video keeps audio time); the frames it shows
  # are rendered at FULL (the governor held), the level the parity table compares.
  if guest "cd /tmp && edgemate demo --record $dir/demo.mp4 --set render.quality=full" \
      > "$OUT/$cpu/demo.log" 2>&1 && [ -s "$OUT/$cpu/demo.mp4" ]; then
    guest "ffmpeg -loglevel error -y -ss 2 -i $dir/demo.mp4 -frames:v 1 $dir/demo_frame.png" \
      >> "$OUT/$cpu/demo.log" 2>&1 || true
    record "$cpu" demo PASS $((SECONDS - started)) "$cpu/demo.mp4 ($(du -k "$OUT/$cpu/demo.mp4" | cut -f1) kB)"
  else
    record "$cpu" demo FAIL $((SECONDS - started)) "$(tail -1 "$OUT/$cpu/demo.log")"
  fi

  started=$SECONDS
  if guest "cd $GUEST_SRC && python -m tools.parity dump --out $dir/parity.npz $GUEST_PARITY_ARGS" \
      > "$OUT/$cpu/parity.log" 2>&1; then
    record "$cpu" dump PASS $((SECONDS - started)) "$cpu/parity.npz"
  else
    record "$cpu" dump FAIL $((SECONDS - started)) "$(tail -1 "$OUT/$cpu/parity.log")"
  fi
done
unset QEMU_CPU

# --- parity against x86 -------------------------------------------------------------------
HOST_PY="${HOST_PYTHON:-}"
if [ -z "$HOST_PY" ]; then
  for candidate in "$SRC/.venv-test/bin/python" "$SRC/.venv/bin/python"; do
    [ -x "$candidate" ] && HOST_PY="$candidate" && break
  done
fi
if [ -z "$HOST_PY" ]; then
  HOST_PY="$ROOT.x86-venv/bin/python"
  [ -x "$HOST_PY" ] || python3 -m venv "$ROOT.x86-venv"
  "$ROOT.x86-venv/bin/pip" install -q "$SRC" > "$OUT/x86-install.log" 2>&1 \
    || die "cannot install EdgeMate on x86 for the reference: see $OUT/x86-install.log"
fi
started=$SECONDS
(cd "$SRC" && "$HOST_PY" -m tools.parity dump --out "$OUT/x86_64.npz" "${HOST_PARITY_ARGS[@]}") > "$OUT/x86.log" 2>&1 \
  || die "the x86 reference dump failed: see $OUT/x86.log"
dumps=()
for cpu in $CPUS; do [ -s "$OUT/$cpu/parity.npz" ] && dumps+=("$cpu=$OUT/$cpu/parity.npz"); done
if [ ${#dumps[@]} -gt 0 ] && (cd "$SRC" && "$HOST_PY" -m tools.parity compare \
    --reference "$OUT/x86_64.npz" --markdown "$OUT/parity.md" --sheet "$OUT/parity_sheet.png" \
    "${dumps[@]}") > "$OUT/compare.log" 2>&1; then
  record x86_64 parity PASS $((SECONDS - started)) "goals hold: see parity.md"
else
  record x86_64 parity FAIL $((SECONDS - started)) "see $OUT/compare.log"
fi

{
  echo "# arm64 check, $(date -u +%Y-%m-%dT%H:%MZ), host $(uname -m), qemu $(qemu-aarch64-static --version | head -1 | awk '{print $3}')"
  echo
  echo "| cpu        | step     | ok   | secs   | detail |"
  echo "|------------|----------|------|--------|--------|"
  printf '%s\n' "${RESULTS[@]}"
  echo
  [ -f "$OUT/parity.md" ] && cat "$OUT/parity.md"
} > "$OUT/summary.md"
echo
cat "$OUT/summary.md"
[ "$FAILED" = 0 ] && say "all passed" || say "FAILED: see the table above and the logs in $OUT"
exit "$FAILED"
}
main "$@"
