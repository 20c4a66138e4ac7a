# The NixOS module of nixlive: options under `nixlive.`, and the outputs
# `system.build.nixliveIso`, `nixliveMedium`, `nixliveNetboot`,
# `nixliveNetbootHttp`, `nixliveTarball` and `nixliveDiskImage`, each a
# derivation that runs `nixlive` on the closureInfo of the system. It
# replaces NixOS's stage 1 (the initrd) and the image only: beside
# installation-cd-minimal.nix, netboot-minimal.nix or sd-image-*.nix the
# system is theirs, and nixlive-postboot takes the place of their
# `nix-store --load-db` in `boot.postBootCommands`.
#
# Defaults come from the NixOS configuration where NixOS has the value:
# the kernel (boot.kernelPackages.kernel, system.modulesTree), the initrd's
# modules (boot.initrd.availableKernelModules and kernelModules), the
# kernel parameters (boot.kernelParams), root's SSH keys, and, when the
# image modules are imported, isoImage.volumeID, isoImage.squashfsCompression
# (when set), sdImage.rootVolumeLabel, sdImage.compressImage and
# sdImage.expandOnBoot. See docs/nixos.md.
{
  config,
  options,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib)
    concatMap
    concatStringsSep
    filter
    hasAttrByPath
    hasPrefix
    isPath
    mkIf
    mkOption
    optional
    types
    ;
  cfg = config.nixlive;
  nixliveLib = import ./lib.nix { inherit lib; };
  platform = pkgs.stdenv.hostPlatform;

  # An option of an image module, when that module is imported.
  imageOption = path: hasAttrByPath path options;
  # Its value when it is defined by something other than its own default
  # (mkOptionDefault has priority 1500).
  setValue =
    path: fallback:
    let
      opt = lib.getAttrFromPath path options;
    in
    if imageOption path && opt.isDefined && opt.highestPrio < 1500 then opt.value else fallback;
  valueOr = path: fallback: if imageOption path then lib.getAttrFromPath path config else fallback;

  # The module sets of `nixlive --module-set`.
  moduleSetNames = [
    "base"
    "cd"
    "sata"
    "usb"
    "virtio"
    "nvme"
    "mmc"
    "net"
    "fs"
  ];

  # NixOS loads modules through modprobe, which takes aliases; `nixlive
  # --module` takes module names. iso-image.nix asks for `iso9660`.
  moduleAliases = {
    iso9660 = "isofs";
  };
  moduleName = m: moduleAliases.${m} or m;

  # iso-image.nix's squashfsCompression is mksquashfs's arguments
  # ("xz -Xdict-size 100% -Xbcj x86"): the compressor is the first word.
  firstWord = s: lib.head (lib.splitString " " (trim s));
  # lib.trim is recent (nixpkgs 24.05); this takes any.
  trim =
    s:
    let
      m = builtins.match "[[:space:]]*(.*[^[:space:]])[[:space:]]*" s;
    in
    if m == null then "" else lib.head m;

  # The kernel parameters the builder writes itself.
  ownedParam = p: hasPrefix "root=" p || hasPrefix "init=" p;

  kernel = config.boot.kernelPackages.kernel;

  labelChars = "[A-Za-z0-9_.-]+";
  validLabel = max: l: builtins.match labelChars l != null && lib.stringLength l <= max;
  sizePattern = "[0-9]+[KMGT]?";
  # NAME:BASE64 of an Ed25519 public key, 32 bytes (44 characters).
  publicKeyPattern = "[A-Za-z0-9._-]+:[A-Za-z0-9+/]{43}=";

  keyIsPath = cfg.signKeyFile != null && isPath cfg.signKeyFile;
  keyString = if cfg.signKeyFile == null || keyIsPath then null else cfg.signKeyFile;

  # The public keys are public: each is a file in the store.
  trustedKeyFiles = lib.imap0 (
    i: k: builtins.toFile "nixlive-trusted-key-${toString i}" "${k}\n"
  ) cfg.trustedKeys;
  authorizedKeysFile =
    if cfg.authorizedKeys == [ ] then
      null
    else
      builtins.toFile "nixlive-authorized-keys" (concatStringsSep "\n" cfg.authorizedKeys + "\n");

  closureInfo = pkgs.closureInfo { rootPaths = cfg.storeContents; };

  efiArch =
    if platform.isx86_64 then
      "x86_64"
    else if platform.isAarch64 then
      "aarch64"
    else
      null;

  # What every output shares; each output adds its own.
  common = {
    inherit (cfg) package modules moduleSets;
    kernel = "${kernel}/${config.system.boot.loader.kernelFile}";
    modulesDir = "${config.system.modulesTree}/lib/modules/${kernel.modDirVersion}";
    kernelConfig = kernel.configfile or null;
    firmwareDirs = [ "${config.hardware.firmware}/lib/firmware" ];
    init = "${cfg.guestPackage}/bin/nixlive-init";
    authorizedKeys = authorizedKeysFile;
    inherit closureInfo;
    system = config.system.build.toplevel;
    append = concatStringsSep " " (cfg.kernelParams ++ cfg.appendKernelParams);
  };
  withImages = common // {
    inherit (cfg)
      imageFormat
      squashfsCompression
      maxImageSize
      verity
      ;
    inherit trustedKeyFiles;
    signKeyFile = keyString;
  };
  withBoot = withImages // {
    inherit (cfg) label uefi;
    efiArch = if efiArch == null then "x86_64" else efiArch;
    grubEfiDir = "${cfg.grubEfi}/lib/grub/${cfg.grubEfi.grubTarget}";
    isolinux = {
      bin = "${cfg.syslinux}/share/syslinux/isolinux.bin";
      ldlinux = "${cfg.syslinux}/share/syslinux/ldlinux.c32";
      isohdpfx = "${cfg.syslinux}/share/syslinux/isohdpfx.bin";
    };
  };
  # A plain root is ext4 (`nixlive disk-image --fs ext4`, and what a
  # tarball is unpacked onto), as sd-image.nix's fileSystems."/" is.
  systemTree = common // {
    modules = lib.unique (cfg.modules ++ [ "ext4" ]);
    label = cfg.diskImage.label;
    append = concatStringsSep " " (
      cfg.kernelParams ++ optional cfg.diskImage.growRoot "nixlive.grow_root" ++ cfg.appendKernelParams
    );
  };

  # The module's own checks: NixOS fails the build of the system with
  # these messages, and every output refuses to evaluate without them.
  checks = [
    {
      assertion = efiArch != null || platform.isi686;
      message = "nixlive: ${platform.system} is not a platform nixlive builds media for (x86_64, i686 and aarch64 are).";
    }
    {
      assertion = validLabel 32 cfg.label;
      message = "nixlive.label \"${cfg.label}\" is not an ISO 9660 volume label: at most 32 characters of A-Z a-z 0-9 _ - . (it is also root=LABEL= and GRUB's search label).";
    }
    {
      assertion = validLabel 16 cfg.diskImage.label;
      message = "nixlive.diskImage.label \"${cfg.diskImage.label}\" is not an ext4 label: at most 16 characters of A-Z a-z 0-9 _ - . (boot/cmdline names the root by it).";
    }
    {
      assertion = !keyIsPath;
      message = "nixlive.signKeyFile is the Nix path ${toString cfg.signKeyFile}, which Nix would copy into the world-readable store: give the secret key as a string naming a file of the build machine (\"/var/lib/nixlive/sign.key\"), read when the medium is built.";
    }
    {
      assertion = keyString == null || hasPrefix "/" keyString;
      message = "nixlive.signKeyFile \"${toString keyString}\" is not an absolute path: the key is read by the build, from the build machine.";
    }
    {
      assertion = keyString == null || !(hasPrefix "${builtins.storeDir}/" keyString);
      message = "nixlive.signKeyFile \"${toString keyString}\" is in the Nix store, where every user can read it: keep the secret key outside the store.";
    }
    {
      assertion = cfg.trustedKeys == [ ] || cfg.signKeyFile != null;
      message = "nixlive.trustedKeys is set but nixlive.signKeyFile is not: the initrd would boot only a medium signed by ${concatStringsSep ", " (map (k: lib.head (lib.splitString ":" k)) cfg.trustedKeys)}, and this one would not be signed, so it could never boot.";
    }
    {
      assertion = lib.all (k: builtins.match publicKeyPattern k != null) cfg.trustedKeys;
      message = "nixlive.trustedKeys holds ${concatStringsSep ", " (map (k: "\"${k}\"") (filter (k: builtins.match publicKeyPattern k == null) cfg.trustedKeys))}, which is not a Nix public key (NAME:BASE64 of 32 bytes, the second file of nix-store --generate-binary-cache-key).";
    }
    {
      assertion =
        cfg.maxImageSize == null
        || lib.isInt cfg.maxImageSize
        || builtins.match sizePattern cfg.maxImageSize != null;
      message = "nixlive.maxImageSize \"${toString cfg.maxImageSize}\" is not a size: bytes, or a number with K, M, G or T (binary), such as \"4095M\".";
    }
    {
      assertion = !(cfg.uefi && platform.isi686);
      message = "nixlive.uefi is true on i686, for which nixlive has no UEFI boot (no 32-bit GRUB): set nixlive.uefi = false; the ISO boots by BIOS.";
    }
    {
      assertion = cfg.uefi || platform.isx86;
      message = "nixlive.uefi is false on ${platform.system}, where an ISO boots only through UEFI (ISOLINUX is x86 only).";
    }
    {
      assertion = lib.elem cfg.squashfsCompression [
        "zstd"
        "xz"
        "gzip"
        "lz4"
        "none"
      ];
      message = "nixlive.squashfsCompression is \"${cfg.squashfsCompression}\" (from isoImage.squashfsCompression when that is set), which nixlive does not write: set nixlive.squashfsCompression to zstd, xz, gzip, lz4 or none.";
    }
    {
      assertion = lib.all (m: builtins.match "[A-Za-z0-9_-]+" m != null) cfg.modules;
      message = "nixlive.modules holds ${concatStringsSep ", " (map (m: "\"${m}\"") (filter (m: builtins.match "[A-Za-z0-9_-]+" m == null) cfg.modules))}: a kernel module name has only letters, digits, - and _.";
    }
    {
      assertion = cfg.netboot.baseUrl == null || builtins.match "https?://.+" cfg.netboot.baseUrl != null;
      message = "nixlive.netboot.baseUrl \"${toString cfg.netboot.baseUrl}\" is not an http:// or https:// URL.";
    }
  ];
  failed = map (c: c.message) (filter (c: !c.assertion) checks);
  checked =
    drv:
    if failed == [ ] then
      drv
    else
      throw "\nFailed assertions:\n${concatStringsSep "\n" (map (m: "- ${m}") failed)}";

  build = kind: spec: checked (nixliveLib.build pkgs (spec // { inherit kind; }));

  # NixOS's image modules register the store with these lines in
  # boot.postBootCommands (iso-image.nix, netboot.nix); nixlive-postboot
  # does all three, so they go.
  replacedLine =
    line:
    let
      l = trim line;
    in
    builtins.match ".*/bin/nix-store --load-db < /nix/store/nix-path-registration" l != null
    || builtins.match ".*/bin/nix-env -p /nix/var/nix/profiles/system --set /run/current-system" l != null
    || l == "touch /etc/NIXOS";
  withoutNixosRegistration =
    text: concatStringsSep "\n" (filter (l: !(replacedLine l)) (lib.splitString "\n" text));
  postbootLine = "${cfg.guestPackage}/bin/nixlive-postboot";

  # A type whose errors say what is wanted.
  described = description: type: type // { inherit description; };
in
{
  options = {
    # NixOS's own option, declared in nixos/modules/system/boot/stage-2.nix;
    # this declaration adds only `apply`, which drops the registration
    # lines nixlive-postboot replaces.
    boot.postBootCommands = mkOption {
      apply =
        text:
        if cfg.enable && cfg.postboot.replaceRegistration then withoutNixosRegistration text else text;
    };

    nixlive = {
      enable = lib.mkEnableOption "nixlive's stage 1 and media builder (system.build.nixliveIso and the others)";

      package = mkOption {
        type = types.package;
        default = pkgs.buildPackages.callPackage ./package.nix { };
        defaultText = lib.literalExpression "pkgs.buildPackages.callPackage <nixlive/nix/package.nix> { }";
        description = "The builder, `bin/nixlive`, run on the build machine.";
      };

      guestPackage = mkOption {
        type = types.package;
        default = (pkgs.callPackage ./package.nix { }).guest;
        defaultText = lib.literalExpression "(pkgs.callPackage <nixlive/nix/package.nix> { }).guest";
        description = "The static `bin/nixlive-init` (the initrd's PID 1) and `bin/nixlive-postboot` for the system's platform.";
      };

      label = mkOption {
        type = described "ISO 9660 volume label (at most 32 of A-Z a-z 0-9 _ - .)" types.str;
        default = valueOr [ "isoImage" "volumeID" ] "NIXOS_LIVE";
        defaultText = lib.literalMD "`isoImage.volumeID` when iso-image.nix is imported, else `\"NIXOS_LIVE\"`";
        description = "The medium's label: ISO volume ID, `root=LABEL=` and GRUB's search label (iso, medium).";
      };

      moduleSets = mkOption {
        type = types.listOf (types.enum moduleSetNames);
        default = [
          "base"
          "cd"
          "usb"
          "sata"
          "virtio"
          "nvme"
          "mmc"
        ];
        description = "nixlive's named module sets (`--module-set`); modules a set names that the kernel lacks are skipped.";
      };

      modules = mkOption {
        type = types.listOf types.str;
        default = map moduleName (
          lib.unique (config.boot.initrd.availableKernelModules ++ config.boot.initrd.kernelModules)
        );
        defaultText = lib.literalMD "`boot.initrd.availableKernelModules` and `boot.initrd.kernelModules` (`iso9660` as `isofs`)";
        description = "Kernel modules packed into the initrd with their dependencies (`--module`); each must exist in the kernel or be built in.";
      };

      kernelParams = mkOption {
        type = types.listOf types.str;
        default = filter (p: !(ownedParam p)) config.boot.kernelParams;
        defaultText = lib.literalMD "`boot.kernelParams` without `root=` and `init=` (the builder writes those)";
        description = "Kernel parameters of every boot entry (`--append`).";
      };

      appendKernelParams = mkOption {
        type = types.listOf types.str;
        default = [ ];
        example = [ "nixlive.timeout=120" ];
        description = "More kernel parameters, after `nixlive.kernelParams`.";
      };

      authorizedKeys = mkOption {
        type = types.listOf types.str;
        default =
          let
            ak = config.users.users.root.openssh.authorizedKeys or { };
          in
          (ak.keys or [ ])
          ++ concatMap (f: filter (l: l != "") (lib.splitString "\n" (builtins.readFile f))) (ak.keyFiles or [ ]);
        defaultText = lib.literalMD "`users.users.root.openssh.authorizedKeys` (keys and keyFiles)";
        description = "SSH public keys packed into the initrd (`--authorized-keys`); nixlive-postboot installs them for root.";
      };

      signKeyFile = mkOption {
        type = types.nullOr (
          described "absolute path of a file of the build machine, as a string" (
            types.either types.str types.path
          )
        );
        default = null;
        example = "/var/lib/nixlive/sign.key";
        description = ''
          A Nix binary-cache secret key (`nix-store --generate-binary-cache-key`)
          that signs the medium's manifest (`--sign-key`). A string naming a
          file of the build machine, read when the medium is built and never
          copied into the store; the build sandbox must be allowed to read it
          (`nix.settings.extra-sandbox-paths`). A Nix path (`./key`) is refused.
        '';
      };

      trustedKeys = mkOption {
        type = types.listOf (described "Nix public key (NAME:BASE64)" types.str);
        default = [ ];
        example = [ "live.example.org-1:/Oyq73eJXstJuw1NzgtmSfC6ATmnfR/Abv/kwxIkycw=" ];
        description = "Nix public keys packed into the initrd (`--trusted-key`): it then boots only a medium whose manifest one of them signed.";
      };

      verity = mkOption {
        type = types.bool;
        default = true;
        description = "Whether every image carries a dm-verity hash tree, checked block by block as it is read (false: `--no-verity`).";
      };

      imageFormat = mkOption {
        type = types.enum [
          "squashfs"
          "erofs"
        ];
        default = "squashfs";
        description = "The store images' filesystem (`--image-format`).";
      };

      squashfsCompression = mkOption {
        type = types.str;
        default = firstWord (setValue [ "isoImage" "squashfsCompression" ] "zstd");
        defaultText = lib.literalMD "the compressor of `isoImage.squashfsCompression` when that is set, else `\"zstd\"`";
        description = "The squashfs images' compression: zstd, xz, gzip, lz4 or none (`--squashfs-compression`).";
      };

      maxImageSize = mkOption {
        type = types.nullOr (described "size (bytes, or with K, M, G, T)" (types.either types.ints.positive types.str));
        default = null;
        example = "4095M";
        description = "Split the store into layered images of at most this size (`--max-image-size`; null: one image, but `nixliveMedium` keeps FAT32's 4095M).";
      };

      uefi = mkOption {
        type = types.bool;
        default = !platform.isi686;
        defaultText = lib.literalMD "`true`, except on i686";
        description = "Whether the ISO boots by UEFI too (GRUB and an EFI system partition image); false: `--no-uefi`, BIOS only.";
      };

      storeContents = mkOption {
        type = types.listOf types.package;
        default = lib.unique (
          [ config.system.build.toplevel ]
          ++ valueOr [ "isoImage" "storeContents" ] [ ]
          ++ valueOr [ "netboot" "storeContents" ] [ ]
          ++ valueOr [ "sdImage" "storePaths" ] [ ]
        );
        defaultText = lib.literalMD "the system, and `isoImage.storeContents`, `netboot.storeContents` or `sdImage.storePaths` when those modules are imported";
        description = "What the store on the medium holds, with its closure (`closureInfo { rootPaths = ...; }`).";
      };

      isoName = mkOption {
        type = types.str;
        default = valueOr [ "isoImage" "isoName" ] "nixos-live.iso";
        defaultText = lib.literalMD "`isoImage.isoName` when iso-image.nix is imported, else `\"nixos-live.iso\"`";
        description = "The ISO's file name under `iso/` of `nixliveIso`.";
      };

      netboot.baseUrl = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "http://boot.example.org/nixos";
        description = "Where `nixliveNetbootHttp`'s files are served (`--base-url`); null: the iPXE script's own URL.";
      };

      diskImage = {
        label = mkOption {
          type = described "ext4 label (at most 16 of A-Z a-z 0-9 _ - .)" types.str;
          default = valueOr [ "sdImage" "rootVolumeLabel" ] "NIXOS_SD";
          defaultText = lib.literalMD "`sdImage.rootVolumeLabel` when sd-image.nix is imported, else `\"NIXOS_SD\"`";
          description = "The root filesystem's label of `nixliveTarball` and `nixliveDiskImage` (`root=LABEL=`).";
        };
        fileName = mkOption {
          type = types.str;
          default = "nixos-sd.img";
          description = "The image's file name under `sd-image/`.";
        };
        size = mkOption {
          type = types.nullOr types.str;
          default = null;
          example = "8G";
          description = "The whole image's size (`--size`); null: the tree plus a quarter and 64 MiB.";
        };
        partitionTable = mkOption {
          type = types.enum [
            "gpt"
            "mbr"
          ];
          default = "mbr";
          description = "The partition table (`--partition-table`): MBR as NixOS's SD images have, which every board's firmware reads.";
        };
        compress = mkOption {
          type = types.bool;
          default = valueOr [ "sdImage" "compressImage" ] false;
          defaultText = lib.literalMD "`sdImage.compressImage` when sd-image.nix is imported, else `false`";
          description = "Whether the image is compressed with zstd (`.img.zst`).";
        };
        growRoot = mkOption {
          type = types.bool;
          default = valueOr [ "sdImage" "expandOnBoot" ] true;
          defaultText = lib.literalMD "`sdImage.expandOnBoot` when sd-image.nix is imported, else `true`";
          description = "Whether the first boot grows the root partition and its ext4 to the end of the card (`nixlive.grow_root`).";
        };
      };

      tarball.fileName = mkOption {
        type = types.str;
        default = "nixos-system.tar.zst";
        description = "The system tarball's file name under `tarball/` (`.tar`, `.tar.zst` or `.tar.xz`).";
      };

      postboot.replaceRegistration = mkOption {
        type = types.bool;
        default = true;
        description = "Whether nixlive-postboot replaces the `nix-store --load-db`, `touch /etc/NIXOS` and `nix-env --set` lines NixOS's image modules put in `boot.postBootCommands` (it runs first in either case, and does all three).";
      };

      grubEfi = mkOption {
        type = types.package;
        default = pkgs.buildPackages.grub2_efi;
        defaultText = lib.literalExpression "pkgs.buildPackages.grub2_efi";
        description = "GRUB for the EFI program of the ISO (`--grub-efi-dir`, its `lib/grub/<grubTarget>`).";
      };

      syslinux = mkOption {
        type = types.package;
        default = pkgs.buildPackages.syslinux;
        defaultText = lib.literalExpression "pkgs.buildPackages.syslinux";
        description = "ISOLINUX for BIOS boot of the ISO (`share/syslinux/isolinux.bin`, `ldlinux.c32`, `isohdpfx.bin`).";
      };
    };
  };

  config = mkIf cfg.enable {
    assertions = checks;

    # Early in stage 2, before systemd: the Nix database, /etc/NIXOS, the
    # system profile and root's SSH keys (see README, "Post-boot agent").
    boot.postBootCommands = lib.mkBefore postbootLine;

    system.build = {
      nixliveIso = build "iso" (withBoot // { inherit (cfg) isoName; });
      nixliveMedium = build "medium" withBoot;
      nixliveNetboot = build "netboot" withImages;
      nixliveNetbootHttp = build "netbootHttp" (withImages // { inherit (cfg.netboot) baseUrl; });
      nixliveTarball = build "tarball" (systemTree // { tarballName = cfg.tarball.fileName; });
      nixliveDiskImage = build "diskImage" (
        systemTree
        // {
          diskImageName = cfg.diskImage.fileName;
          diskSize = cfg.diskImage.size;
          inherit (cfg.diskImage) partitionTable compress;
        }
      );
    };
  };
}
