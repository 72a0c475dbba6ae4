//! Compiles the protobuf wire contract with prost (and tonic for the
//! services between providers: one per layer that hosts one).
fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let mut config = prost_build::Config::new();
    // Payloads are large batches of field elements: decode them zero-copy.
    config.bytes(["."]);
    config.compile_protos(&["proto/smc.proto", "proto/sequencer.proto"], &["proto"])?;
    tonic_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_protos(
            &[
                "proto/control.proto",
                "proto/reads.proto",
                "proto/raft.proto",
                "proto/transcripts.proto",
            ],
            &["proto"],
        )?;
    Ok(())
}
