#!/usr/bin/env bash
# Builds .cache/debian-systemd: a Debian bookworm root file system with a real
# systemd (debootstrap --variant=minbase), which the systemd stage-2 VM test
# (tests-vm/tests/systemd_stage2.rs) puts into a store path and boots.
#
# Idempotent: an existing tree made with the same package list is kept. The
# tree is built in a temporary directory and renamed at the end, so a
# half-made one is never used. Hermetic: of the host's /etc only the Debian
# mirror address is read; what debootstrap copies from the host (resolv.conf,
# hostname) is removed, and the machine-id it generated is emptied. Device
# nodes, fifos and sockets are removed: a NAR (a store path) cannot hold them.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

SUITE=bookworm
# kmod: modprobe for systemd's modprobe@.service; dbus: systemctl and logind.
INCLUDE=systemd,systemd-sysv,udev,dbus,kmod
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg

out=.cache/debian-systemd
info=.cache/debian-systemd.info
spec="suite=$SUITE variant=minbase include=$INCLUDE"

log() { printf '[debian-root] %s\n' "$*" >&2; }

if [ -d "$out" ] && [ "$(cat "$info" 2>/dev/null)" = "$spec" ]; then
  exit 0
fi

mkdir -p .cache
# One builder at a time (make test and a developer's run may overlap).
exec 9>.cache/debian-systemd.lock
flock 9
if [ -d "$out" ] && [ "$(cat "$info" 2>/dev/null)" = "$spec" ]; then
  exit 0
fi

# The same mirror as the machine's own Debian source (as install-deps.sh does).
mirror=""
if [ -f /etc/apt/sources.list.d/debian.sources ]; then
  mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
fi
if [ -z "$mirror" ] && [ -f /etc/apt/sources.list ]; then
  mirror=$(awk '$1=="deb" && $0 !~ /security/ {print $2; exit}' /etc/apt/sources.list)
fi
[ -n "$mirror" ] || { log "cannot find the Debian mirror in the apt sources"; exit 1; }

if ! command -v debootstrap >/dev/null && [ ! -x /usr/sbin/debootstrap ]; then
  log "installing debootstrap"
  export DEBIAN_FRONTEND=noninteractive
  for i in 1 2 3; do
    $SUDO apt-get install -y -qq --no-install-recommends debootstrap >/dev/null && break
    log "apt-get install debootstrap failed (try $i); apt-get update and retry"
    $SUDO apt-get update -qq || true
    sleep 3
  done
  [ -x /usr/sbin/debootstrap ] || { log "could not install debootstrap"; exit 1; }
fi

# Unmounts whatever debootstrap left mounted under $1 (it mounts /proc and
# /sys in the target and normally unmounts them itself), deepest first.
umount_under() {
  local d
  d=$(realpath "$1")
  awk -v d="$d/" 'index($2 "/", d) == 1 {print $2}' /proc/self/mounts | sort -r |
    while read -r m; do $SUDO umount -l "$m" || true; done
}

# Left over from a run that was killed (we hold the lock: none is running).
for stale in .cache/debian-systemd.tmp.*; do
  [ -e "$stale" ] || continue
  umount_under "$stale"
  $SUDO rm -rf --one-file-system "$stale"
done

tmp=$(mktemp -d .cache/debian-systemd.tmp.XXXXXX)
trap 'umount_under "$tmp"; $SUDO rm -rf --one-file-system "$tmp"' EXIT
debs=$(realpath "$tmp")/debs
root=$tmp/root

started=$(date +%s)
ok=0
for i in 1 2 3; do
  umount_under "$tmp"
  $SUDO rm -rf --one-file-system "$root"
  mkdir -p "$debs"
  log "debootstrap $SUITE from $mirror (try $i)"
  # A clean environment: nothing of the caller's (locale, proxies, TMPDIR)
  # reaches the maintainer scripts run in the chroot. The .deb cache lets a
  # retry skip what was already downloaded.
  if $SUDO env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    /usr/sbin/debootstrap --variant=minbase --include="$INCLUDE" \
    --keyring="$KEYRING" --cache-dir="$debs" \
    "$SUITE" "$root" "$mirror" >"$tmp/debootstrap.log" 2>&1; then
    ok=1
    break
  fi
  log "debootstrap failed (try $i):"
  tail -n 15 "$tmp/debootstrap.log" >&2 || true
  tail -n 15 "$root/debootstrap/debootstrap.log" >&2 2>/dev/null || true
  sleep 5
done
[ "$ok" = 1 ] || { log "debootstrap kept failing"; exit 1; }
umount_under "$root"

# What debootstrap copied from the host, and the identity it generated.
$SUDO rm -f "$root/etc/resolv.conf" "$root/etc/hostname"
echo nixlive | $SUDO tee "$root/etc/hostname" >/dev/null
$SUDO truncate -s 0 "$root/etc/machine-id"
[ -L "$root/var/lib/dbus/machine-id" ] || $SUDO rm -f "$root/var/lib/dbus/machine-id"
# Download caches and logs of the build: large, and nothing the system needs.
$SUDO find "$root/var/lib/apt/lists" "$root/var/cache/apt" -type f -delete
$SUDO find "$root/var/log" -type f -delete
# What maintainer scripts left in /run (a tmpfs at boot).
$SUDO find "$root/run" -mindepth 1 -delete
# Device nodes (a devtmpfs is mounted on /dev at boot), fifos and sockets.
$SUDO find "$root/dev" -mindepth 1 -delete
$SUDO find "$root" -xdev \( -type b -o -type c -o -type p -o -type s \) -print -delete >&2

$SUDO rm -rf --one-file-system "$out.new"
mv "$root" "$out.new"
$SUDO rm -rf --one-file-system "$out"
mv "$out.new" "$out"
echo "$spec" >"$info"
log "$out: $(du -sh "$out" | cut -f1), $(($(date +%s) - started)) s"
