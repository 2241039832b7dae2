//! The CLI's size, duration, address and list parsers: the first byte picks one.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else { return };
    if let Ok(text) = std::str::from_utf8(rest) {
        let _ = corral_cli::args::parse_value(which, text);
    }
});
