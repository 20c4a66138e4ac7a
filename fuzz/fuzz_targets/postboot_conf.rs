#![no_main]
//! /etc/nixlive/postboot.conf: the strict parser never panics.
use libfuzzer_sys::fuzz_target;
use nixlive_postboot::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = Config::parse(text);
});
