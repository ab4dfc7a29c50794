//! The layer tar reader alone: every entry and all of its data, then the
//! end-of-archive check.
#![no_main]
use cloister_image::tar::{TarLimits, TarReader};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = TarLimits::default();
    let mut tar = TarReader::new(data, limits);
    let mut buf = [0u8; 4096];
    loop {
        match tar.next_entry() {
            Ok(Some(_entry)) => loop {
                match tar.read_data(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            },
            Ok(None) => {
                let _ = tar.finish();
                return;
            }
            Err(_) => return,
        }
    }
});
