# Mirrors nixos/modules/config/users-groups.nix: users.users.<name>, with
# the one user option the examples set (hashedPassword).
{ lib, ... }:
let
  userOpts =
    { name, ... }:
    {
      options = {
        name = lib.mkOption {
          type = lib.types.passwdEntry lib.types.str;
          default = name;
          description = "The name of the user account.";
        };
        hashedPassword = lib.mkOption {
          type = with lib.types; nullOr (passwdEntry str);
          default = null;
          description = "Specifies the hashed password for the user.";
        };
      };
    };
in
{
  options.users.users = lib.mkOption {
    default = { };
    type = with lib.types; attrsOf (submodule userOpts);
    example = {
      alice = {
        uid = 1234;
        description = "Alice Q. User";
      };
    };
    description = "Additional user accounts to be created automatically by the system.";
  };
}
