//! placeholder
mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "dialplan-with-helpers",
    });
}
pub use bindings::*;
