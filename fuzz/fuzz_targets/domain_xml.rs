//! The domain-XML reader (what libvirt says a domain is): any text is a spec or an error.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = corral_node::agent::domain_xml::from_xml(text);
    }
});
