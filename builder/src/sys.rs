//! The only module of the builder with `unsafe`: blocking SIGINT and
//! SIGTERM and waiting for them (`pthread_sigmask`, `sigwait`), which
//! rustix has no safe wrapper for. [`crate::cleanup`] uses them: a thread
//! waits for the signal synchronously, so no code runs in a signal
//! handler and the cleanup may take locks and allocate.
#![allow(unsafe_code)]

use std::io;

/// The signals a build is stopped by.
const STOP: [libc::c_int; 2] = [libc::SIGINT, libc::SIGTERM];

fn stop_set() -> io::Result<libc::sigset_t> {
    // SAFETY: sigset_t is plain data; sigemptyset initialises it before use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, exclusively borrowed sigset_t.
    if unsafe { libc::sigemptyset(&mut set) } != 0 {
        return Err(io::Error::last_os_error());
    }
    for s in STOP {
        // SAFETY: `set` was initialised by sigemptyset; `s` is a valid signal.
        if unsafe { libc::sigaddset(&mut set, s) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(set)
}

/// Blocks SIGINT and SIGTERM in the calling thread; threads started after
/// inherit the mask. Programs the builder runs get an empty mask again
/// (the standard library resets it before `exec`).
pub fn block_stop_signals() -> io::Result<()> {
    let set = stop_set()?;
    // SAFETY: `set` is initialised; a null old-set pointer is allowed.
    let r = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    Ok(())
}

/// Waits until SIGINT or SIGTERM is pending (both must be blocked in
/// every thread) and returns its number.
pub fn wait_stop_signal() -> io::Result<i32> {
    let set = stop_set()?;
    let mut sig: libc::c_int = 0;
    // SAFETY: `set` is initialised and `sig` is a valid out pointer.
    let r = unsafe { libc::sigwait(&set, &mut sig) };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    Ok(sig)
}
