//! The exports a loaded component offers, resolved once at load time.
//!
//! The generated bindings look every export up by name and type-check it on
//! each instance, which costs more than the guest's own work on a short
//! route. [`crate::engine::Engine::load`] type-checks every export once, on
//! a scratch instance; after that the per-call path only fetches the function
//! by its pre-resolved index and calls it through an unchecked typed handle.

use wasmtime::component::{ComponentExportIndex, Func, Instance, InstancePre, TypedFunc};
use wasmtime::Store;

use crate::bindings::dialtone::switch::types;
use crate::sandbox::State;

const ROUTER: &str = "dialtone:switch/router@0.1.0";
const OUTBOUND: &str = "dialtone:switch/outbound@0.1.0";
const HELPERS: &str = "dialtone:switch/helpers@0.1.0";

/// The helpers a dialstring can call as `${name(args)}`, in WIT order.
pub(crate) const HELPER_NAMES: [&str; 5] = [
    "sofia_contact",
    "verto_contact",
    "rtmp_contact",
    "user_contact",
    "group_call",
];

/// Indices of the `router` functions, and of the optional outbound hook.
#[derive(Clone, Copy)]
pub(crate) struct RouterExports {
    route: ComponentExportIndex,
    route_message: ComponentExportIndex,
    /// `outbound.route-outbound`, or `route-outbound` inside `router` for a
    /// component built before the hook had its own interface; `None` when
    /// the dialplan does not decide on outbound channels.
    route_outbound: Option<ComponentExportIndex>,
}

/// Indices of the `helpers` functions, in [`HELPER_NAMES`] order.
#[derive(Clone, Copy)]
pub(crate) struct HelperExports {
    funcs: [ComponentExportIndex; 5],
}

fn index(pre: &InstancePre<State>, iface: &str, name: &str) -> Option<ComponentExportIndex> {
    let component = pre.component();
    let (_, parent) = component.get_export(None, iface)?;
    let (_, idx) = component.get_export(Some(&parent), name)?;
    Some(idx)
}

fn func(
    store: &mut Store<State>,
    instance: &Instance,
    idx: &ComponentExportIndex,
) -> wasmtime::Result<Func> {
    instance
        .get_func(&mut *store, idx)
        .ok_or_else(|| wasmtime::format_err!("export missing from instance"))
}

type Route<'a> = TypedFunc<(&'a types::ChannelInfo,), (Vec<types::Action>,)>;
type RouteOutbound<'a> = TypedFunc<(&'a types::OutboundRequest,), (types::OutboundDecision,)>;
type RouteMessage<'a> = TypedFunc<(&'a types::TextMessage,), (types::MessageDecision,)>;
type Helper<'a> = TypedFunc<(&'a str,), (Result<String, String>,)>;

impl RouterExports {
    /// Resolves the router's functions, if the component exports them, and
    /// the outbound hook if it has one.
    pub(crate) fn new(pre: &InstancePre<State>) -> Option<Self> {
        Some(Self {
            route: index(pre, ROUTER, "route")?,
            route_message: index(pre, ROUTER, "route-message")?,
            route_outbound: index(pre, OUTBOUND, "route-outbound")
                .or_else(|| index(pre, ROUTER, "route-outbound")),
        })
    }

    /// Whether the component decides on outbound channels.
    pub(crate) fn has_outbound(&self) -> bool {
        self.route_outbound.is_some()
    }

    pub(crate) fn route(
        &self,
        store: &mut Store<State>,
        instance: &Instance,
        info: &types::ChannelInfo,
    ) -> wasmtime::Result<Vec<types::Action>> {
        let f = func(store, instance, &self.route)?;
        // SAFETY: `Engine::load` type-checked this export against the same
        // signature before the component could be used.
        let f: Route<'_> = unsafe { TypedFunc::new_unchecked(f) };
        Ok(f.call(&mut *store, (info,))?.0)
    }

    /// Calls the outbound hook; `None` if the component has none.
    pub(crate) fn route_outbound(
        &self,
        store: &mut Store<State>,
        instance: &Instance,
        req: &types::OutboundRequest,
    ) -> Option<wasmtime::Result<types::OutboundDecision>> {
        let idx = self.route_outbound.as_ref()?;
        Some((|| {
            let f = func(store, instance, idx)?;
            // SAFETY: as in `route`.
            let f: RouteOutbound<'_> = unsafe { TypedFunc::new_unchecked(f) };
            Ok(f.call(&mut *store, (req,))?.0)
        })())
    }

    pub(crate) fn route_message(
        &self,
        store: &mut Store<State>,
        instance: &Instance,
        msg: &types::TextMessage,
    ) -> wasmtime::Result<types::MessageDecision> {
        let f = func(store, instance, &self.route_message)?;
        // SAFETY: as in `route`.
        let f: RouteMessage<'_> = unsafe { TypedFunc::new_unchecked(f) };
        Ok(f.call(&mut *store, (msg,))?.0)
    }

    /// Type-checks every function against the WIT, on one instance.
    pub(crate) fn check(
        &self,
        store: &mut Store<State>,
        instance: &Instance,
    ) -> wasmtime::Result<()> {
        func(store, instance, &self.route)?
            .typed::<(&types::ChannelInfo,), (Vec<types::Action>,)>(&*store)?;
        func(store, instance, &self.route_message)?
            .typed::<(&types::TextMessage,), (types::MessageDecision,)>(&*store)?;
        if let Some(idx) = &self.route_outbound {
            func(store, instance, idx)?
                .typed::<(&types::OutboundRequest,), (types::OutboundDecision,)>(&*store)?;
        }
        Ok(())
    }
}

impl HelperExports {
    /// Resolves the helper functions, if the component exports them.
    pub(crate) fn new(pre: &InstancePre<State>) -> Option<Self> {
        let mut funcs = [index(pre, HELPERS, "sofia-contact")?; 5];
        for (slot, name) in funcs.iter_mut().zip(HELPER_NAMES).skip(1) {
            *slot = index(pre, HELPERS, &name.replace('_', "-"))?;
        }
        Some(Self { funcs })
    }

    /// Calls helper `name` (as a dialstring spells it); `None` if there is
    /// no such helper.
    pub(crate) fn call(
        &self,
        store: &mut Store<State>,
        instance: &Instance,
        name: &str,
        args: &str,
    ) -> Option<wasmtime::Result<Result<String, String>>> {
        let i = HELPER_NAMES.iter().position(|n| *n == name)?;
        Some((|| {
            let f = func(store, instance, &self.funcs[i])?;
            // SAFETY: as in `RouterExports::route`.
            let f: Helper<'_> = unsafe { TypedFunc::new_unchecked(f) };
            Ok(f.call(&mut *store, (args,))?.0)
        })())
    }

    /// Type-checks every function against the WIT, on one instance.
    pub(crate) fn check(
        &self,
        store: &mut Store<State>,
        instance: &Instance,
    ) -> wasmtime::Result<()> {
        for idx in &self.funcs {
            func(store, instance, idx)?.typed::<(&str,), (Result<String, String>,)>(&*store)?;
        }
        Ok(())
    }
}
