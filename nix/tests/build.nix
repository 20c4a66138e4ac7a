# The real build of tests-vm/tests/vm/nixos_module.rs: examples/iso.nix
# with nixlive's own module, evaluated as eval.nix evaluates it, whose
# `system.build.nixliveIso` Nix then builds: its script runs the host's
# `nixlive` on the closureInfo that `exportReferencesGraph` gives of the
# stub system (the demo stage-2 init and nixlive-postboot, as store paths),
# with the Debian kernel the VM tests boot. The signing key is a file of
# the build machine, named by a string, never in the store.
#
# Every argument is a string: host paths (see stubs/pkgs.nix) and the
# public key's text. The test lets the host's /usr and these paths into
# the sandbox (`extra-sandbox-paths`).
{
  nixpkgsLib,
  nixlive,
  guestDir,
  kernelDir,
  kernelVersion,
  signKeyFile,
  trustedKey,
}:
let
  lib = import (nixpkgsLib + "/lib");
  e = import ./eval-system.nix {
    inherit lib;
    host = {
      inherit
        nixlive
        guestDir
        kernelDir
        kernelVersion
        ;
    };
    modules = [
      ../../examples/iso.nix
      (
        { pkgs, ... }:
        {
          nixlive.package = pkgs.nixliveHost;
          nixlive.guestPackage = pkgs.nixliveGuestHost;
          nixlive.signKeyFile = signKeyFile;
          nixlive.trustedKeys = [ trustedKey ];
        }
      )
    ];
  };
in
e.config.system.build.nixliveIso
