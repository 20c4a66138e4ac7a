# A stand-in for nixpkgs in the tests of nix/: only the attributes that
# nix/package.nix, nix/module.nix, flake.nix and the stub NixOS modules use,
# with nixpkgs' names (a misspelt name is a missing attribute here, as it
# would be there). Derivations are made with `builtins.derivation`, and the
# ones a test builds run the build machine's own programs (`/bin/sh`,
# `/usr/bin/...`, `host.*`), which the test lets into Nix's sandbox.
#
# `host` (all strings, paths of the build machine; only the test that
# builds gives real ones):
#   nixlive     the builder CLI (target/release/nixlive)
#   guestDir    the static nixlive-init, nixlive-postboot and
#               nixlive-demo-init (target/x86_64-unknown-linux-musl/release)
#   kernelDir   a Debian kernel unpacked as .cache/kernels/<arch> has it
#               (vmlinuz, config, lib/modules/<kernelVersion>)
#   kernelVersion
{
  lib,
  system ? "x86_64-linux",
  host ? { },
}:
let
  h = {
    nixlive = "/host/nixlive";
    guestDir = "/host/guest";
    kernelDir = "/host/kernel";
    kernelVersion = "6.1.0-test";
  }
  // host;

  # A derivation that runs `script` with the build machine's shell and
  # tools.
  hostDrv =
    name: script: attrs:
    derivation (
      {
        inherit name system;
        builder = "/bin/sh";
        args = [
          "-e"
          "-u"
          "-c"
          script
        ];
        PATH = "/usr/bin:/bin:/usr/sbin";
      }
      // attrs
    );

  # A package no test builds.
  fake =
    name:
    derivation {
      inherit name system;
      builder = "/bin/false";
    };

  # The arguments rustPlatform.buildRustPackage (and mkDerivation under it)
  # takes that package.nix may use; anything else is a typo.
  rustPackageArgs = [
    "pname"
    "version"
    "src"
    "cargoLock"
    "cargoHash"
    "cargoBuildFlags"
    "cargoTestFlags"
    "buildAndTestSubdir"
    "nativeBuildInputs"
    "buildInputs"
    "postPatch"
    "postInstall"
    "doCheck"
    "env"
    "meta"
    "passthru"
    "strictDeps"
    "auditable"
  ];

  pkgsFor =
    platform:
    lib.fix (
      self:
      let
        rustPlatform = {
          buildRustPackage =
            args:
            let
              unknown = lib.subtractLists rustPackageArgs (builtins.attrNames args);
              lockFile = args.cargoLock.lockFile or null;
            in
            if unknown != [ ] then
              throw "stub buildRustPackage: unknown arguments ${lib.concatStringsSep ", " unknown}"
            else if !(args ? pname && args ? version && args ? src) then
              throw "stub buildRustPackage: pname, version and src are required"
            else if lockFile == null || !builtins.pathExists lockFile then
              throw "stub buildRustPackage: cargoLock.lockFile ${toString lockFile} does not exist"
            else
              # Forcing src checks that every file set path exists.
              builtins.seq (toString args.src) (
                fake "${args.pname}-${args.version}"
                // (args.passthru or { })
                // {
                  inherit (args) pname version;
                  stubArgs = removeAttrs args [ "src" ];
                  stubTarget = platform.config;
                  stubStatic = platform.isStatic;
                }
              );
        };
      in
      {
        inherit lib;
        stdenv.hostPlatform = platform;
        stdenv.buildPlatform = platform;
        buildPackages = self;
        pkgsStatic = pkgsFor (
          lib.systems.elaborate {
            config = lib.replaceStrings [ "-gnu" ] [ "-musl" ] platform.config;
            isStatic = true;
          }
        );
        pkgsCross = lib.mapAttrs (_: s: pkgsFor (lib.systems.elaborate s)) lib.systems.examples;

        inherit rustPlatform;

        # nixpkgs' callPackage: the function's arguments from this set,
        # overridden; an argument this set lacks and that has no default is
        # an error naming it.
        callPackage =
          fn: overrides:
          let
            f = if builtins.isFunction fn then fn else import fn;
            wanted = builtins.functionArgs f;
            missing = builtins.filter (n: !wanted.${n} && !(self ? ${n}) && !(overrides ? ${n})) (
              builtins.attrNames wanted
            );
          in
          if missing != [ ] then
            throw "stub callPackage: ${toString fn} asks for ${lib.concatStringsSep ", " missing}, which nixpkgs does not have"
          else
            f (builtins.intersectAttrs wanted self // overrides);

        # nixpkgs' runCommand over stdenv: `set -eu`, the inputs' bin on
        # PATH, stdenv's SOURCE_DATE_EPOCH; passthru stays out of the
        # derivation.
        runCommand =
          name: env: script:
          let
            inputs = env.nativeBuildInputs or [ ];
            drv = derivation (
              removeAttrs env [
                "nativeBuildInputs"
                "passthru"
              ]
              // {
                inherit name system;
                builder = "/bin/sh";
                args = [
                  "-e"
                  "-u"
                  "-c"
                  script
                ];
                PATH = lib.concatStringsSep ":" (map (p: "${p}/bin") inputs ++ [ "/usr/bin:/bin:/usr/sbin" ]);
                SOURCE_DATE_EPOCH = "315532800";
              }
            );
          in
          drv // (env.passthru or { });

        # nixpkgs' closureInfo (build-support/closure-info.nix) from the same
        # `exportReferencesGraph` with structured attributes: `registration`
        # (nix-store --load-db's format, derivers left empty),
        # `store-paths` and `total-nar-size`. Nix writes .attrs.json on one
        # line, keys sorted, the closure's objects flat; POSIX awk reads it
        # (nixpkgs uses jq, which the build machine need not have; Debian
        # always has mawk).
        closureInfo =
          { rootPaths }:
          derivation {
            name = "closure-info";
            inherit system;
            __structuredAttrs = true;
            exportReferencesGraph.closure = rootPaths;
            builder = "/bin/sh";
            args = [
              "-e"
              "-u"
              "-c"
              ''
                export PATH=/usr/bin:/bin:/usr/sbin
                # Debian's `awk` is a link through /etc/alternatives, which
                # the sandbox has not: the awk itself.
                awk=$(command -v mawk || command -v gawk || command -v awk)
                attrs="$NIX_BUILD_TOP/.attrs.json"
                out=$("$awk" 'BEGIN { RS = "\001" }
                  match($0, /"outputs":\{"out":"[^"]*"\}/) { print substr($0, RSTART + 18, RLENGTH - 20) }' "$attrs")
                [ -n "$out" ]
                mkdir "$out"
                "$awk" -v out="$out" 'BEGIN { RS = "\001" }
                {
                  i = index($0, "\"closure\":[{")
                  if (i == 0) { print "no closure in .attrs.json" > "/dev/stderr"; exit 1 }
                  rest = substr($0, i + 11)
                  arr = substr(rest, 1, index(rest, "}]"))
                  total = 0
                  while (match(arr, /\{[^}]*\}/)) {
                    o = substr(arr, RSTART, RLENGTH)
                    arr = substr(arr, RSTART + RLENGTH)
                    match(o, /"path":"[^"]*"/); path = substr(o, RSTART + 8, RLENGTH - 9)
                    match(o, /"narHash":"[^"]*"/); hash = substr(o, RSTART + 11, RLENGTH - 12)
                    match(o, /"narSize":[0-9]+/); size = substr(o, RSTART + 10, RLENGTH - 10)
                    match(o, /"references":\[[^\]]*\]/); refs = substr(o, RSTART + 14, RLENGTH - 15)
                    gsub(/"/, "", refs)
                    n = refs == "" ? 0 : split(refs, r, ",")
                    print path "\n" hash "\n" size "\n\n" n > (out "/registration")
                    for (k = 1; k <= n; k++) print r[k] > (out "/registration")
                    print path > (out "/store-paths")
                    total += size
                  }
                  printf "%d\n", total > (out "/total-nar-size")
                }' "$attrs"
              ''
            ];
          };

        # The kernel: NixOS's layout (the image, lib/modules/<version>) made
        # from the Debian kernel the VM tests boot.
        linuxPackages.kernel =
          let
            target = if platform.isx86 then "bzImage" else "Image";
            drv = hostDrv "linux-${h.kernelVersion}" ''
              mkdir -p $out/lib/modules
              cp ${h.kernelDir}/vmlinuz $out/${target}
              cp ${h.kernelDir}/config $out/config
              cp -R ${h.kernelDir}/lib/modules/${h.kernelVersion} $out/lib/modules/
            '' { };
          in
          drv
          // {
            inherit target;
            version = h.kernelVersion;
            modDirVersion = h.kernelVersion;
            configfile = "${drv}/config";
          };

        # One module tree, as it is (NixOS's joins several and runs depmod).
        aggregateModules =
          paths:
          if builtins.length paths == 1 then
            builtins.head paths
          else
            throw "stub aggregateModules: one module tree only";

        # An empty tree of `pathsToLink` with the given paths' files linked
        # in (the firmware of a kernel that needs none, here).
        buildEnv =
          {
            name,
            paths,
            pathsToLink ? [ "/" ],
            ...
          }:
          hostDrv name ''
            for d in ${lib.escapeShellArgs pathsToLink}; do
              mkdir -p "$out$d"
              for p in ${lib.escapeShellArgs paths}; do
                if [ -d "$p$d" ]; then cp -Rs "$p$d/." "$out$d/"; fi
              done
            done
          '' { };

        # The Debian packages of the build machine, in NixOS's layout.
        syslinux = hostDrv "syslinux" ''
          mkdir -p $out/share/syslinux
          cp /usr/lib/ISOLINUX/isolinux.bin /usr/lib/ISOLINUX/isohdpfx.bin /usr/lib/syslinux/modules/bios/ldlinux.c32 $out/share/syslinux/
        '' { };
        grub2_efi =
          let
            target = if platform.isAarch64 then "arm64-efi" else "x86_64-efi";
          in
          hostDrv "grub" ''
            mkdir -p $out/lib/grub
            cp -R /usr/lib/grub/${target} $out/lib/grub/
          '' { }
          // {
            grubTarget = target;
          };

        # The builder and the guest programs: the ones `make build` made.
        nixliveHost =
          hostDrv "nixlive" ''
            mkdir -p $out/bin
            cp ${h.nixlive} $out/bin/nixlive
          '' { }
          // {
            guest = self.nixliveGuestHost;
          };
        nixliveGuestHost = hostDrv "nixlive-guest" ''
          mkdir -p $out/bin
          cp ${h.guestDir}/nixlive-init ${h.guestDir}/nixlive-postboot $out/bin/
        '' { };

        # A system for the VM: nixlive's demo stage-2 init as `init` (it
        # reports what stage 1 left and runs `bin/nixlive-postboot`, here a
        # link into the guest package, which so joins the closure).
        demoSystem = hostDrv "nixos-system-nixlive-test" ''
          mkdir -p $out/bin
          cp ${h.guestDir}/nixlive-demo-init $out/init
          ln -s ${self.nixliveGuestHost}/bin/nixlive-postboot $out/bin/nixlive-postboot
        '' { };

        nix = fake "nix-2.28.0" // {
          out = fake "nix-2.28.0";
        };
        zstd = fake "zstd";
        makeWrapper = fake "make-wrapper";
        xorriso = fake "xorriso";
        squashfsTools = fake "squashfs";
        erofs-utils = fake "erofs-utils";
        mtools = fake "mtools";
        dosfstools = fake "dosfstools";
        e2fsprogs = fake "e2fsprogs";
        gptfdisk = fake "gptfdisk";
        fakeroot = fake "fakeroot";
        xz = fake "xz";
        gnutar = fake "gnutar";
        coreutils = fake "coreutils";
      }
    );
in
pkgsFor (lib.systems.elaborate system)
