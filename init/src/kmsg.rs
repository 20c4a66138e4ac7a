//! Logging for PID 1: each record goes to `/dev/kmsg` with its `<N>` printk
//! priority (so the kernel log keeps severities and the console shows it
//! according to `loglevel=`), falling back to the console before `/dev` exists.

use log::{Level, LevelFilter, Log, Metadata, Record};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::Mutex;

pub struct KmsgLogger {
    out: Mutex<Option<File>>,
}

static LOGGER: KmsgLogger = KmsgLogger {
    out: Mutex::new(None),
};

/// Seconds since boot, as the kernel stamps its own messages.
pub fn uptime() -> std::time::Duration {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    std::time::Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

pub fn init(level: LevelFilter) {
    // not fatal: a second init (cannot happen in PID 1) would keep the first logger.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}

/// (Re)opens `/dev/kmsg`, or `/dev/console` when kmsg is missing. Called once
/// devtmpfs is mounted.
pub fn attach() {
    // The default devkmsg rate limit (10 lines per 5 s) would drop our phase
    // log; not fatal if it cannot be lifted.
    if std::fs::write("/proc/sys/kernel/printk_devkmsg", "on\n").is_err() {
        eprintln!("nixlive: cannot turn off the /dev/kmsg rate limit, ignoring");
    }
    let f = OpenOptions::new()
        .write(true)
        .open("/dev/kmsg")
        .or_else(|_| OpenOptions::new().write(true).open("/dev/console"));
    if let Ok(mut slot) = LOGGER.out.lock() {
        *slot = f.ok();
    }
}

fn priority(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

impl Log for KmsgLogger {
    fn enabled(&self, m: &Metadata) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, r: &Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let t = uptime();
        // One write per line: /dev/kmsg takes each write as one record.
        let text = format!("{}", r.args());
        let mut guard = match self.out.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        for line in text.lines() {
            let msg = format!(
                "<{}>nixlive[{}.{:03}]: {}\n",
                priority(r.level()),
                t.as_secs(),
                t.subsec_millis(),
                line
            );
            let ok = match guard.as_mut() {
                Some(f) => f.write_all(msg.as_bytes()).is_ok(),
                None => false,
            };
            if !ok {
                // not fatal: before /dev exists, stderr (the kernel's console) is all there is.
                let _ = std::io::stderr().write_all(&msg.as_bytes()[3..]);
            }
        }
    }

    fn flush(&self) {}
}
