# Mirrors nixos/modules/system/build.nix: `system.build`, a freeform
# attribute set (the test's fixture sets `toplevel`, as
# nixos/modules/system/activation/top-level.nix does).
{ lib, ... }:
{
  options.system.build = lib.mkOption {
    default = { };
    description = "Attribute set of derivations used to set up the system.";
    type = lib.types.submoduleWith {
      modules = [
        {
          freeformType = with lib.types; lazyAttrsOf (uniq unspecified);
        }
      ];
    };
  };
}
