# An SD card image for a 64-bit ARM board: NixOS's sd-image-aarch64.nix
# with nixlive's stage 1 on a plain ext4 root, registered and grown on the
# first boot (the NixOS wiki's "NixOS on ARM" image, with SSH access).
#
# Build (from the root of nixlive's source, with nixpkgs on NIX_PATH, on an
# aarch64 machine or one with aarch64 emulation):
#   nix-build '<nixpkgs/nixos>' -A config.system.build.nixliveDiskImage -I nixos-config=examples/sd-image.nix --argstr system aarch64-linux
# Write result/sd-image/nixos-sd.img.zst with `zstdcat ... | dd of=/dev/mmcblk0`.
# The image has no boot loader of its own: its boot/ holds kernel, initrd
# and cmdline for the board's U-Boot (or QEMU's -kernel) to load.
{ modulesPath, ... }:
{
  imports = [
    (modulesPath + "/installer/sd-card/sd-image-aarch64.nix")
    ../nix/module.nix
  ];

  nixlive.enable = true;
  # The board's storage: SD cards, and USB disks.
  nixlive.moduleSets = [
    "base"
    "mmc"
    "usb"
  ];

  services.openssh.enable = true;
  users.users.root.openssh.authorizedKeys.keys = [
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEIaD3ZOY0tC7eKnW4Alh2jmzfjZ+aXWSfrAIPmu2SKY alice@laptop"
  ];
}
