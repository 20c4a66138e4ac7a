#!/usr/bin/env bash
# Image size and build time of one tree in each store-image format nixlive
# writes, with the options the builder uses (squashfs: 1 MiB blocks,
# root-owned, no xattrs, every thread; erofs: mkfs.erofs of erofs-utils 1.5,
# single-threaded, 64 KiB physical clusters). Prints a Markdown table.
#
#   scripts/bench-image-formats.sh [TREE]   (default /usr/lib/x86_64-linux-gnu)
#
# Reading the images back in a VM (cold, every file and a random sample) is
# `make bench`'s part `images` (NIXLIVE_BENCH_PARTS=images), which makes
# the images with the builder itself.
set -euo pipefail
tree=${1:-/usr/lib/x86_64-linux-gnu}
out=$(mktemp -d "${TMPDIR:-/tmp}/nixlive-image-formats.XXXXXX")
trap 'rm -rf "$out"' EXIT
epoch=1700000000

bytes=$(du -sb --apparent-size "$tree" | cut -f1)
files=$(find "$tree" -type f | wc -l)
printf 'Tree: %s, %s files, %s MB (apparent size)\n\n' "$tree" "$files" "$(awk -v b="$bytes" 'BEGIN {printf "%.0f", b / 1e6}')"
echo '| format | image | build time |'
echo '|---|---|---|'
row() {
  local name=$1 img=$2
  shift 2
  local t0 t1
  t0=$(date +%s.%N)
  "$@" >/dev/null 2>&1
  t1=$(date +%s.%N)
  awk -v n="$name" -v s="$(stat -c %s "$img")" -v a="$t0" -v b="$t1" \
    'BEGIN {printf "| %s | %.1f MB | %.1f s |\n", n, s / 1e6, b - a}'
  rm -f "$img"
}
for c in zstd xz; do
  row "squashfs $c" "$out/i" mksquashfs "$tree" "$out/i" -comp "$c" -b 1048576 -noappend \
    -no-xattrs -all-root -mkfs-time "$epoch" -all-time "$epoch" -no-progress -quiet
done
for z in lz4hc,12 lz4; do
  row "erofs ${z%%,*}" "$out/i" mkfs.erofs "-z$z" -C65536 "-T$epoch" -x-1 --all-root --quiet "$out/i" "$tree"
done
