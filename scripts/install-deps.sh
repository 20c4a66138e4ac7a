#!/usr/bin/env bash
# Installs what building and testing nixlive needs on Debian 12, idempotently:
# apt packages (qemu-system-* from bookworm-backports, because the machine's
# qemu-utils already comes from there), rustup musl targets, and Debian's
# kernels unpacked under .cache/kernels (downloaded, never installed).
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

log() { printf '[deps] %s\n' "$*" >&2; }

# apt-get update sometimes fails for one index while a mirror syncs: retry, and
# carry on with what we have if only some indexes could be read.
apt_update() {
  local err
  err=$(mktemp "${TMPDIR:-/tmp}/nixlive-apt-update.XXXXXX")
  for i in 1 2 3; do
    if $SUDO apt-get update -qq 2>"$err"; then rm -f "$err"; return 0; fi
    log "apt-get update failed (try $i), retrying"; sleep 3
  done
  log "apt-get update kept failing; continuing with the indexes that exist:"
  cat "$err" >&2 || true
  rm -f "$err"
}

# The backports source uses the same mirror as the machine's own Debian source.
add_backports() {
  local f=/etc/apt/sources.list.d/nixlive-backports.sources
  [ -f "$f" ] && return 0
  local uri=""
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
  fi
  if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
    uri=$(awk '$1=="deb" && $0 !~ /security/ {print $2; exit}' /etc/apt/sources.list)
  fi
  [ -n "$uri" ] || { log "cannot find the Debian mirror in the apt sources"; exit 1; }
  log "adding bookworm-backports from $uri"
  printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' "$uri" \
    | $SUDO tee "$f" >/dev/null
  NEED_UPDATE=1
}

# gcc and libc6-dev: cargo's linker and the SQLite that postboot's native
# loader compiles; g++: libFuzzer for `make fuzz`. (A bare machine may have
# rustup without them.) nginx-light: the packaged web server the HTTP netboot
# VM test serves the set with (started by the test, on a loopback port).
APT_PKGS=(gcc g++ libc6-dev kmod xz-utils xorriso isolinux syslinux-common squashfs-tools erofs-utils cpio zstd busybox-static mtools dosfstools e2fsprogs exfatprogs ntfs-3g nix-bin musl-tools grub-efi-amd64-bin gdisk debootstrap openssl cryptsetup-bin nginx-light)
# ipxe-qemu: the e1000 ROM the netboot VM tests boot from (named here, not
# left to qemu-system-x86's dependencies).
QEMU_PKGS=(qemu-system-x86 qemu-system-arm ovmf qemu-efi-aarch64 ipxe-qemu)

missing=()
for p in "${APT_PKGS[@]}" "${QEMU_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
NEED_UPDATE=0
add_backports
if [ ${#missing[@]} -gt 0 ] || [ "$NEED_UPDATE" = 1 ]; then
  apt_update
fi
if [ ${#missing[@]} -gt 0 ]; then
  log "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # RUNLEVEL=1: packages with a service (nginx) are installed, not started.
  $SUDO env RUNLEVEL=1 apt-get install -y -qq --no-install-recommends "${APT_PKGS[@]}" >/dev/null
  $SUDO apt-get install -y -qq --no-install-recommends -t bookworm-backports "${QEMU_PKGS[@]}" >/dev/null
fi

# Rust targets: init and postboot are static musl binaries for three machines.
for t in x86_64-unknown-linux-musl i686-unknown-linux-musl aarch64-unknown-linux-musl; do
  rustup target list --installed | grep -qx "$t" || { log "rustup target add $t"; rustup target add "$t"; }
done

# Zig (PyPI's `ziglang`): the C cross compiler of SQLite and mimalloc in
# the i686 and aarch64 musl builds of postboot (scripts/zig/, named in
# .cargo/config.toml); x86_64's is musl-gcc. Installed with pip --target
# into .cache, not into any Python (Debian's pip refuses the system's).
ZIG_VERSION=$(cat scripts/zig/VERSION)
ZIG_DIR=.cache/ziglang-$ZIG_VERSION
if [ ! -x "$ZIG_DIR/ziglang/zig" ]; then
  if ! python3 -m pip --version >/dev/null 2>&1; then
    log "installing python3-pip (for ziglang)"
    apt_update
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get install -y -qq --no-install-recommends python3-pip >/dev/null
  fi
  log "pip install ziglang==$ZIG_VERSION into $ZIG_DIR"
  rm -rf "$ZIG_DIR.tmp"
  python3 -m pip install --disable-pip-version-check --root-user-action=ignore -q --no-deps \
    --target "$ZIG_DIR.tmp" "ziglang==$ZIG_VERSION"
  mv "$ZIG_DIR.tmp" "$ZIG_DIR"
fi
"$ZIG_DIR/ziglang/zig" version >/dev/null

# Kernels: Debian's, unpacked (not installed) into .cache/kernels/ARCH.
# amd64-bpo: bookworm-backports' 6.12 (.ko.xz modules it decompresses itself).
for a in amd64 i386 arm64 amd64-bpo; do bash scripts/fetch-kernel.sh "$a"; done
# Debian's 6.1 with its module tree compressed as NixOS ships it (xz, zstd).
for c in xz zst; do bash scripts/compress-modules.sh amd64 "$c"; done
# GRUB for the aarch64 UEFI boot of the VM matrix.
bash scripts/fetch-grub-efi.sh arm64
# A Debian root with systemd for the systemd stage-2 VM test.
bash scripts/fetch-debian-root.sh
