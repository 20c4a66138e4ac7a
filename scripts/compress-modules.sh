#!/usr/bin/env bash
# Makes .cache/kernels/ARCH-CODEC: ARCH's kernel with its module tree
# compressed as NixOS ships it (and as the kernel's own `make
# modules_install` does): xz with CRC32 and a 1 MiB dictionary, or zstd;
# then depmod. Debian's 6.1 cannot decompress modules itself, so booting
# such a tree tests that nixlive does not need it to.
set -euo pipefail
cd "$(dirname "$0")/.."
arch=${1:?usage: compress-modules.sh ARCH xz|zst}
codec=${2:?usage: compress-modules.sh ARCH xz|zst}
src=.cache/kernels/$arch
out=.cache/kernels/$arch-$codec
[ -f "$out/version" ] && exit 0
[ -f "$src/version" ] || bash scripts/fetch-kernel.sh "$arch"
ver=$(cat "$src/version")
case "$codec" in
  xz) cmd=(xz --check=crc32 --lzma2=dict=1MiB -T1 -q) ;;
  zst) cmd=(zstd -q --rm -T1) ;;
  *) echo "unknown codec $codec" >&2; exit 1 ;;
esac
rm -rf "$out.tmp" && mkdir -p "$out.tmp/lib/modules"
cp "$src/vmlinuz" "$src/version" "$out.tmp/"
[ -f "$src/config" ] && cp "$src/config" "$out.tmp/"
cp -a "$src/lib/modules/$ver" "$out.tmp/lib/modules/"
rm -f "$out.tmp/lib/modules/$ver"/modules.*.bin
find "$out.tmp/lib/modules/$ver" -name '*.ko' -print0 | xargs -0 -P "$(nproc)" -n 64 "${cmd[@]}"
/usr/sbin/depmod -b "$out.tmp" "$ver"
rm -rf "$out" && mv "$out.tmp" "$out"
echo "[deps] kernel $arch $ver with $codec modules in $out" >&2
