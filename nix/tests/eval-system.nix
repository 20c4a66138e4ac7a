# Evaluates NixOS modules as NixOS's eval-config.nix would, against the
# stub NixOS modules (stubs/modules) and the stub nixpkgs (stubs/pkgs.nix);
# the system's toplevel is the stub's demo system. Returns evalModules'
# result with `pkgs`.
{
  lib,
  modules,
  system ? "x86_64-linux",
  host ? { },
}:
let
  pkgs = import ./stubs/pkgs.nix { inherit lib system host; };
  eval = lib.evalModules {
    specialArgs.modulesPath = ./stubs/modules;
    modules =
      import ./stubs/modules/module-list.nix
      ++ [
        { _module.args.pkgs = pkgs; }
        # What nixos/modules/system/activation/top-level.nix defines.
        { system.build.toplevel = pkgs.demoSystem; }
      ]
      ++ modules;
  };
in
eval // { inherit pkgs; }
