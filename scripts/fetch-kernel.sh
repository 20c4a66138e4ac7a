#!/usr/bin/env bash
# Unpacks Debian's kernel for ARCH (amd64, i386, arm64) into .cache/kernels/ARCH:
# vmlinuz, config, and lib/modules/VERSION. Downloaded with apt-get download,
# never installed. `amd64-bpo` is bookworm-backports' 6.12 (modules .ko.xz,
# in-kernel module decompression on).
set -euo pipefail
cd "$(dirname "$0")/.."
name=${1:?usage: fetch-kernel.sh amd64|i386|arm64|amd64-bpo}
arch=${name%-bpo}
case "$arch" in
  amd64) meta=linux-image-amd64 ;;
  i386) meta=linux-image-686 ;;
  arm64) meta=linux-image-arm64 ;;
  *) echo "unknown arch $arch" >&2; exit 1 ;;
esac
out=.cache/kernels/$name
[ -f "$out/vmlinuz" ] && [ -f "$out/version" ] && exit 0
if [ "$arch" != "$(dpkg --print-architecture)" ]; then
  dpkg --print-foreign-architectures | grep -qx "$arch" || { dpkg --add-architecture "$arch"; apt-get update -qq || true; }
fi
# The metapackage depends on the versioned image package; resolve it (for
# backports: the metapackage's version from that suite).
if [ "$name" != "$arch" ]; then
  v=$(apt-cache madison "$meta:$arch" | awk -F'|' '/-backports/ {gsub(/ /, "", $2); print $2; exit}')
  [ -n "$v" ] || { echo "no $meta in bookworm-backports (apt-get update?)" >&2; exit 1; }
  meta="$meta:$arch=$v"
else
  meta="$meta:$arch"
fi
pkg=$(apt-cache depends "$meta" 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
pkg=${pkg%%:*}
[ -n "$pkg" ] || { echo "cannot resolve $meta for $arch (apt-get update?)" >&2; exit 1; }
tmp=$(mktemp -d); chmod 755 "$tmp"
( cd "$tmp" && apt-get download -qq "$pkg:$arch" )
rm -rf "$out.tmp" && mkdir -p "$out.tmp"
dpkg-deb -x "$tmp"/*.deb "$out.tmp/root"
ver=$(ls "$out.tmp/root/lib/modules")
img=$(ls "$out.tmp/root/boot/"vmlinu*-"$ver" | head -1)
mv "$img" "$out.tmp/vmlinuz"
mv "$out.tmp/root/boot/config-$ver" "$out.tmp/config"
mv "$out.tmp/root/lib" "$out.tmp/lib"
rm -rf "$out.tmp/root" "$tmp"
# The package leaves modules.dep/modules.alias to depmod at install time.
/usr/sbin/depmod -b "$out.tmp" "$ver"
echo "$ver" > "$out.tmp/version"
rm -rf "$out" && mv "$out.tmp" "$out"
echo "[deps] kernel $arch $ver in $out" >&2
