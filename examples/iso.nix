# A live ISO: NixOS's minimal installer with nixlive's stage 1, reachable
# over SSH with a key and with a root password (the NixOS wiki's custom
# live CD, and the NixOS manual's "Building a NixOS (Live) ISO").
#
# Build (from the root of nixlive's source, with nixpkgs on NIX_PATH):
#   nix-build '<nixpkgs/nixos>' -A config.system.build.nixliveIso -I nixos-config=examples/iso.nix
# The ISO is result/iso/*.iso; `dd` it onto a USB stick or boot it as a CD.
{ modulesPath, ... }:
{
  imports = [
    (modulesPath + "/installer/cd-dvd/installation-cd-minimal.nix")
    ../nix/module.nix
  ];

  nixlive.enable = true;

  # SSH with this key; the installer's `nixos` user and the console stay.
  services.openssh.enable = true;
  users.users.root.openssh.authorizedKeys.keys = [
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEIaD3ZOY0tC7eKnW4Alh2jmzfjZ+aXWSfrAIPmu2SKY alice@laptop"
  ];
  # The password "nixos-live" (openssl passwd -6); make your own.
  users.users.root.hashedPassword = "$6$nixlivelivecd0$ROr/7rBQW3sc13RhS03uYMDohY7Rj1bQ/cCOEhgQuGVDIavACZF56.7r6NZoZVou7rh4tMX.b8yVWY3Rnbpx20";
}
