#!/usr/bin/env bash
# Unpacks Debian's GRUB EFI modules for a foreign machine (arm64) into
# .cache/grub/<target> (e.g. arm64-efi), for `nixlive iso --efi-arch aarch64
# --grub-efi-dir`. Downloaded with apt-get download, never installed.
set -euo pipefail
cd "$(dirname "$0")/.."
arch=${1:?usage: fetch-grub-efi.sh arm64}
case "$arch" in
  arm64) pkg=grub-efi-arm64-bin target=arm64-efi ;;
  *) echo "unknown arch $arch" >&2; exit 1 ;;
esac
out=.cache/grub/$target
[ -f "$out/linux.mod" ] && exit 0
dpkg --print-foreign-architectures | grep -qx "$arch" || { dpkg --add-architecture "$arch"; apt-get update -qq || true; }
tmp=$(mktemp -d); chmod 755 "$tmp"
( cd "$tmp" && apt-get download -qq "$pkg:$arch" )
dpkg-deb -x "$tmp"/*.deb "$tmp/root"
rm -rf "$out" && mkdir -p "$(dirname "$out")"
mv "$tmp/root/usr/lib/grub/$target" "$out"
rm -rf "$tmp"
echo "[deps] GRUB $target modules in $out" >&2
