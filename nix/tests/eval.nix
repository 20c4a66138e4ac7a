# The evaluation tests of nix/module.nix, run by
# tests-vm/tests/vm/nixos_module.rs with Debian's Nix and nixpkgs' lib
# alone: the module and the examples evaluated by `lib.evalModules` against
# the stub NixOS modules (stubs/modules) and the stub nixpkgs
# (stubs/pkgs.nix), as NixOS's eval-config.nix would evaluate them.
#
# `nix-instantiate --eval --strict --json eval.nix -A checks --arg
# nixpkgsLib PATH` gives, for each example, the options nix/module.nix set, the `nixlive`
# command line and Hydra's products of its output (store paths shown as
# @name@), boot.postBootCommands, and the failed assertions; and for each
# impossible configuration, the module's assertion messages.
# `-A typeError.<case>` forces a configuration whose value has the wrong
# type: its evaluation must fail, with the message the test expects.
{ nixpkgsLib }:
let
  lib = import (nixpkgsLib + "/lib");

  evalSystem = args: import ./eval-system.nix ({ inherit lib; } // args);

  # NixOS's top-level.nix fails on these; here they are data.
  failedAssertions = config: map (a: a.message) (builtins.filter (a: !a.assertion) config.assertions);

  # Store paths of the fixture as @names@, so that the test reads like the
  # command a user would see.
  symbolic =
    e:
    let
      c = e.config;
      cfg = c.nixlive;
      iso = c.system.build.nixliveIso;
      key = p: builtins.unsafeDiscardStringContext (toString p);
      names = {
        ${key (builtins.placeholder "out")} = "$out";
        ${key c.boot.kernelPackages.kernel} = "@kernel@";
        ${key cfg.guestPackage} = "@guest@";
        ${key cfg.package} = "@nixlive@";
        ${key c.system.build.toplevel} = "@system@";
        ${key c.hardware.firmware} = "@firmware@";
        ${key cfg.grubEfi} = "@grub@";
        ${key cfg.syslinux} = "@syslinux@";
        ${key (e.pkgs.closureInfo { rootPaths = cfg.storeContents; })} = "@closure-info@";
        ${key e.pkgs.nix} = "@nix@";
      }
      // lib.listToAttrs (
        lib.imap0 (i: k: {
          name = key (builtins.toFile "nixlive-trusted-key-${toString i}" "${k}\n");
          value = "@trusted-key-${toString i}@";
        }) cfg.trustedKeys
      )
      // lib.optionalAttrs (cfg.authorizedKeys != [ ]) {
        ${key (
          builtins.toFile "nixlive-authorized-keys" (lib.concatStringsSep "\n" cfg.authorizedKeys + "\n")
        )} = "@authorized-keys@";
      };
      plain = builtins.unsafeDiscardStringContext;
    in
    s: builtins.replaceStrings (builtins.attrNames names) (builtins.attrValues names) (plain s);

  # What the test compares for one example and one of its outputs.
  report =
    e: output:
    let
      c = e.config;
      drv = c.system.build.${output};
      sym = symbolic e;
    in
    {
      options = {
        inherit (c.nixlive)
          label
          moduleSets
          modules
          kernelParams
          appendKernelParams
          authorizedKeys
          trustedKeys
          verity
          imageFormat
          squashfsCompression
          maxImageSize
          uefi
          isoName
          ;
        signKeyFile = if c.nixlive.signKeyFile == null then null else toString c.nixlive.signKeyFile;
        storeContents = map (p: sym "${p}") c.nixlive.storeContents;
        diskImage = {
          inherit (c.nixlive.diskImage)
            label
            fileName
            size
            partitionTable
            compress
            growRoot
            ;
        };
        netboot = c.nixlive.netboot;
      };
      command = sym drv.nixliveCommand;
      args = map sym drv.nixliveArgs;
      hydraBuildProducts = sym drv.hydraBuildProducts;
      script = sym drv.nixliveScript;
      # The derivation's builder runs the script (stubs/pkgs.nix runCommand).
      builderRunsScript = builtins.elemAt drv.drvAttrs.args 3 == drv.nixliveScript;
      drvName = drv.name;
      postBootCommands = sym c.boot.postBootCommands;
      failedAssertions = failedAssertions c;
    };

  example =
    file: system:
    evalSystem {
      modules = [ file ];
      inherit system;
    };
  isoExample = example ../../examples/iso.nix "x86_64-linux";
  netbootExample = example ../../examples/netboot-http.nix "x86_64-linux";
  sdExample = example ../../examples/sd-image.nix "aarch64-linux";

  # The ISO example with one more module.
  isoWith =
    extra:
    evalSystem {
      modules = [
        ../../examples/iso.nix
        extra
      ];
    };
  assertionsOf = extra: failedAssertions (isoWith extra).config;

  # A configuration whose assertions fail must not give a derivation either.
  outputRefused =
    extra:
    !(builtins.tryEval (builtins.seq (isoWith extra).config.system.build.nixliveIso.drvPath true))
    .success;
