//! The guest report (docs/contracts.md, "Guest report"): written by the
//! demo's stage 2 and parsed here with the same code,
//! `nixlive_formats::report`. This module adds what only the harness needs.

pub use nixlive_formats::report::{
    BEGIN, END, FileInfo, Mount, Report, ReportError, STAGE1_FAILED, STAGE1_REBOOT_PROMPT, parse,
};

/// Text that means the boot has failed: waiting longer is pointless.
pub const FATAL_MARKERS: &[&str] = &[
    nixlive_formats::report::ERROR,
    "Kernel panic - not syncing",
    STAGE1_FAILED,
];
