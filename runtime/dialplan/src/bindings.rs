//! Generated bindings for the WIT package, private to this crate.
//!
//! One `bindgen!` for the world that has every export; components that export
//! only the router or only the helpers are loaded through the per-interface
//! export indices, so one `Host` implementation serves all three worlds.

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "dialplan-with-helpers",
    imports: { default: trappable },
});
