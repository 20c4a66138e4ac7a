//! The kernel's uevent netlink socket: how init learns that a block device
//! appeared, without udev and without sleeping on a fixed interval.

use nixlive_formats::uevent::{Uevent, parse};
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

    /// Waits up to `timeout` (forever if `None`) for events; returns the
    /// events that arrived (none on timeout).
    pub fn wait(&self, timeout: Option<Duration>) -> std::io::Result<Vec<Uevent>> {
        let ts = timeout.map(|d| rustix::time::Timespec {
            tv_sec: d.as_secs() as _,
            tv_nsec: d.subsec_nanos() as _,
        });
        let mut fds = [PollFd::new(&self.fd, PollFlags::IN)];
        match poll(&mut fds, ts.as_ref()) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        }
        let mut out = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match recv(self.fd.as_fd(), &mut buf, RecvFlags::DONTWAIT) {
                Ok((len, _)) => out.push(parse(&buf[..len.min(buf.len())])),
                Err(rustix::io::Errno::AGAIN) => break,
                Err(rustix::io::Errno::INTR) => continue,
                // ENOBUFS: events were lost; the caller looks at every
                // device again (what came with them is found that way too).
                Err(rustix::io::Errno::NOBUFS) => {
                    return Err(std::io::Error::from_raw_os_error(libc::ENOBUFS));
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(out)
    }
}
