//! The commands, one module each: its arguments and what it runs. `iso`,
//! `medium` and `netboot` run the shared pipeline ([`crate::pipeline`]);
//! `tarball` and `disk-image` write the system tarball's tree
//! ([`crate::system_tree`]);
//! `initrd` runs its stage alone; `registration` and `demo-system` are
//! tools around the store; `analyze` reads a booted system's stage-1
//! timeline.

pub mod analyze;
pub mod demo_system;
pub mod disk_image;
pub mod initrd;
pub mod inspect;
pub mod iso;
pub mod medium;
pub mod netboot;
pub mod registration;
pub mod tarball;
