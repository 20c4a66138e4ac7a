//! `make bench`: nixlive measured beside its peers in one run, on the VM
//! harness of `nixlive-tests-vm`. Never part of `make test` (only the
//! parsers and statistics here have unit tests); figures go to
//! `out/bench/` and the dated tables to docs/benchmarks.md.
//!
//! - [`peers`]: the stage 1s and the payload nixlive is compared with
//!   (Debian live-boot, dracut, a busybox script, the kernel alone).
//! - [`bench_stats`]: medians and spreads; [`bench_chart`]: the boots as SVG.
//! - [`image_read`]: store images (squashfs, erofs) read back in a VM.
//! - [`regbench`]: the native registration against `nix-store --load-db`.
//! - [`throughput`]: the builder's NAR hashing, squashfs writers and ISO
//!   build against Nix's and squashfs-tools'.
//!
//! Non-goals: asserting timings (tests never do).

pub mod bench_chart;
pub mod bench_stats;
pub mod image_read;
pub mod peers;
pub mod regbench;
pub mod throughput;
