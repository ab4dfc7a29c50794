//! containers-policy.json (then the scope lookup for an image) and the
//! simple-signing payload of a cosign signature. The first byte chooses.
#![no_main]
use std::sync::OnceLock;

use cloister_signature::payload::Payload;
use cloister_signature::reference::DockerRef;
use cloister_signature::PolicyFile;
use libfuzzer_sys::fuzz_target;

fn image() -> &'static DockerRef {
    static IMAGE: OnceLock<DockerRef> = OnceLock::new();
    IMAGE.get_or_init(|| DockerRef::parse("registry.example/team/app:1.0").unwrap())
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    if which & 1 == 0 {
        if let Ok(policy) = PolicyFile::from_json(rest) {
            let _ = policy.requirements_for(image());
        }
    } else {
        let _ = Payload::parse(rest);
    }
});
