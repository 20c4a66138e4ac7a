//! The VM tests, one test binary: the harness runs as many tests at once as
//! the machine has cores, across all these modules, instead of one binary
//! after another (most hold one or two long tests). Each module says what
//! it checks.

mod authenticity;
mod big_closures;
mod boot_x86_64;
mod builder_boot;
mod builder_safety;
mod discovery_policy;
mod erofs_boot;
mod hostile_medium;
mod http_netboot;
mod init_discovery;
mod init_store;
mod keys_and_grow;
mod matrix;
mod nixos_compat;
mod nixos_kernels;
mod nixos_module;
mod pid1;
mod plain_root;
mod postboot_vm;
mod static_binaries;
mod systemd_stage2;
