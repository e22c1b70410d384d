//! Generated bindings for the WIT package, private to this crate.
//!
//! One `bindgen!` for the world that has every export; components that export
//! only some of them (the router, with or without the outbound hook, or only
//! the helpers) are loaded through the per-interface export indices, so one
//! `Host` implementation serves every world.

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "full-dialplan",
    imports: { default: trappable },
});
