# Mirrors nixos/modules/installer/cd-dvd/installation-cd-minimal.nix with
# what it takes from installation-cd-base.nix (iso-image.nix, the edition,
# the ISO's name, EFI and USB boot) and from channel.nix (a later line of
# boot.postBootCommands that nixlive must leave alone).
{ config, lib, pkgs, ... }:
{
  imports = [ ./iso-image.nix ];

  isoImage.edition = lib.mkDefault "minimal";
  isoImage.isoName = "${config.isoImage.isoBaseName}-${config.isoImage.edition}-26.11-${pkgs.stdenv.hostPlatform.system}.iso";
  isoImage.makeEfiBootable = true;
  isoImage.makeUsbBootable = true;

  boot.postBootCommands = lib.mkAfter ''
    if ! [ -e /var/lib/nixos/did-channel-init ]; then
      echo "unpacking the NixOS/Nixpkgs sources..."
      touch /var/lib/nixos/did-channel-init
    fi
  '';
}
