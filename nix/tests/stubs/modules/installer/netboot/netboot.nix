# Mirrors nixos/modules/installer/netboot/netboot.nix: netboot.storeContents,
# and the parts of its config that reach nixlive (the initrd's modules, the
# store's contents, the registration in boot.postBootCommands). NixOS's
# `config.nix.package` is the stub pkgs.nix.
{ config, lib, pkgs, ... }:
{
  options.netboot.storeContents = lib.mkOption {
    example = lib.literalExpression "[ pkgs.stdenv ]";
    description = "This option lists additional derivations to be included in the Nix store in the generated netboot image.";
  };

  config = {
    boot.initrd.availableKernelModules = [
      "squashfs"
      "overlay"
    ];

    boot.initrd.kernelModules = [
      "loop"
      "overlay"
    ];

    netboot.storeContents = [ config.system.build.toplevel ];

    boot.postBootCommands = ''
      # After booting, register the contents of the Nix store
      # in the Nix database in the tmpfs.
      ${pkgs.nix}/bin/nix-store --load-db < /nix/store/nix-path-registration

      # nixos-rebuild also requires a "system" profile and an
      # /etc/NIXOS tag.
      touch /etc/NIXOS
      ${pkgs.nix}/bin/nix-env -p /nix/var/nix/profiles/system --set /run/current-system
    '';
  };
}
