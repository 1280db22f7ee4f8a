//! Link the kernel as a static, freestanding image with machine's linker script.
fn main() {
    let dir = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let script = dir.join("../layers/machine/src/arch/kernel.ld").canonicalize().unwrap();
    println!("cargo:rerun-if-changed={}", script.display());
    for arg in [
        "-nostartfiles".to_string(),
        "-nostdlib".to_string(),
        "-static".to_string(),
        "-Wl,--build-id=none".to_string(),
        "-Wl,-z,max-page-size=4096".to_string(),
        "-Wl,--gc-sections".to_string(),
        format!("-Wl,-T,{}", script.display()),
    ] {
        println!("cargo:rustc-link-arg-bins={arg}");
    }
}
