# The evaluation test of nix/package.nix and flake.nix, run by
# tests-vm/tests/vm/nixos_module.rs: both are evaluated with the stub
# nixpkgs (stubs/pkgs.nix), whose callPackage and
# rustPlatform.buildRustPackage refuse a name nixpkgs does not have, an
# unknown argument, a missing lock file or a source path that does not
# exist; so a typo in either file fails the test. Gives what the test
# compares, as JSON (`nix-instantiate --eval --strict --json`).
{ nixpkgsLib }:
let
  lib = import (nixpkgsLib + "/lib");
  stub = system: import ./stubs/pkgs.nix { inherit lib system; };

  describe = p: {
    inherit (p) pname version;
    inherit (p.stubArgs) cargoBuildFlags doCheck;
    lockFile = toString p.stubArgs.cargoLock.lockFile;
    target = p.stubTarget;
    static = p.stubStatic;
  };

  pkg = (stub "x86_64-linux").callPackage ../package.nix { };

  flake = import ../../flake.nix;
  outputs = flake.outputs {
    self = outputs;
    nixpkgs = {
      inherit lib;
      legacyPackages = lib.genAttrs [
        "x86_64-linux"
        "i686-linux"
        "aarch64-linux"
      ] stub;
    };
  };
in
{
  package = describe pkg // {
    mainProgram = pkg.stubArgs.meta.mainProgram;
    wraps = lib.hasInfix "wrapProgram $out/bin/nixlive --prefix PATH : " pkg.stubArgs.postInstall;
    tools = map (t: t.name) pkg.tools;
  };
  guest = describe pkg.guest;

  flake = {
    inherit (flake) description;
    nixpkgsUrl = flake.inputs.nixpkgs.url;
    packages = lib.mapAttrs (_: ps: builtins.attrNames ps) outputs.packages;
    guests = lib.mapAttrs (
      _: ps:
      lib.genAttrs [ "x86_64" "i686" "aarch64" ] (a: describe ps."nixlive-guest-${a}")
    ) outputs.packages;
    nixlive = lib.mapAttrs (_: ps: describe ps.nixlive) outputs.packages;
    module = toString outputs.nixosModules.nixlive;
    defaultModuleIsNixlive = outputs.nixosModules.default == outputs.nixosModules.nixlive;
    lib = builtins.attrNames outputs.lib;
    # The functions work from the flake: one command line.
    libArgs = outputs.lib.args {
      kind = "netboot";
      kernel = "/k/bzImage";
      modulesDir = "/k/lib/modules/6.1";
      init = "/g/bin/nixlive-init";
      closureInfo = "/ci";
      system = "/s";
      modules = [ "virtio_net" ];
    } "/out";
  };
}
