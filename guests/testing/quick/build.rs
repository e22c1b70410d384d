//! Link with a 64 KiB shadow stack instead of Rust's default 1 MiB: the
//! component's linear memory is then a few pages, and the switch resets
//! (scans and zeroes) only the memory an instance had, on every call. The
//! stack comes first in memory, so an overflow traps; it does not corrupt
//! data.
fn main() {
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("wasm32") {
        println!("cargo:rustc-link-arg=-zstack-size=65536");
    }
}
