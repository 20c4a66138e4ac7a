# Mirrors nixos/modules/system/boot/kernel.nix: the declarations of the
# options nix/module.nix reads, and the one definition it needs from that
# file's config (system.modulesTree holds the kernel). Differences, both
# because the rest of nixpkgs is not here: boot.kernelPackages has no
# `apply` (NixOS's extends the set with boot.kernelPatches), and
# system.modulesTree's `apply` is the stub pkgs.aggregateModules (NixOS's
# also renames the result `<kernel>-modules`).
{ config, lib, pkgs, ... }:
{
  options = {
    boot.kernelPackages = lib.mkOption {
      default = pkgs.linuxPackages;
      type = lib.types.raw;
      defaultText = lib.literalExpression "pkgs.linuxPackages";
      example = lib.literalExpression "pkgs.linuxKernel.packages.linux_5_10";
      description = "This option allows you to override the Linux kernel used by NixOS.";
    };

    boot.kernelParams = lib.mkOption {
      type = lib.types.listOf (
        lib.types.strMatching ''([^"[:space:]]|"[^"]*")+''
        // {
          name = "kernelParam";
          description = "string, with spaces inside double quotes";
        }
      );
      default = [ ];
      description = "Parameters added to the kernel command line.";
    };

    boot.initrd.availableKernelModules = lib.mkOption {
      type = with lib.types; listOf str;
      default = [ ];
      apply = lib.unique;
      example = [
        "sata_nv"
        "ext3"
      ];
      description = "The set of kernel modules in the initial ramdisk used during the boot process.";
    };

    boot.initrd.kernelModules = lib.mkOption {
      type = with lib.types; listOf str;
      default = [ ];
      apply = lib.unique;
      description = "List of modules that are always loaded by the initrd.";
    };

    system.modulesTree = lib.mkOption {
      type = with lib.types; listOf path;
      internal = true;
      default = [ ];
      description = "Tree of kernel modules. This includes the kernel, plus modules built outside of the kernel.";
      apply = pkgs.aggregateModules;
    };
  };

  config.system.modulesTree = [
    (config.boot.kernelPackages.kernel.modules or config.boot.kernelPackages.kernel)
  ];
}
