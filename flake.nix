# nixlive as a flake: the package, the NixOS module and the builder
# functions. Nothing is pinned here (no flake.lock is kept): take the
# nixpkgs of your own flake with
#   inputs.nixlive.inputs.nixpkgs.follows = "nixpkgs";
# and see docs/nixos.md.
{
  description = "nixlive: a Rust stage 1 for NixOS live media (ISO, netboot, SD images)";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs =
    { self, nixpkgs }:
    let
      inherit (nixpkgs) lib;
      systems = [
        "x86_64-linux"
        "i686-linux"
        "aarch64-linux"
      ];
      forAllSystems = f: lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
      # The static init and postboot for each machine nixlive boots, built
      # on any of them (pkgsStatic of a cross set is its musl, static).
      guestSets = pkgs: {
        x86_64 = pkgs.pkgsCross.musl64.pkgsStatic;
        i686 = pkgs.pkgsCross.musl32.pkgsStatic;
        aarch64 = pkgs.pkgsCross.aarch64-multiplatform-musl.pkgsStatic;
      };
    in
    {
      packages = forAllSystems (
        pkgs:
        let
          nixlive = pkgs.callPackage ./nix/package.nix { };
        in
        {
          inherit nixlive;
          default = nixlive;
          nixlive-guest = nixlive.guest;
        }
        // lib.mapAttrs' (
          arch: guestPkgs:
          lib.nameValuePair "nixlive-guest-${arch}" (pkgs.callPackage ./nix/package.nix { inherit guestPkgs; }).guest
        ) (guestSets pkgs)
      );

      nixosModules = {
        nixlive = ./nix/module.nix;
        default = self.nixosModules.nixlive;
      };

      # The builder functions of nix/lib.nix: `args`, `script`,
      # `hydraBuildProducts` and `build pkgs spec`.
      lib = import ./nix/lib.nix { inherit lib; };
    };
}
