#!/usr/bin/env bash
# The C cross compiler of the i686 and aarch64 musl builds (SQLite and
# mimalloc in nixlive-postboot): Zig's `zig cc` (clang with musl's headers
# for every target), from PyPI's `ziglang` package, which
# scripts/install-deps.sh installs under .cache/ziglang-<VERSION>.
# .cargo/config.toml names the wrappers beside this file (`<target>-cc`,
# `ar`) in CC_<target> and AR_<target>, so every cargo build finds them.
#
# usage: zig.sh cc ZIG-TARGET ARGS... | zig.sh ar ARGS...
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
version=$(cat "$here/VERSION")
zig="$here/../../.cache/ziglang-$version/ziglang/zig"
if [ ! -x "$zig" ]; then
  echo "zig $version is missing ($zig): run scripts/install-deps.sh (make deps)" >&2
  exit 1
fi
mode=$1; shift
case "$mode" in
  cc)
    target=$1; shift
    # cc (the crate) passes clang's --target=<rust triple>, which Zig does
    # not read (its triples have no vendor, and i686 is x86): the
    # wrapper's -target stands.
    args=()
    skip=0
    for a in "$@"; do
      if [ "$skip" = 1 ]; then skip=0; continue; fi
      case "$a" in
        --target=*) ;;
        # A linker flag for gcc (the link is rust-lld's): Zig refuses it.
        -Wl,-melf_i386) ;;
        -target|--target) skip=1 ;;
        *) args+=("$a") ;;
      esac
    done
    exec "$zig" cc -target "$target" "${args[@]}"
    ;;
  ar) exec "$zig" ar "$@" ;;
  *) echo "zig.sh: unknown mode $mode (cc or ar)" >&2; exit 2 ;;
esac
