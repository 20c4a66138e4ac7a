#!/usr/bin/env bash
# Builds the peers' initrds that `make bench` boots, the way a Debian user gets
# them, into .cache/bench-peers (kept while the spec line is unchanged):
#
#   live-boot.img  Debian's live-boot (initramfs-tools' mkinitramfs, its
#                  default MODULES=most and compression), `boot=live`;
#   dracut.img     dracut's dmsquash-live (dracut-live, systemd in the
#                  initrd), `--no-hostonly`, `root=live:CDLABEL=...`;
#   dracut-net.img the same plus dracut's network (dracut-network's
#                  network-legacy: dhclient) and livenet (curl) modules,
#                  for `root=live:http://...` (built separately, so the
#                  two above stay cached when only it is missing).
#
# live-boot's `fetch=http://...` needs no other initrd: MODULES=most carries
# the NIC drivers, and live-boot its ipconfig and wget.
#
# Each is made in its own debootstrap chroot (dracut conflicts with
# initramfs-tools) for the bench kernel KVER, whose module tree
# (.cache/kernels/amd64) is copied into the chroot: the kernel package itself
# is not installed, so both initrds carry exactly the kernel the bench boots.
# dracut 059 on Debian needs systemd-sysv in the chroot (its systemd module
# wants poweroff/reboot/halt). The chroots are deleted afterwards; only the
# initrds and their build logs stay.
set -euo pipefail
cd "$(dirname "$0")/.."

SUITE=bookworm
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
kdir=.cache/kernels/amd64
kver=$(cat "$kdir/version")
LIVEBOOT_PKGS="live-boot live-boot-initramfs-tools initramfs-tools busybox zstd"
DRACUT_PKGS="dracut dracut-live systemd-sysv zstd"
DRACUT_NET_PKGS="$DRACUT_PKGS dracut-network isc-dhcp-client iputils-arping iproute2 procps curl"
DRACUT_NET_MODULES="dmsquash-live livenet network-legacy"
out=.cache/bench-peers
info=$out/spec
spec="suite=$SUITE kver=$kver live-boot=[$LIVEBOOT_PKGS] dracut=[$DRACUT_PKGS] v1"
net_info=$out/spec-net
net_spec="suite=$SUITE kver=$kver dracut-net=[$DRACUT_NET_PKGS] modules=[$DRACUT_NET_MODULES] v1"

log() { printf '[bench-peers] %s\n' "$*" >&2; }

base_ok() { [ -f "$out/live-boot.img" ] && [ -f "$out/dracut.img" ] && [ "$(cat "$info" 2>/dev/null)" = "$spec" ]; }
net_ok() { [ -f "$out/dracut-net.img" ] && [ "$(cat "$net_info" 2>/dev/null)" = "$net_spec" ]; }

base_ok && net_ok && exit 0

mkdir -p .cache
exec 9>.cache/bench-peers.lock
flock 9
base_ok && net_ok && exit 0

mirror=""
if [ -f /etc/apt/sources.list.d/debian.sources ]; then
  mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
fi
if [ -z "$mirror" ] && [ -f /etc/apt/sources.list ]; then
  mirror=$(awk '$1=="deb" && $0 !~ /security/ {print $2; exit}' /etc/apt/sources.list)
fi
[ -n "$mirror" ] || { log "cannot find the Debian mirror in the apt sources"; exit 1; }
[ -x /usr/sbin/debootstrap ] || apt-get install -y -qq --no-install-recommends debootstrap >/dev/null

umount_under() {
  local d
  d=$(realpath "$1")
  awk -v d="$d/" 'index($2 "/", d) == 1 {print $2}' /proc/self/mounts | sort -r |
    while read -r m; do umount -l "$m" || true; done
}

for stale in .cache/bench-peers.tmp.*; do
  [ -e "$stale" ] || continue
  umount_under "$stale"
  rm -rf --one-file-system "$stale"
done
tmp=$(mktemp -d .cache/bench-peers.tmp.XXXXXX)
trap 'umount_under "$tmp"; rm -rf --one-file-system "$tmp"' EXIT
# Downloaded packages stay for the next build.
mkdir -p .cache/bench-peers-debs
debs=$(realpath .cache/bench-peers-debs)

# mkinitramfs and dracut read the kernel's config (which compressions it
# reads). Caches of fetch-kernel.sh older than its config copy lack it:
# then it comes from the kernel package.
config=$kdir/config
if [ ! -f "$config" ]; then
  config=$tmp/config-$kver
  (cd "$tmp" && apt-get download -qq "linux-image-$kver:amd64")
  dpkg-deb --fsys-tarfile "$tmp"/linux-image-"$kver"_*.deb | tar -xO "./boot/config-$kver" >"$config"
  rm -f "$tmp"/linux-image-"$kver"_*.deb
