//! # The contact helpers
//!
//! `${sofia_contact(...)}`, `${verto_contact(...)}`, `${rtmp_contact(...)}`,
//! `${user_contact(...)}` and `${group_call(...)}` as a component (world
//! `contact-helpers`). Each export parses its argument, asks the host for the
//! tenant's registrations (`registrations(endpoint, profile, user)`) or group
//! members (`group-members(group)`), and formats the result with
//! [`dialtone_sdk::contact`], which escapes everything a device supplied.
//!
//! Domains are passed to the host exactly as given (`1000@example.com`).
//! The host scopes every lookup to the tenant and returns nothing for another
//! domain, so another tenant's user reads as `error/user_not_registered`.
//! An argument that cannot be parsed is an `err` (the leg fails with
//! `invalid-url`).
//!
//! `no_std` with the SDK's component runtime (see `dialtone_sdk::rt`): one
//! core module, no WASI imports.

#![cfg_attr(not(test), no_std)]

extern crate alloc;

use alloc::string::{String, ToString};
use alloc::vec::Vec;

mod bindings {
    wit_bindgen::generate!({
        world: "contact-helpers",
        path: "../../wit",
    });
}

use bindings::dialtone::switch::host;
use bindings::exports::dialtone::switch::helpers::Guest;
use dialtone_sdk::contact::{ContactHelper, ContactRequest, GroupCall, Registration};

/// Convert the host's record into the SDK's.
fn to_sdk(reg: host::Registration) -> Registration {
    Registration {
        endpoint: reg.endpoint,
        profile: reg.profile,
        user: reg.user,
        domain: reg.domain,
        contact: reg.contact,
        expires: reg.expires,
        user_agent: reg.user_agent,
        network_addr: reg.network_addr,
    }
}

/// Parse `args` for `helper`, ask the host, render.
fn contact(helper: ContactHelper, args: &str) -> Result<String, String> {
    let request = ContactRequest::parse(helper, args).map_err(|e| e.to_string())?;
    let query = request.query();
    let regs: Vec<Registration> = host::registrations(query.endpoint, &query.profile, &query.user)
        .into_iter()
        .map(to_sdk)
        .collect();
    Ok(request.render(&regs))
}

/// The component.
struct ContactHelpers;

impl Guest for ContactHelpers {
    fn sofia_contact(args: String) -> Result<String, String> {
        contact(ContactHelper::Sofia, &args)
    }

    fn verto_contact(args: String) -> Result<String, String> {
        contact(ContactHelper::Verto, &args)
    }

    fn rtmp_contact(args: String) -> Result<String, String> {
        contact(ContactHelper::Rtmp, &args)
    }

    fn user_contact(args: String) -> Result<String, String> {
        contact(ContactHelper::User, &args)
    }

    fn group_call(args: String) -> Result<String, String> {
        let call = GroupCall::parse(&args).map_err(|e| e.to_string())?;
        let members = host::group_members(call.group());
        Ok(call.render(members.as_deref()))
    }
}

bindings::export!(ContactHelpers with_types_in bindings);
