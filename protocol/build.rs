//! Generates the Rust code for the agent API from `proto/*.proto` with
//! ttrpc-codegen (pure Rust; protoc is not needed).
use std::{env, fs, path::PathBuf};

use ttrpc_codegen::{Codegen, Customize, ProtobufCustomize};

fn main() {
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    let protos = ["proto/agent.proto"];
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    Codegen::new()
        .out_dir(&out)
        .inputs(protos)
        .include("proto")
        .rust_protobuf()
        .customize(Customize {
            async_all: true,
            ..Default::default()
        })
        .rust_protobuf_customize(ProtobufCustomize::default().gen_mod_rs(false))
        .run()
        .expect("ttrpc codegen");

    // The generated files start with inner attributes and doc comments,
    // which `include!` rejects; drop those lines.
    for name in ["agent.rs", "agent_ttrpc.rs"] {
        let path = out.join(name);
        let text = fs::read_to_string(&path).expect("read generated file");
        let kept: String = text
            .lines()
            .filter(|l| !l.starts_with("#![") && !l.starts_with("//!"))
            .map(|l| format!("{l}\n"))
            .collect();
        fs::write(&path, kept).expect("write generated file");
    }
}
