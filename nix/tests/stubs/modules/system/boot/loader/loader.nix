# Mirrors nixos/modules/system/boot/loader/loader.nix. NixOS's default for
# kernelFile is `pkgs.stdenv.hostPlatform.linux-kernel.target`; the lib of
# nixpkgs 26.11 the tests use has no `linux-kernel` in its platforms any
# more (lib.systems.elaborate refuses it), so without it the stub takes
# the kernel's own `target`, as the stub kernel carries it.
{ config, lib, pkgs, ... }:
{
  options.system.boot.loader = {
    id = lib.mkOption {
      internal = true;
      default = "";
      description = "Id string of the used bootloader.";
    };

    kernelFile = lib.mkOption {
      internal = true;
      default =
        pkgs.stdenv.hostPlatform.linux-kernel.target or config.boot.kernelPackages.kernel.target;
      defaultText = lib.literalExpression "pkgs.stdenv.hostPlatform.linux-kernel.target";
      type = lib.types.str;
      description = "Name of the kernel file to be passed to the bootloader.";
    };

    initrdFile = lib.mkOption {
      internal = true;
      default = "initrd";
      type = lib.types.str;
      description = "Name of the initrd file to be passed to the bootloader.";
    };
  };
}
