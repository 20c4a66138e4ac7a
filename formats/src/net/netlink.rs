//! The kernel's rtnetlink answers to init's requests (its side of
//! `ip link`, `ip address`, `ip route`): which of the messages a read
//! returns is the acknowledgement of a request, and the errno it carries.
//! Netlink is host-endian. Init sends the requests and reads the socket.

/// The message type of an acknowledgement or error (`NLMSG_ERROR`).
pub const NLMSG_ERROR: u16 = 2;

/// The answer to request `seq` among the messages in `buf`: `Some(Ok)`
/// for an ack, `Some(Err(errno))` for an error, `None` when `buf` holds no
/// answer to `seq` (announcements only) or a message that runs past its
/// end.
pub fn ack(buf: &[u8], seq: u32) -> Option<Result<(), i32>> {
    let mut at = 0;
    while let Some(head) = buf.get(at..).and_then(|b| b.get(..16)) {
        let len = u32::from_ne_bytes([head[0], head[1], head[2], head[3]]);
        let kind = u16::from_ne_bytes([head[4], head[5]]);
        let s = u32::from_ne_bytes([head[8], head[9], head[10], head[11]]);
        // Checked: on a 32-bit target `at + len` could wrap.
        let len = usize::try_from(len).ok().filter(|l| *l >= 16)?;
        let end = at.checked_add(len).filter(|e| *e <= buf.len())?;
        if kind == NLMSG_ERROR && s == seq && len >= 20 {
            let e = &buf[at + 16..at + 20];
            let err = i32::from_ne_bytes([e[0], e[1], e[2], e[3]]);
            // The kernel sends -errno; i32::MIN has no negation.
            return Some(if err == 0 {
                Ok(())
            } else {
                Err(err.saturating_neg())
            });
        }
        // Messages are 4-byte aligned.
        at = end.checked_add(3)? & !3;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A message of type `kind` for `seq`, `len` bytes long in its header,
    /// with `body` after the header.
    fn msg(len: u32, kind: u16, seq: u32, body: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&len.to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&0u16.to_ne_bytes());
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(body);
        m
    }

    fn error(seq: u32, err: i32) -> Vec<u8> {
        let mut body = err.to_ne_bytes().to_vec();
        body.extend_from_slice(&[0; 16]);
        msg(36, NLMSG_ERROR, seq, &body)
    }

    #[test]
    fn the_answer_after_an_announcement() {
        // An RTM_NEWLINK announcement of 30 bytes (padded to 32), then the answer.
        let mut a = msg(30, 16, 0, &[0; 16]);
        a.extend_from_slice(&error(5, -17));
        assert_eq!(ack(&a, 5), Some(Err(17)));
        assert_eq!(ack(&a, 6), None);
        assert_eq!(ack(&error(5, 0), 5), Some(Ok(())));
        assert_eq!(ack(&error(5, 0)[..10], 5), None);
        assert_eq!(ack(&[], 5), None);
    }

    #[test]
    fn hostile_lengths_and_errnos() {
        // A length shorter than a header, and one past the buffer.
        assert_eq!(ack(&msg(8, NLMSG_ERROR, 1, &[0; 4]), 1), None);
        assert_eq!(ack(&msg(1000, NLMSG_ERROR, 1, &[0; 4]), 1), None);
        // A length that takes `at + len` past 32 bits (it wrapped on i686).
        let mut a = msg(20, 16, 0, &[0; 4]);
        a.extend_from_slice(&msg(u32::MAX - 8, 16, 0, &[0; 4]));
        assert_eq!(ack(&a, 1), None);
        // An error too short to carry its errno is skipped.
        let mut short = msg(16, NLMSG_ERROR, 1, &[]);
        short.extend_from_slice(&error(1, -1));
        assert_eq!(ack(&short, 1), Some(Err(1)));
        // i32::MIN: no overflow when negated.
        assert_eq!(ack(&error(3, i32::MIN), 3), Some(Err(i32::MAX)));
    }
}
