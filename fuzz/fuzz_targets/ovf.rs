//! The OVF reader: any text is a VM or an error naming where and what.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = corral_raft::ovf::read(text);
    }
});
