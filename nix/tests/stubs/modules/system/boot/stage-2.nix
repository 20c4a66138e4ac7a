# Mirrors nixos/modules/system/boot/stage-2.nix: boot.postBootCommands.
{ lib, ... }:
{
  options.boot.postBootCommands = lib.mkOption {
    default = "";
    example = "rm -f /var/log/messages";
    type = lib.types.lines;
    description = "Shell commands to be executed just before systemd is started.";
  };
}
