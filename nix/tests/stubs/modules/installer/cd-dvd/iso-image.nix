# Mirrors nixos/modules/installer/cd-dvd/iso-image.nix: the isoImage options
# nix/module.nix reads, and the parts of its config that reach nixlive (the
# kernel parameters, the initrd's modules, the store's contents, the
# registration in boot.postBootCommands, the volume ID's assertion).
# `config.system.nixos.release` is "26.11" here, and NixOS's
# `config.nix.package.out` is the stub pkgs.nix.
{ config, lib, pkgs, ... }:
let
  release = "26.11";
in
{
  options = {
    isoImage.isoName = lib.mkOption {
      default = "${config.isoImage.isoBaseName}.iso";
      type = lib.types.str;
      description = "Name of the generated ISO image file.";
    };

    isoImage.isoBaseName = lib.mkOption {
      default = "nixos";
      type = lib.types.str;
      description = "Prefix of the name of the generated ISO image file.";
    };

    isoImage.squashfsCompression = lib.mkOption {
      default =
        with pkgs.stdenv.hostPlatform;
        "xz -Xdict-size 100% "
        + lib.optionalString isx86 "-Xbcj x86"
        + lib.optionalString isAarch "-Xbcj arm"
        + lib.optionalString (isPower && is32bit && isBigEndian) "-Xbcj powerpc"
        + lib.optionalString isSparc "-Xbcj sparc";
      type = lib.types.str;
      description = "Compression settings to use for the squashfs nix store.";
      example = "zstd -Xcompression-level 6";
    };

    isoImage.edition = lib.mkOption {
      default = "";
      type = lib.types.str;
      description = "Specifies which edition string to use in the volume ID of the generated ISO image.";
    };

    isoImage.volumeID = lib.mkOption {
      default = "nixos${
        lib.optionalString (config.isoImage.edition != "") "-${config.isoImage.edition}"
      }-${release}-${pkgs.stdenv.hostPlatform.uname.processor}";
      type = lib.types.str;
      description = "Specifies the label or volume ID of the generated ISO image.";
    };

    isoImage.storeContents = lib.mkOption {
      example = lib.literalExpression "[ pkgs.stdenv ]";
      description = "This option lists additional derivations to be included in the Nix store in the generated ISO image.";
    };

    isoImage.makeEfiBootable = lib.mkOption {
      default = false;
      type = lib.types.bool;
      description = "Whether the ISO image should be an EFI-bootable volume.";
    };

    isoImage.makeUsbBootable = lib.mkOption {
      default = false;
      type = lib.types.bool;
      description = "Whether the ISO image should be bootable from CD as well as USB.";
    };
  };

  config = {
    assertions = [
      {
        assertion = !(lib.stringLength config.isoImage.volumeID > 32);
        message = "isoImage.volumeID ${config.isoImage.volumeID} is longer than 32 characters.";
      }
    ];

    boot.kernelParams = [
      "root=LABEL=${config.isoImage.volumeID}"
      "boot.shell_on_fail"
    ];

    boot.initrd.availableKernelModules = [
      "squashfs"
      "iso9660"
      "uas"
      "overlay"
    ];

    boot.initrd.kernelModules = [
      "loop"
      "overlay"
    ];

    isoImage.storeContents = [ config.system.build.toplevel ];

    boot.postBootCommands = ''
      # After booting, register the contents of the Nix store on the
      # CD in the Nix database in the tmpfs.
      ${pkgs.nix.out}/bin/nix-store --load-db < /nix/store/nix-path-registration

      # nixos-rebuild also requires a "system" profile and an
      # /etc/NIXOS tag.
      touch /etc/NIXOS
      ${pkgs.nix.out}/bin/nix-env -p /nix/var/nix/profiles/system --set /run/current-system
    '';
  };
}
