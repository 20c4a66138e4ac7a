# Mirrors nixos/modules/installer/sd-card/sd-image.nix: the sdImage options
# nix/module.nix reads, and the parts of its config that reach nixlive (the
# store's contents, the first boot's registration in boot.postBootCommands).
# NixOS's `config.nix.package.out` is the stub pkgs.nix.
{ config, lib, pkgs, ... }:
{
  options.sdImage = {
    storePaths = lib.mkOption {
      type = with lib.types; listOf package;
      example = lib.literalExpression "[ pkgs.stdenv ]";
      description = "Derivations to be included in the Nix store in the generated SD image.";
    };

    rootVolumeLabel = lib.mkOption {
      type = lib.types.str;
      default = "NIXOS_SD";
      example = "NIXOS_PENDRIVE";
      description = "Label for the NixOS root volume.";
    };

    compressImage = lib.mkOption {
      type = lib.types.bool;
      default = true;
      description = "Whether the SD image should be compressed using zstd.";
    };

    expandOnBoot = lib.mkOption {
      type = lib.types.bool;
      default = true;
      description = "Whether to configure the sd image to expand it's partition on boot.";
    };

    nixPathRegistrationFile = lib.mkOption {
      type = lib.types.str;
      default = "/nix-path-registration";
      description = "Location of the file containing the input for nix-store --load-db once the machine has booted.";
    };
  };

  config = {
    sdImage.storePaths = [ config.system.build.toplevel ];

    boot.postBootCommands = ''
      # On the first boot do some maintenance tasks
      if [ -f ${config.sdImage.nixPathRegistrationFile} ]; then
        set -euo pipefail
        set -x
        # Register the contents of the initial Nix store
        ${pkgs.nix.out}/bin/nix-store --load-db < ${config.sdImage.nixPathRegistrationFile}

        # nixos-rebuild also requires a "system" profile and an /etc/NIXOS tag.
        touch /etc/NIXOS
        ${pkgs.nix.out}/bin/nix-env -p /nix/var/nix/profiles/system --set /run/current-system

        # Prevents this from running on later boots.
        rm -f ${config.sdImage.nixPathRegistrationFile}
      fi
    '';
  };
}
