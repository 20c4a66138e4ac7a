# The nixlive package, for nixpkgs' callPackage:
#
#   nixlive = pkgs.callPackage ./nix/package.nix { };
#
# `bin/nixlive` is the builder CLI, for the machine that builds media; it
# finds the tools it runs (xorriso, mksquashfs, mkfs.erofs, grub-mkimage,
# mtools, mkfs.vfat, mkfs.ext4, sgdisk, fakeroot, xz, tar) on its PATH.
# `passthru.guest` holds what goes onto the medium: the static musl
# `bin/nixlive-init` (the initrd's PID 1) and `bin/nixlive-postboot`, built
# by `guestPkgs` (pkgsStatic: the same machine; for another, give the
# matching set, such as pkgsCross.aarch64-multiplatform-musl.pkgsStatic).
#
# Nothing is pinned: the Rust toolchain and the tools are the caller's
# nixpkgs'. The tests are not run here: they need QEMU, Nix and kernels
# (`make test`).
{
  lib,
  rustPlatform,
  pkgsStatic,
  makeWrapper,
  xorriso,
  squashfsTools,
  erofs-utils,
  grub2_efi,
  mtools,
  dosfstools,
  e2fsprogs,
  gptfdisk,
  fakeroot,
  xz,
  gnutar,
  coreutils,
  guestPkgs ? pkgsStatic,
}:
let
  workspace = (lib.importTOML ../Cargo.toml).workspace;

  # The workspace's sources and nothing else (not target/, not .cargo/,
  # whose settings are for this repository's own cross builds).
  root = toString ../.;
  src = lib.cleanSourceWith {
    name = "nixlive-source";
    src = ../.;
    filter =
      path: _type:
      let
        rel = lib.removePrefix "${root}/" (toString path);
      in
      rel == "Cargo.toml"
      || rel == "Cargo.lock"
      || lib.any (m: rel == m || lib.hasPrefix "${m}/" rel) workspace.members;
  };

  common = {
    inherit (workspace.package) version;
    inherit src;
    cargoLock.lockFile = ../Cargo.lock;
    doCheck = false;
    meta = {
      description = "A Rust stage 1 for NixOS live media: ISO, netboot and SD images";
      license = lib.licenses.mit;
      platforms = lib.platforms.linux;
    };
  };

  guest = guestPkgs.rustPlatform.buildRustPackage (
    common
    // {
      pname = "nixlive-guest";
      cargoBuildFlags = [
        "-p"
        "nixlive-init"
        "-p"
        "nixlive-postboot"
      ];
    }
  );

  tools = [
    xorriso
    squashfsTools
    erofs-utils
    grub2_efi
    mtools
    dosfstools
    e2fsprogs
    gptfdisk
    fakeroot
    xz
    gnutar
    coreutils
  ];
in
rustPlatform.buildRustPackage (
  common
  // {
    pname = "nixlive";
    cargoBuildFlags = [
      "-p"
      "nixlive-builder"
    ];
    nativeBuildInputs = [ makeWrapper ];
    postInstall = ''
      wrapProgram $out/bin/nixlive --prefix PATH : ${lib.makeBinPath tools}
    '';
    passthru = {
      inherit guest tools;
    };
    meta = common.meta // {
      mainProgram = "nixlive";
    };
  }
)
