//! `nixlive-init`: the stage-1 PID 1 of nixlive live media.
//!
//! Purpose: in the initrd, mount the API filesystems, load the recorded
//! kernel modules, find the boot medium by its label, loop-mount the squashfs
//! images its manifest lists, build the tmpfs-backed overlay `/nix/store`,
//! and switch root into stage 2. Every phase is logged to `/dev/kmsg` with
//! its uptime and recorded in `/run/nixlive/stage1.json`. In plain-root
//! mode (a system tarball unpacked onto a disk: `nixlive.root=plain`, or
//! the initrd says so) `root=` names the root filesystem itself, which is
//! mounted as the new root instead ([`plan::plain_root`]).
//!
//! Non-goals: no shell, no udev, no networking beyond fetching the images
//! (`nixlive.url=`: [`net`]), nothing stage 2 can do
//! (registration, profiles and keys belong to `nixlive-postboot`).
//!
//! Deciding and doing are apart:
//! - [`plan`] decides every step from the first mount to the exec of stage 2,
//!   as data, from the command line and what [`medium`] found;
//! - [`exec`] runs steps through an `Executor`: the real one makes the
//!   syscalls ([`sys`] holds the only `unsafe`), the tests' recording one
//!   writes them down;
//! - [`boot`] is the order of the phases; [`failure`] is what happens when
//!   one fails (and when init panics).
//!
//! The rest: [`modules`] (loading, coldplug, what the boot needs),
//! [`discover`] (block devices and their superblocks), [`findiso`],
//! [`copytoram`], [`verify`], [`check`] (`nixlive.check`), [`trust`] (signed manifests), [`console`], [`kmsg`] (logging),
//! [`switch_root`].

mod boot;
mod check;
mod console;
mod copytoram;
mod discover;
mod error;
mod exec;
mod failure;
mod findiso;
mod kmsg;
mod medium;
mod medium_keys;
mod modules;
mod net;
mod plan;
#[cfg(test)]
mod recording;
mod sqfs;
mod switch_root;
mod sys;
mod trust;
mod verify;

use nixlive_formats::Cmdline;

fn main() {
    // panic = "abort" would end PID 1 after the hook: the hook never returns.
    std::panic::set_hook(Box::new(failure::on_panic));
    kmsg::init(log::LevelFilter::Info);
    let mut cmdline = Cmdline::default();
    let err = match boot::run(&mut cmdline, &mut exec::Real::default()) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    failure::fail(&nixlive_formats::error::chain(&err), &cmdline)
}
