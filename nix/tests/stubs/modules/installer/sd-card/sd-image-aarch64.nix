# Mirrors nixos/modules/installer/sd-card/sd-image-aarch64.nix: sd-image.nix
# and the serial consoles it puts on the kernel command line.
{ ... }:
{
  imports = [ ./sd-image.nix ];

  boot.kernelParams = [
    "console=ttyS0,115200n8"
    "console=ttyAMA0,115200n8"
    "console=tty0"
  ];
}
