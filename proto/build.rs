//! Compiles the protobuf wire contract with prost.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let mut config = prost_build::Config::new();
    // Payloads are large batches of field elements: decode them zero-copy.
    config.bytes(["."]);
    config.compile_protos(&["proto/smc.proto"], &["proto"])?;
    Ok(())
}
