# nixlive's builder functions, without NixOS: the `nixlive` command line
# of each kind of output, the build script that runs it and writes Hydra's
# product list, and the derivation around that script. nix/module.nix calls
# them with values taken from a NixOS configuration; flake.nix exports them
# as `lib` for whoever builds media from a system closure some other way.
#
# Store paths in a spec are strings (or derivations); the output directory
# is Nix's `placeholder "out"`, so the arguments are a plain list of words
# and the script quotes every one of them.
{ lib }:
let
  inherit (lib)
    concatMap
    concatStringsSep
    escapeShellArg
    escapeShellArgs
    optional
    optionals
    optionalString
    ;
in
rec {
  # What each kind of output is: the `nixlive` subcommand, whether it has
  # store images (and so signing, verity, trusted keys), boot loaders (a
  # volume label, UEFI and BIOS), or a system tree (a plain root).
  kinds = {
    iso = {
      command = "iso";
      images = true;
      boot = true;
      name = "nixlive-iso";
    };
    medium = {
      command = "medium";
      images = true;
      boot = true;
      name = "nixlive-medium";
    };
    netboot = {
      command = "netboot";
      images = true;
      boot = false;
      name = "nixlive-netboot";
    };
    netbootHttp = {
      command = "netboot";
      images = true;
      boot = false;
      name = "nixlive-netboot-http";
    };
    tarball = {
      command = "tarball";
      images = false;
      boot = false;
      name = "nixlive-tarball";
    };
    diskImage = {
      command = "disk-image";
      images = false;
      boot = false;
      name = "nixlive-disk-image";
    };
  };

  # The defaults of a spec; `args` and `build` take a spec with these
  # overridden (`kind`, `kernel`, `modulesDir`, `init`, `closureInfo`,
  # `system` and, for `build`, `package`, the builder, have none: they
  # must be given).
  defaults = {
    kernelConfig = null;
    firmwareDirs = [ ];
    modules = [ ];
    moduleSets = [ ];
    authorizedKeys = null; # a file of SSH public keys
    trustedKeyFiles = [ ]; # files, each one Nix public key
    append = "";
    imageFormat = "squashfs";
    squashfsCompression = "zstd";
    maxImageSize = null;
    verity = true;
    signKeyFile = null; # a path on the build machine, outside the store
    label = "NIXOS_LIVE";
    uefi = true;
    efiArch = "x86_64";
    grubEfiDir = null;
    isolinux = null; # { bin, ldlinux, isohdpfx } or null for the builder's defaults
    isoName = "nixos-live.iso";
    baseUrl = null;
    tarballName = "nixos-system.tar.zst";
    diskImageName = "nixos-disk.img";
    diskSize = null;
    partitionTable = "gpt";
    compress = false;
  };

  # Where the main file of each kind goes, under `out`.
  mainOutput =
    spec: out:
    {
      iso = "${out}/iso/${spec.isoName}";
      medium = "${out}/medium";
      netboot = out;
      netbootHttp = out;
      tarball = "${out}/tarball/${spec.tarballName}";
      diskImage = "${out}/sd-image/${spec.diskImageName}";
    }
    .${spec.kind};

  # `nix-support/hydra-build-products`, one line each, as NixOS's own image
  # modules write it (iso-image.nix `file iso`, sd-image.nix `file
  # sd-image`, make-system-tarball.nix `file system-tarball`).
  hydraBuildProducts =
    spec': out:
    let
      spec = defaults // spec';
      main = mainOutput spec out;
    in
    {
      iso = [ "file iso ${main}" ];
      medium = [ "file manifest ${main}/nixlive.manifest" ];
      netboot = [
        "file kernel ${out}/bzImage"
        "file initrd ${out}/initrd"
        "file ipxe ${out}/netboot.ipxe"
      ];
      netbootHttp = [
        "file kernel ${out}/bzImage"
        "file initrd ${out}/initrd"
        "file manifest ${out}/nixlive.manifest"
        "file ipxe ${out}/netboot.ipxe"
      ];
      tarball = [ "file system-tarball ${main}" ];
      diskImage = [ "file sd-image ${main}${optionalString spec.compress ".zst"}" ];
    }
    .${spec.kind};

  # The arguments of `nixlive` (its subcommand first) for `spec`, writing
  # under `out`.
  args =
    spec': out:
    let
      spec = defaults // spec';
      kind = kinds.${spec.kind};
      pairs = flag: concatMap (v: [
        flag
        (toString v)
      ]);
    in
    [
      kind.command
      "--kernel"
      (toString spec.kernel)
      "--modules-dir"
      (toString spec.modulesDir)
    ]
    ++ optionals (spec.kernelConfig != null) [
      "--kernel-config"
      (toString spec.kernelConfig)
    ]
    ++ pairs "--firmware-dir" spec.firmwareDirs
    ++ pairs "--module" spec.modules
    ++ optionals (spec.moduleSets != [ ]) [
      "--module-set"
      (concatStringsSep "," spec.moduleSets)
    ]
    ++ [
      "--init"
      (toString spec.init)
    ]
    ++ optionals (spec.authorizedKeys != null) [
      "--authorized-keys"
      (toString spec.authorizedKeys)
    ]
    ++ optionals kind.images (pairs "--trusted-key" spec.trustedKeyFiles)
    ++ [
      "--closure-info"
      (toString spec.closureInfo)
      "--system"
      (toString spec.system)
    ]
    ++ optionals (spec.append != "") [
      "--append"
      spec.append
    ]
    ++ optionals kind.images (
      [
        "--image-format"
        spec.imageFormat
      ]
      ++ optionals (spec.imageFormat == "squashfs") [
        "--squashfs-compression"
        spec.squashfsCompression
      ]
      ++ optionals (spec.maxImageSize != null) [
        "--max-image-size"
        (toString spec.maxImageSize)
      ]
      ++ optional (!spec.verity) "--no-verity"
      ++ optionals (spec.signKeyFile != null) [
        "--sign-key"
        spec.signKeyFile
      ]
    )
    ++ optionals kind.boot (
      [
        "--label"
        spec.label
      ]
      ++ (
        if spec.uefi then
          [
            "--efi-arch"
            spec.efiArch
          ]
          ++ optionals (spec.grubEfiDir != null) [
            "--grub-efi-dir"
            (toString spec.grubEfiDir)
          ]
        else
          [ "--no-uefi" ]
      )
      ++ optionals (spec.isolinux != null) [
        "--isolinux-bin"
        (toString spec.isolinux.bin)
        "--ldlinux-c32"
        (toString spec.isolinux.ldlinux)
        "--isohdpfx"
        (toString spec.isolinux.isohdpfx)
      ]
    )
    ++ optionals (spec.kind == "tarball" || spec.kind == "diskImage") [
      "--label"
      spec.label
    ]
    ++ optionals (spec.kind == "diskImage") (
      [
        "--partition-table"
        spec.partitionTable
      ]
      ++ optionals (spec.diskSize != null) [
        "--size"
        (toString spec.diskSize)
      ]
    )
    ++ optional (spec.kind == "netbootHttp") "--http"
    ++ optionals (spec.kind == "netbootHttp" && spec.baseUrl != null) [
      "--base-url"
      spec.baseUrl
    ]
    ++ [
      "--out"
      (mainOutput spec out)
      "--outputs-json"
      "${out}/nix-support/nixlive-outputs.json"
    ];

  # The build script: checks that the signing key can be read (it is a
  # file of the build machine, which the sandbox must be told about), runs
  # `nixlive`, compresses a disk image when asked, and writes Hydra's
  # product list.
  script =
    spec': out:
    let
      spec = defaults // spec';
      main = mainOutput spec out;
    in
    ''
      ${optionalString (spec.signKeyFile != null) ''
        if ! [ -r ${escapeShellArg spec.signKeyFile} ]; then
          echo "nixlive: the signing key ${spec.signKeyFile} cannot be read in this build." >&2
          echo "nixlive: it is read from the build machine, never from the store: add its directory" >&2
          echo "nixlive: to nix.settings.extra-sandbox-paths and make it readable to the build users" >&2
          echo "nixlive: (docs/nixos.md, \"Secrets\")." >&2
          exit 1
        fi
      ''}mkdir -p ${escapeShellArg "${out}/nix-support"}
      nixlive ${escapeShellArgs (args spec out)}
      ${optionalString (spec.kind == "diskImage" && spec.compress) ''
        zstd -q -T0 --rm ${escapeShellArg main}
      ''}printf '%s\n' ${escapeShellArgs (hydraBuildProducts spec out)} > ${escapeShellArg "${out}/nix-support/hydra-build-products"}
    '';

  # The derivation: `pkgs.runCommand` with `package` (the builder CLI) on
  # its PATH. `passthru` carries the command line, the script and the
  # product list for tests and for debugging a build.
  build =
    pkgs: spec':
    let
      spec = defaults // spec';
      out = builtins.placeholder "out";
      commandArgs = args spec out;
    in
    pkgs.runCommand kinds.${spec.kind}.name {
      nativeBuildInputs = [ spec.package ] ++ optional (spec.kind == "diskImage" && spec.compress) pkgs.zstd;
      # The signing key is named, not copied: a string, so Nix never puts
      # it in the store (docs/nixos.md, "Secrets").
      passthru = {
        inherit (spec) kind;
        nixliveArgs = commandArgs;
        nixliveCommand = "nixlive ${escapeShellArgs commandArgs}";
        nixliveScript = script spec out;
        hydraBuildProducts = concatStringsSep "\n" (hydraBuildProducts spec out) + "\n";
      };
    } (script spec out);
}
