#![no_main]
//! Any text given to the configuration parser yields a config or a located error.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Err(e) = relevo::Config::parse(text, std::path::Path::new("fuzz.toml")) {
            let msg = e.to_string();
            assert!(msg.starts_with("fuzz.toml:"), "{msg}");
        }
    }
});
