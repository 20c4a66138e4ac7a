#!/usr/bin/env bash
# Regenerates the committed seed corpora under fuzz/seeds/<target>/ from real
# tools: superblocks of ISO9660 (xorriso), FAT12/16/32 (mkfs.vfat),
# ext2/3/4 (mke2fs -d), exFAT (mkfs.exfat), NTFS (mkntfs) and GPT disks
# (sgdisk), cut to their first 64 KiB (every probe reads less), and the
# exFAT and NTFS label records; real compressed modules; real rtnetlink
# answers of the running kernel; builder-made manifests and registrations (from a
# VM test's medium, when one was built); real kernel module lists; real
# uevents, cmdlines, passwd and shadow lines. Run from the repository root;
# the result is committed (fuzz/corpus/ is libFuzzer's scratch, ignored).
set -euo pipefail
S=fuzz/seeds
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
rm -rf "$S"
mkdir -p "$S"/{superblock,cmdline,manifest,registration,kmod,softdep,uevent,passwd,authorized_keys,postboot_conf,initrd_conf,report,encodings,elf,kimage,cpio,partition_table,nixkey,verity,timeline,fs_label,unpack,netlink,btree}

head64() { head -c 65536 "$1" > "$2"; }

# Superblocks.
mkdir -p "$T/tree/nixlive" && echo hello > "$T/tree/nixlive/file"
xorriso -as mkisofs -quiet -V NIXLIVE_SEED -o "$T/a.iso" "$T/tree" 2>/dev/null
head64 "$T/a.iso" "$S/superblock/iso9660"
xorriso -as mkisofs -quiet -J -R -V nixlive-rr -o "$T/b.iso" "$T/tree" 2>/dev/null
head64 "$T/b.iso" "$S/superblock/iso9660-joliet-rr"
for f in 12:2M 16:20M 32:300M; do
  bits=${f%%:*} size=${f##*:}
  truncate -s "$size" "$T/fat$bits"
  mkfs.vfat -F "$bits" -n "FAT$bits" "$T/fat$bits" >/dev/null
  head64 "$T/fat$bits" "$S/superblock/fat$bits"
done
for t in ext2 ext3 ext4; do
  truncate -s 8M "$T/$t"
  mke2fs -q -F -t "$t" -L "nixlive-$t" -d "$T/tree" "$T/$t"
  head64 "$T/$t" "$S/superblock/$t"
done
truncate -s 4M "$T/gpt"
sgdisk -n 1:2048:4095 -t 1:ef00 -c 1:ESP -n 2:4096:0 -c 2:nixlive "$T/gpt" >/dev/null
head64 "$T/gpt" "$S/superblock/gpt"
# Partition tables to grow: disk size in sectors (u64 LE), the partition
# number (u32 LE), then the disk's head (a 4 MiB disk grown to 8 MiB).
seed_table() { { printf "$2"; head -c 65524 "$1"; } > "$3"; }
seed_table "$T/gpt" '\x00\x40\x00\x00\x00\x00\x00\x00\x02\x00\x00\x00' "$S/partition_table/gpt-last"
seed_table "$T/gpt" '\x00\x40\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00' "$S/partition_table/gpt-not-last"
# An MBR with one Linux partition from sector 2048 (as disk-image writes it).
truncate -s 4M "$T/mbr"
printf '\x80\xfe\xff\xff\x83\xfe\xff\xff\x00\x08\x00\x00\x00\x18\x00\x00' |
  dd of="$T/mbr" bs=1 seek=446 conv=notrunc 2>/dev/null
printf '\x55\xaa' | dd of="$T/mbr" bs=1 seek=510 conv=notrunc 2>/dev/null
seed_table "$T/mbr" '\x00\x40\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00' "$S/partition_table/mbr"

# Command lines as the builder's boot menus and the VM tests write them.
printf '%s\n' \
  'BOOT_IMAGE=/boot/bzImage init=/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-nixos-system/init root=LABEL=NIXLIVE console=ttyS0 loglevel=4' \
  'init=/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-nixos-system/init nixlive.label=nixlive-2311 copytoram boot.shell_on_fail nixlive.ssh_key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJUWqzXkJa+KcF4tDD9AflYemqETvsyisrqquMWUW3rI me@x"' \
  > "$S/cmdline/boot-menu"
printf 'quiet nixlive.copytoram=50%% boot.panic_on_fail nixlive.timeout=30 nixlive.test_panic rdinit=/init' > "$S/cmdline/options"

# Builder output, from the VM tests' media when they were built.
n=0
for m in target/tests-vm/*/medium/nixlive.manifest target/tests-vm/*/*/medium/nixlive.manifest target/tests-vm/*/*/nixlive.manifest; do
  [ -f "$m" ] || continue
  n=$((n + 1)); cp "$m" "$S/manifest/builder-$n"
done
sq=$(ls target/tests-vm/*/medium/nix-store.squashfs 2>/dev/null | head -1 || true)
if [ -n "$sq" ]; then
  unsquashfs -q -cat "$sq" nix-path-registration > "$S/registration/builder" 2>/dev/null \
    || rm -f "$S/registration/builder"
fi
cp postboot/tests/fixtures/registration/*.reg "$S/registration/" 2>/dev/null || true

# Kernel module lists of a Debian kernel (install-deps fetches them), cut short.
kdir=$(ls -d .cache/kernels/amd64-xz/lib/modules/* 2>/dev/null | head -1 || true)
if [ -n "$kdir" ]; then
  head -c 16384 "$kdir/modules.dep" > "$S/kmod/modules.dep"
  head -c 16384 "$kdir/modules.alias" > "$S/kmod/modules.alias"
  cp "$kdir/modules.softdep" "$S/softdep/modules.softdep"
  head -c 16384 "$kdir/modules.builtin" > "$S/softdep/modules.builtin"
fi

# Uevents as the kernel sends them on the netlink socket.
printf 'add@/devices/pci0000:00/0000:00:05.0\0ACTION=add\0DEVPATH=/devices/pci0000:00/0000:00:05.0\0SUBSYSTEM=pci\0MODALIAS=pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00\0SEQNUM=812\0' > "$S/uevent/pci"
printf 'add@/devices/pci0000:00/0000:00:01.1/ata2/host1/target1:0:0/1:0:0:0/block/sr0\0ACTION=add\0SUBSYSTEM=block\0MAJOR=11\0MINOR=0\0DEVNAME=sr0\0DEVTYPE=disk\0DISKSEQ=2\0SEQNUM=900\0' > "$S/uevent/block"

printf 'root:x:0:0:System administrator:/root:/run/current-system/sw/bin/bash\nnixos:x:1000:100:NixOS:/home/nixos:/run/current-system/sw/bin/bash\nnobody:x:65534:65534:Unprivileged:/var/empty:/run/current-system/sw/bin/nologin\n' > "$S/passwd/nixos-passwd"
printf 'root::1::::::\nnixos:$6$salt$hash:19000:0:99999:7:::\nnobody:!:1::::::\n' > "$S/passwd/nixos-shadow"

printf 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJUWqzXkJa+KcF4tDD9AflYemqETvsyisrqquMWUW3rI me@example\nfrom="10.0.0.1",no-pty ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJUWqzXkJa+KcF4tDD9AflYemqETvsyisrqquMWUW3rI\n# comment\n' > "$S/authorized_keys/ed25519"
if command -v ssh-keygen >/dev/null; then
  for t in rsa ecdsa ed25519; do ssh-keygen -q -t $t -N '' -C seed -f "$T/k$t"; cat "$T/k$t.pub"; done > "$S/authorized_keys/ssh-keygen"
fi
printf 'nixlive-postboot 1\nssh-user nixos\nssh-user alice # comment\nroot-password-hash $6$salt$hash\n' > "$S/postboot_conf/full"

# The other targets' seeds: their own unit tests' inputs are the shape; the
# guest report and timeline come from a VM run's log when there is one.
printf '%s\n' 'nixlive-initrd 1' 'kernel 6.1.0-28-amd64' 'module kernel/drivers/cdrom/cdrom.ko' 'module kernel/drivers/scsi/sr_mod.ko' > "$S/initrd_conf/basic"
# The builder's, from a VM test's initrd when one was built.
initrd=$(ls target/tests-vm/*/medium/boot/initrd 2>/dev/null | head -1 || true)
if [ -n "$initrd" ]; then
  (cd "$T" && zstd -dc < "$OLDPWD/$initrd" | cpio -id --quiet etc/nixlive/initrd.conf) \
    && cp "$T/etc/nixlive/initrd.conf" "$S/initrd_conf/builder" || true
fi
# The stage-1 timeline of a real boot (the builder's analyze fixture, from
# `make demo`'s out/demo/stage1.json) and one with escapes.
cp builder/tests/fixtures/stage1.json "$S/timeline/demo-boot"
printf '{"version":1,"phases":[{"name":"a\\u00e9\\n","start_ms":0,"duration_ms":0}]}\n' > "$S/timeline/escapes"
printf "22 1 0:20 / / rw,relatime shared:1 - overlay overlay rw,lowerdir=/nix/.ro-store,upperdir=/nix/.rw-store/store\\n23 22 0:5 / /dev rw,nosuid - devtmpfs devtmpfs rw,size=4096k\\n24 22 7:0 / /iso ro - iso9660 /dev/sr0 ro\\n" > "$S/report/mountinfo"
printf 'deadbeef00ff\n' > "$S/encodings/hex"
printf 'AAAAC3NzaC1lZDI1NTE5AAAAIJUWqzXkJa+KcF4tDD9AflYemqETvsyisrqquMWUW3rI' > "$S/encodings/base64"

# Nix binary-cache keys (issue 11), as nix-store makes them (in a throwaway
# state directory), a trusted-keys file and a signature line's value.
NIX_STATE_DIR=$T/nix NIX_CONF_DIR=$T HOME=$T nix-store --generate-binary-cache-key seed-key-1 "$T/sk" "$T/pk"
cp "$T/sk" "$S/nixkey/secret"; cp "$T/pk" "$S/nixkey/public"
{ echo '# trusted'; cat "$T/pk"; echo; echo 'other-2:OllOwDL9GvyBtH5UFm9cpMY9i2s7jW6IKgaYOIxNpRc='; } > "$S/nixkey/keys-file"
# A signed v2 manifest's image, verity and sig lines, from a built medium.
for m in target/tests-vm/authenticity/live/medium/nixlive.manifest; do
  [ -f "$m" ] || continue
  grep -E '^(image|verity) ' "$m" > "$S/verity/builder"
  cp "$m" "$S/manifest/builder-signed"
  grep '^sig ' "$m" | cut -d' ' -f2 > "$S/nixkey/signature"
done
# A version-3 manifest: a signed medium that lists its SSH keys (`file`
# lines), from the keys VM test's medium when it was built, and one made
# here from the shape the builder writes.
for m in target/tests-vm/keys-and-grow/signed/medium/nixlive.manifest; do
  [ -f "$m" ] && cp "$m" "$S/manifest/builder-files"
done
h=$(printf 'ab%.0s' $(seq 32))
printf 'nixlive-manifest 3\ninit /nix/store/%s-nixos-system/init\nregistration /nix/store/nix-path-registration\nimage nix-store.squashfs squashfs 16384 sha256:%s\nverity sha256 data-block=4096 hash-block=4096 data-blocks=2 hash-offset=8192 salt=0a0b root=%s\nfile nixlive/authorized_keys 81 sha256:%s\nsig seed-key-1:%s\n' \
  "$(printf 'a%.0s' $(seq 32))" "$h" "$h" "$h" "$(printf 'A%.0s' $(seq 86))==" > "$S/manifest/files-v3"
printf 'image a.squashfs squashfs 16384 sha256:%s\nverity sha256 data-block=4096 hash-block=4096 data-blocks=2 hash-offset=8192 salt=0a0b root=%s\n' \
  "$(printf 'ab%.0s' $(seq 32))" "$(printf 'cd%.0s' $(seq 32))" > "$S/verity/small"
du -sh "$S"

# Programs and modules (ELF headers with and without PT_INTERP), kernel
# image headers (bzImage x86_64 and i386, arm64 Image), and initramfs cpio
# archives, cut to fuzz's 8 KiB.
head8() { head -c 8192 "$1" > "$2"; }
head8 /bin/ls "$S/elf/dynamic-ls"
for t in x86_64 aarch64 i686; do
  f=target/$t-unknown-linux-musl/release/nixlive-init
  [ -f "$f" ] && head8 "$f" "$S/elf/nixlive-init-$t"
done
for k in amd64 i386 arm64; do
  [ -f ".cache/kernels/$k/vmlinuz" ] && head8 ".cache/kernels/$k/vmlinuz" "$S/kimage/$k"
done
mkdir -p "$T/cpio/etc" && echo conf > "$T/cpio/etc/x" && printf '\177ELF' > "$T/cpio/init"
(cd "$T/cpio" && find . | LC_ALL=C sort | cpio -o -H newc --quiet) > "$S/cpio/newc"

# exFAT and NTFS labels (fs_label): the boot sector, then the bytes init
# reads where label_at points: exFAT's root directory cluster, NTFS's
# $Volume record (the MFT's fourth). The heads also seed the superblock target.
le() { od -An --endian=little -t"$1" -j"$2" -N"$3" "$4" | tr -d ' '; }
label_seed() {
  { head -c 512 "$1"; dd if="$1" iflag=skip_bytes,count_bytes skip="$2" count="$3" status=none; } > "$4"
}
for nl in 'label:NIXOS LIVE' 'utf16:ÉTÉ 2026' 'nolabel:'; do
  n=${nl%%:*} l=${nl#*:}
  f=$T/exfat; rm -f "$f"; truncate -s 8M "$f"
  mkfs.exfat ${l:+-L "$l"} "$f" >/dev/null
  ss=$(le u1 108 1 "$f") cs=$(le u1 109 1 "$f") heap=$(le u4 88 4 "$f") root=$(le u4 96 4 "$f")
  label_seed "$f" $(((heap << ss) + ((root - 2) << (ss + cs)))) $((1 << (ss + cs))) "$S/fs_label/exfat-$n"
  [ -n "$l" ] || head64 "$f" "$S/superblock/exfat"
done
for nl in 'label:NIXOS NTFS' 'utf16:Données de démarrage' 'nolabel:'; do
  n=${nl%%:*} l=${nl#*:}
  f=$T/ntfs; rm -f "$f"; truncate -s 8M "$f"
  mkntfs -q -F ${l:+-L "$l"} "$f" 2>/dev/null
  cluster=$(($(le u2 11 2 "$f") * $(le u1 13 1 "$f"))) mft=$(le u8 48 8 "$f") rec=$(le d1 64 1 "$f")
  if [ "$rec" -lt 0 ]; then rec=$((1 << -rec)); else rec=$((rec * cluster)); fi
  label_seed "$f" $((mft * cluster + 3 * rec)) "$rec" "$S/fs_label/ntfs-$n"
  [ -n "$l" ] || head64 "$f" "$S/superblock/ntfs"
done

# Compressed modules (unpack): a first byte for the codec and a 1 MiB limit
# (0x50 xz, 0x51 zstd, 0x52 gzip, 0x53 xz followed by more, as in an
# initrd), then a Debian kernel's module as its packages ship it (xz, zstd)
# and as `gzip -9` makes it.
m=kernel/net/vmw_vsock/vsock_diag.ko
xzm=$(ls .cache/kernels/amd64-xz/lib/modules/*/$m.xz 2>/dev/null | head -1 || true)
zstm=$(ls .cache/kernels/amd64-zst/lib/modules/*/$m.zst 2>/dev/null | head -1 || true)
if [ -n "$xzm" ]; then
  { printf '\x50'; cat "$xzm"; } > "$S/unpack/xz-module"
  { printf '\x53'; cat "$xzm"; printf '\0\0\0\0070701 next archive'; } > "$S/unpack/xz-prefix"
  { printf '\x52'; xz -dc "$xzm" | gzip -9 -n; } > "$S/unpack/gzip-module"
fi
[ -n "$zstm" ] && { printf '\x51'; cat "$zstm"; } > "$S/unpack/zstd-module"

# rtnetlink answers (netlink), as the running kernel sends them: a link
# and the ack of its request; the error answering a request for an
# interface that does not exist (changes nothing); an address dump.
python3 - "$S/netlink" <<'PY'
import socket, struct, sys
out = sys.argv[1]
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)  # NETLINK_ROUTE
s.bind((0, 0))
s.settimeout(2)
def req(kind, flags, seq, body):
    return struct.pack("=IHHII", 16 + len(body), kind, flags, seq, 0) + body
def answer(msg):
    s.send(msg)
    return s.recv(65536)
# RTM_GETLINK of lo (index 1), NLM_F_REQUEST | NLM_F_ACK: the link, then the ack.
link = answer(req(18, 1 | 4, 7, struct.pack("=BBHiII", 0, 0, 0, 1, 0, 0)))
try:
    link += s.recv(65536)
except socket.timeout:
    pass
open(out + "/getlink-ack", "wb").write(link)
# RTM_NEWLINK (up) of an index no interface has: -ENODEV.
open(out + "/newlink-enodev", "wb").write(
    answer(req(16, 1 | 4, 9, struct.pack("=BBHiII", 0, 0, 0, 0x7FFFFFF0, 1, 1))))
# RTM_GETADDR dump (NLM_F_DUMP): address announcements.
open(out + "/getaddr-dump", "wb").write(answer(req(22, 1 | 0x300, 11, struct.pack("=BBBBI", 2, 0, 0, 0, 0))))
PY

# B-tree round trips (btree): a path count (u16 LE), a registration time
# (i64 LE), the hash encoding, then the bytes paths are made of. A few
# paths; 300 with long names (index trees of three levels); 500 (the cap).
rnd() { python3 -c "import random, sys; random.seed(25); sys.stdout.buffer.write(random.randbytes($1))"; }
printf '\x03\x00\x00\xf1\x53\x65\x00\x00\x00\x00\x00nixlive' > "$S/btree/three"
{ printf '\x2c\x01\xff\xff\xff\xff\xff\xff\xff\x7f\x01'; rnd 512; } > "$S/btree/long-names"
{ printf '\xf4\x01\x00\x00\x00\x00\x00\x00\x00\x80\x00'; rnd 2048; } > "$S/btree/cap"
