//! The kernel's uevent netlink socket: how init learns that a block device
//! appeared, without udev and without sleeping on a fixed interval.

use rustix::event::{PollFd, PollFlags, poll};
use rustix::fd::{AsFd, OwnedFd};
use rustix::net::netlink::{self, SocketAddrNetlink};
use rustix::net::{AddressFamily, RecvFlags, SocketFlags, SocketType, bind, recv, socket_with};
use std::time::Duration;

pub struct Uevents {
    fd: OwnedFd,
}

impl Uevents {
    /// Subscribes to kernel uevents (multicast group 1).
    pub fn open() -> std::io::Result<Uevents> {
        let fd = socket_with(
            AddressFamily::NETLINK,
            SocketType::DGRAM,
            SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
            Some(netlink::KOBJECT_UEVENT),
        )?;
        bind(&fd, &SocketAddrNetlink::new(0, 1))?;
        Ok(Uevents { fd })
    }

    /// Waits up to `timeout` (forever if `None`) for events; returns how many
    /// block-subsystem events arrived (0 on timeout).
    pub fn wait(&self, timeout: Option<Duration>) -> std::io::Result<usize> {
        let ts = timeout.map(|d| rustix::time::Timespec {
            tv_sec: d.as_secs() as _,
            tv_nsec: d.subsec_nanos() as _,
        });
        let mut fds = [PollFd::new(&self.fd, PollFlags::IN)];
        match poll(&mut fds, ts.as_ref()) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => return Ok(0),
            Err(e) => return Err(e.into()),
        }
        let mut n = 0;
        let mut buf = [0u8; 8192];
        loop {
            match recv(self.fd.as_fd(), &mut buf, RecvFlags::DONTWAIT) {
                Ok((len, _)) => {
                    if is_block_event(&buf[..len.min(buf.len())]) {
                        n += 1;
                    }
                }
                Err(rustix::io::Errno::AGAIN) => break,
                Err(rustix::io::Errno::INTR) => continue,
                // ENOBUFS: events were lost; the caller rescans /sys anyway.
                Err(rustix::io::Errno::NOBUFS) => n += 1,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(n)
    }
}

/// A kernel uevent is `ACTION@DEVPATH\0KEY=VALUE\0...`; we want block devices.
pub fn is_block_event(msg: &[u8]) -> bool {
    msg.split(|b| *b == 0).any(|kv| kv == b"SUBSYSTEM=block")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_events() {
        assert!(is_block_event(
            b"add@/devices/x/block/sr0\0ACTION=add\0SUBSYSTEM=block\0DEVNAME=sr0\0"
        ));
        assert!(!is_block_event(
            b"add@/module/loop\0ACTION=add\0SUBSYSTEM=module\0"
        ));
        assert!(!is_block_event(b""));
    }
}
