#![no_main]
//! DHCP replies: any bytes parse or are refused; a parsed reply is ours.
use libfuzzer_sys::fuzz_target;
use nixlive_formats::net::dhcp::Reply;

const MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];

fuzz_target!(|data: &[u8]| {
    let xid = data
        .get(4..8)
        .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
    if let Ok(r) = Reply::parse(data, xid, MAC) {
        assert_eq!(r.xid, xid);
        assert_eq!(&data[28..34], &MAC);
    }
});