in
{
  checks = {
  examples = {
    iso = report isoExample "nixliveIso";
    netbootHttp = report netbootExample "nixliveNetbootHttp";
    sdImage = report sdExample "nixliveDiskImage";
  };

  # Every output of the ISO example, for their command lines and products.
  outputs = lib.genAttrs [
    "nixliveIso"
    "nixliveMedium"
    "nixliveNetboot"
    "nixliveNetbootHttp"
    "nixliveTarball"
    "nixliveDiskImage"
  ] (o: {
    inherit (report isoExample o) command hydraBuildProducts drvName;
  });

  # A configuration without NixOS's image modules: nixlive's own defaults.
  plain = report (evalSystem {
    modules = [
      ../module.nix
      { nixlive.enable = true; }
    ];
  }) "nixliveIso";

  # Without nixlive.enable the module changes nothing and adds no outputs.
  disabled =
    let
      e = evalSystem {
        modules = [
          ../module.nix
          ./stubs/modules/installer/cd-dvd/installation-cd-minimal.nix
        ];
      };
    in
    {
      outputs = builtins.filter (lib.hasPrefix "nixlive") (builtins.attrNames e.config.system.build);
      postBootCommands = builtins.unsafeDiscardStringContext (
        builtins.replaceStrings [ "${e.pkgs.nix}" ] [ "@nix@" ] e.config.boot.postBootCommands
      );
    };

  # The options that change the command line, one configuration each.
  variants = {
    noUefiErofsLayers =
      (report (isoWith {
        nixlive.uefi = false;
        nixlive.imageFormat = "erofs";
        nixlive.maxImageSize = "1G";
        nixlive.verity = false;
        nixlive.appendKernelParams = [ "copytoram" ];
        nixlive.moduleSets = [ "base" ];
      }) "nixliveIso").command;
    aarch64 =
      (report (evalSystem {
        system = "aarch64-linux";
        modules = [
          ../module.nix
          { nixlive.enable = true; }
        ];
      }) "nixliveIso").command;
    i686 =
      (report (evalSystem {
        system = "i686-linux";
        modules = [
          ../module.nix
          { nixlive.enable = true; }
        ];
      }) "nixliveIso").command;
    gptDiskOfASize =
      (report (isoWith {
        nixlive.diskImage.partitionTable = "gpt";
        nixlive.diskImage.size = "8G";
        nixlive.diskImage.growRoot = false;
        nixlive.diskImage.fileName = "usb.img";
      }) "nixliveDiskImage").command;
  };

  # isoImage.squashfsCompression is read when a module sets it.
  squashfsFromIsoImage = (isoWith { isoImage.squashfsCompression = "xz -Xbcj x86"; }).config.nixlive.squashfsCompression;

  impossible = {
    signKeyIsANixPath = assertionsOf { nixlive.signKeyFile = ./eval.nix; };
    signKeyIsRelative = assertionsOf { nixlive.signKeyFile = "keys/sign.key"; };
    signKeyIsInTheStore = assertionsOf { nixlive.signKeyFile = "/nix/store/00000000000000000000000000000000-sign.key"; };
    trustedKeysWithoutSigning = assertionsOf {
      nixlive.trustedKeys = [ "live.example.org-1:/Oyq73eJXstJuw1NzgtmSfC6ATmnfR/Abv/kwxIkycw=" ];
    };
    trustedKeyNotAKey = assertionsOf {
      nixlive.signKeyFile = "/run/keys/sign.key";
      nixlive.trustedKeys = [ "ssh-ed25519 AAAA" ];
    };
    # 31 bytes: the builder would refuse it after the evaluation.
    trustedKeyTooShort = assertionsOf {
      nixlive.signKeyFile = "/run/keys/sign.key";
      nixlive.trustedKeys = [ "live.example.org-1:c2l4dGVlbiBieXRlcyBvZiBrZXkgbWF0ZXJpYWwhIQ==" ];
    };
    labelTooLong = assertionsOf { nixlive.label = "NIXOS_LIVE_MEDIUM_WITH_A_LONG_NAME"; };
    labelWithASpace = assertionsOf { nixlive.label = "NIXOS LIVE"; };
    diskLabelTooLong = assertionsOf { nixlive.diskImage.label = "NIXOS_SD_CARD_ROOT"; };
    maxImageSizeNotASize = assertionsOf { nixlive.maxImageSize = "4 GB"; };
    lzoFromIsoImage = assertionsOf { isoImage.squashfsCompression = "lzo"; };
    moduleWithASpace = assertionsOf { nixlive.modules = [ "virtio blk" ]; };
    baseUrlNotHttp = assertionsOf { nixlive.netboot.baseUrl = "tftp://boot.example.org/"; };
    uefiOnI686 = failedAssertions
      (evalSystem {
        system = "i686-linux";
        modules = [
          ../module.nix
          {
            nixlive.enable = true;
            nixlive.uefi = true;
          }
        ];
      }).config;
    noUefiOnAarch64 = failedAssertions
      (evalSystem {
        system = "aarch64-linux";
        modules = [
          ../module.nix
          {
            nixlive.enable = true;
            nixlive.uefi = false;
          }
        ];
      }).config;
    unknownPlatform = failedAssertions
      (evalSystem {
        system = "riscv64-linux";
        modules = [
          ../module.nix
          { nixlive.enable = true; }
        ];
      }).config;
  };

  # Each impossible configuration also refuses to give its derivation.
  refused = {
    signKeyIsANixPath = outputRefused { nixlive.signKeyFile = ./eval.nix; };
    trustedKeysWithoutSigning = outputRefused {
      nixlive.trustedKeys = [ "live.example.org-1:/Oyq73eJXstJuw1NzgtmSfC6ATmnfR/Abv/kwxIkycw=" ];
    };
    labelTooLong = outputRefused { nixlive.label = "NIXOS_LIVE_MEDIUM_WITH_A_LONG_NAME"; };
  };

  };

  # Wrong types: forcing each must fail with the type's own description.
  typeError =
    lib.mapAttrs
      (
        _: extra:
        builtins.deepSeq (
          let
            n = (isoWith extra).config.nixlive;
          in
          [
            n.label
            n.moduleSets
            n.trustedKeys
            n.maxImageSize
            n.signKeyFile
            n.verity
            n.kernelParams
          ]
        ) "evaluated"
      )
      {
        label = { nixlive.label = 42; };
        moduleSet = { nixlive.moduleSets = [ "cdrom" ]; };
        trustedKeys = { nixlive.trustedKeys = "live.example.org-1:/Oyq73eJXstJuw1NzgtmSfC6ATmnfR/Abv/kwxIkycw="; };
        maxImageSize = { nixlive.maxImageSize = 1.5; };
        signKeyFile = { nixlive.signKeyFile = 42; };
        verity = { nixlive.verity = "yes"; };
        kernelParam = { boot.kernelParams = [ "two words" ]; };
      };
}
