//! Kernel modules: the list the builder recorded (in load order), the ones
//! named by `nixlive.modules=`, and coldplug: every device's `modalias`
//! matched against `modules.alias` (what udev would do), for the devices
//! present now and for those announced later by uevents.
//!
//! A compressed module (`.ko.xz`, `.ko.zst`, `.ko.gz`, from an initrd or
//! extra cpio that was not made by this builder) goes to the kernel as it is
//! when `/sys/module/compression` says the kernel decompresses that format,
//! and is decompressed here otherwise. A module that fails to load is
//! remembered: when the boot then needs what it provides (a filesystem, loop
//! devices), that is a failure which names the module and why it failed.

//!
//! - [`policy`]: which module loads when, and why one is missing (pure);
//! - [`loader`]: loading them (`finit_module`), coldplug, the background
//!   thread, and what the boot requires of the kernel.

mod loader;
mod policy;

pub use loader::Loader;
pub use policy::background;

use crate::discover::Hotplug;
use crate::error::BootError;
use std::path::Path;

/// What the search for the medium asks of the module loader (a trait, so
/// that tests can walk the search's failure paths without a kernel).
pub trait Modules {
    /// A device announced itself, or every device is to be looked at
    /// again; returns whether a module was loaded for it (its driver may
    /// still be bringing up devices).
    fn hotplug(&mut self, h: Hotplug<'_>) -> bool;
    /// Makes sure the kernel can mount `fstype`, as [`Loader::require_fs`].
    fn require_fs(&mut self, fstype: &str, needed_for: &str) -> Result<(), BootError>;
    /// Makes sure the kernel has loop devices, as [`Loader::require_loop`].
    fn require_loop(&mut self, needed_for: &str) -> Result<(), BootError>;
}

impl Modules for Loader {
    fn hotplug(&mut self, h: Hotplug<'_>) -> bool {
        let before = self.loaded;
        match h {
            Hotplug::Modalias(a) => self.modalias(a),
            Hotplug::Rescan => self.coldplug(Path::new("/sys")),
        }
        self.loaded != before
    }

    fn require_fs(&mut self, fstype: &str, needed_for: &str) -> Result<(), BootError> {
        Loader::require_fs(self, fstype, needed_for)
    }

    fn require_loop(&mut self, needed_for: &str) -> Result<(), BootError> {
        Loader::require_loop(self, needed_for)
    }
}