fi

# A clean environment for everything run in a chroot.
in_root() {
  local root=$1
  shift
  env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 \
    chroot "$root" "$@"
}

# bootstrap ROOT PKGS: a minbase chroot with PKGS installed by apt (so
# Depends are resolved as a user's `apt install` would, without Recommends).
bootstrap() {
  local root=$1 pkgs=$2 i
  for i in 1 2 3; do
    umount_under "$root" 2>/dev/null || true
    rm -rf --one-file-system "$root"
    log "debootstrap $SUITE into $root (try $i)"
    if env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin /usr/sbin/debootstrap --variant=minbase \
      --keyring="$KEYRING" --cache-dir="$debs" "$SUITE" "$root" "$mirror" >"$root.debootstrap.log" 2>&1; then
      break
    fi
    tail -n 15 "$root.debootstrap.log" >&2 || true
    [ "$i" = 3 ] && { log "debootstrap kept failing"; exit 1; }
    sleep 5
  done
  umount_under "$root"
  mkdir -p "$root/lib/modules" "$root/boot"
  cp -a "$kdir/lib/modules/$kver" "$root/lib/modules/"
  cp "$config" "$root/boot/config-$kver"
  mount -t proc proc "$root/proc"
  mount --rbind /sys "$root/sys"
  mount --rbind /dev "$root/dev"
  log "apt-get install $pkgs"
  for i in 1 2 3; do
    in_root "$root" apt-get update -qq >/dev/null 2>&1 || true
    # shellcheck disable=SC2086
    if in_root "$root" apt-get install -y -qq --no-install-recommends $pkgs >"$root.apt.log" 2>&1; then
      return 0
    fi
    tail -n 15 "$root.apt.log" >&2 || true
    sleep 3
  done
  log "apt-get install kept failing in $root"
  exit 1
}

started=$(date +%s)
if ! base_ok; then
  bootstrap "$tmp/live" "$LIVEBOOT_PKGS"
  log "mkinitramfs (live-boot) for $kver"
  in_root "$tmp/live" mkinitramfs -o /initrd.img "$kver" >"$tmp/live-boot.build.log" 2>&1 ||
    { cat "$tmp/live-boot.build.log" >&2; exit 1; }
  in_root "$tmp/live" dpkg-query -W live-boot initramfs-tools >>"$tmp/live-boot.build.log"
  umount_under "$tmp/live"

  bootstrap "$tmp/dracut" "$DRACUT_PKGS"
  log "dracut --no-hostonly -a dmsquash-live for $kver"
  in_root "$tmp/dracut" dracut --force --no-hostonly --no-hostonly-cmdline -a dmsquash-live \
    --kver "$kver" /initrd.img >"$tmp/dracut.build.log" 2>&1 ||
    { cat "$tmp/dracut.build.log" >&2; exit 1; }
  in_root "$tmp/dracut" dpkg-query -W dracut dracut-live systemd >>"$tmp/dracut.build.log"
  umount_under "$tmp/dracut"

  rm -rf "$out.new" && mkdir -p "$out.new"
  cp "$tmp/live/initrd.img" "$out.new/live-boot.img"
  cp "$tmp/dracut/initrd.img" "$out.new/dracut.img"
  cp "$tmp/live-boot.build.log" "$tmp/dracut.build.log" "$out.new/"
  echo "$spec" >"$out.new/spec"
  rm -rf "$out" && mv "$out.new" "$out"
  log "$out: live-boot $(stat -c %s "$out/live-boot.img") B, dracut $(stat -c %s "$out/dracut.img") B, $(($(date +%s) - started)) s"
fi

if ! net_ok; then
  bootstrap "$tmp/dracut-net" "$DRACUT_NET_PKGS"
  log "dracut --no-hostonly -a \"$DRACUT_NET_MODULES\" for $kver"
  in_root "$tmp/dracut-net" dracut --force --no-hostonly --no-hostonly-cmdline -a "$DRACUT_NET_MODULES" \
    --kver "$kver" /initrd.img >"$tmp/dracut-net.build.log" 2>&1 ||
    { cat "$tmp/dracut-net.build.log" >&2; exit 1; }
  in_root "$tmp/dracut-net" dpkg-query -W dracut dracut-live dracut-network systemd curl >>"$tmp/dracut-net.build.log"
  umount_under "$tmp/dracut-net"
  cp "$tmp/dracut-net/initrd.img" "$out/dracut-net.img.new"
  cp "$tmp/dracut-net.build.log" "$out/"
  mv "$out/dracut-net.img.new" "$out/dracut-net.img"
  echo "$net_spec" >"$net_info"
  log "$out: dracut-net $(stat -c %s "$out/dracut-net.img") B, $(($(date +%s) - started)) s"
fi
