# Mirrors nixos/modules/services/networking/ssh/sshd.nix: services.openssh.enable,
# and the users.users.<name>.openssh.authorizedKeys options it adds.
{ lib, ... }:
let
  userOptions = {
    options.openssh.authorizedKeys = {
      keys = lib.mkOption {
        type = lib.types.listOf lib.types.singleLineStr;
        default = [ ];
        description = "A list of verbatim OpenSSH public keys that should be added to the user's authorized keys.";
        example = [ "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA user@host" ];
      };

      keyFiles = lib.mkOption {
        type = lib.types.listOf lib.types.path;
        default = [ ];
        description = "A list of files each containing one OpenSSH public key that should be added to the user's authorized keys.";
      };
    };
  };
in
{
  options = {
    users.users = lib.mkOption {
      type = with lib.types; attrsOf (submodule userOptions);
    };

    services.openssh.enable = lib.mkOption {
      type = lib.types.bool;
      default = false;
      description = "Whether to enable the OpenSSH secure shell daemon, which allows secure remote logins.";
    };
  };
}
