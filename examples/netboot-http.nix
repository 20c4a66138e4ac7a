# A netboot set served over HTTP: iPXE loads the kernel and a small initrd,
# and nixlive's init fetches the store image from the same web server (the
# NixOS manual's "Netboot" recipe, with nixlive's HTTP netboot).
#
# Build (from the root of nixlive's source, with nixpkgs on NIX_PATH):
#   nix-build '<nixpkgs/nixos>' -A config.system.build.nixliveNetbootHttp -I nixos-config=examples/netboot-http.nix
# Copy result/ to http://boot.example.org/nixos/ and chain
# http://boot.example.org/nixos/netboot.ipxe from iPXE.
{ modulesPath, ... }:
{
  imports = [
    (modulesPath + "/installer/netboot/netboot-minimal.nix")
    ../nix/module.nix
  ];

  nixlive.enable = true;
  nixlive.netboot.baseUrl = "http://boot.example.org/nixos";
  # The images are checked against the manifest the initrd trusts; sign
  # it with a key that never enters the store (docs/nixos.md, "Secrets").
  nixlive.signKeyFile = "/var/lib/nixlive/sign.key";
  nixlive.trustedKeys = [ "boot.example.org-1:/Oyq73eJXstJuw1NzgtmSfC6ATmnfR/Abv/kwxIkycw=" ];

  services.openssh.enable = true;
  users.users.root.openssh.authorizedKeys.keys = [
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEIaD3ZOY0tC7eKnW4Alh2jmzfjZ+aXWSfrAIPmu2SKY alice@laptop"
  ];
}
