# Mirrors nixos/modules/installer/netboot/netboot-minimal.nix (netboot.nix
# and the minimal profile, which sets nothing nixlive reads).
{ ... }:
{
  imports = [ ./netboot.nix ];
}
