# Mirrors nixos/modules/services/hardware/udev.nix: hardware.firmware.
# NixOS's `apply` also compresses the firmware first (compressFirmware).
{ lib, pkgs, ... }:
{
  options.hardware.firmware = lib.mkOption {
    type = lib.types.listOf lib.types.package;
    default = [ ];
    description = "List of packages containing firmware files.";
    apply =
      list:
      pkgs.buildEnv {
        name = "firmware";
        paths = list;
        pathsToLink = [ "/lib/firmware" ];
        ignoreCollisions = true;
      };
  };
}
