# The stubs that stand for NixOS's own modules in the tests of
# nix/module.nix (nixpkgs itself is not available to them; its lib is).
# Each file sits at the path of the NixOS module it mirrors, under
# nixos/modules/, and declares the options nix/module.nix and the examples
# read or set, with NixOS's names, types and defaults. Where a default
# needs the rest of nixpkgs, the file says what it does instead.
[
  ./misc/assertions.nix
  ./system/build.nix
  ./system/boot/kernel.nix
  ./system/boot/loader/loader.nix
  ./system/boot/stage-2.nix
  ./config/users-groups.nix
  ./services/networking/ssh/sshd.nix
  ./services/hardware/udev.nix
]
