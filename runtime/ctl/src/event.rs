//! Events as the client sees them.
//!
//! Owns [`Event`] (ordered, decoded headers and an optional nested body) and
//! reading one from the body of a `text/event-plain` frame (header lines with
//! URL-encoded values, a blank line, and — for events such as
//! `BACKGROUND_JOB` — a `Content-Length` header inside and a nested body) or
//! of a `text/event-json` frame (one JSON object, the nested body under
//! `_body`, key order kept).

use std::fmt;

use anyhow::{bail, Context, Result};
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};

use crate::frame::{content_length, header_in, parse_header_block, url_decode, Frame};

/// One event: its headers in the order sent, values decoded, and the nested
/// body when it has one (a `BACKGROUND_JOB`'s result, a `CUSTOM` payload).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Event {
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
}

impl Event {
    /// The first header of that name (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        header_in(&self.headers, name)
    }

    /// `Event-Name`, e.g. `CHANNEL_ANSWER`.
    pub fn name(&self) -> &str {
        self.header("Event-Name").unwrap_or("")
    }

    /// `Event-Subclass` of a `CUSTOM` event, e.g. `dialtone::dialplan_swap`.
    pub fn subclass(&self) -> Option<&str> {
        self.header("Event-Subclass")
    }

    /// Reads the body of a `text/event-plain` frame.
    pub fn from_plain(bytes: &[u8]) -> Result<Event> {
        let (raw, end) = parse_header_block(bytes)?;
        let headers: Vec<(String, String)> =
            raw.into_iter().map(|(k, v)| (k, url_decode(&v))).collect();
        let body = match content_length(&headers)? {
            Some(len) => {
                let rest = &bytes[end..];
                let nested = &rest[..len.min(rest.len())];
                Some(String::from_utf8_lossy(nested).into_owned())
            }
            None => None,
        };
        Ok(Event { headers, body })
    }

    /// Reads the body of a `text/event-json` frame. Non-string values (FreeSWITCH
    /// sends arrays for repeated headers) are kept as their JSON text.
    pub fn from_json(bytes: &[u8]) -> Result<Event> {
        let OrderedObject(entries) =
            serde_json::from_slice(bytes).context("event-json body is not a JSON object")?;
        let mut headers = Vec::with_capacity(entries.len());
        let mut body = None;
        for (k, v) in entries {
            let text = match v {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            if k == "_body" {
                body = Some(text);
            } else {
                headers.push((k, text));
            }
        }
        Ok(Event { headers, body })
    }

    /// Reads an event frame (`text/event-plain` or `text/event-json`).
    pub fn from_frame(frame: &Frame) -> Result<Event> {
        let body = frame.body.as_deref().unwrap_or_default();
        match frame.content_type() {
            "text/event-plain" => Event::from_plain(body),
            "text/event-json" => Event::from_json(body),
            other => bail!("not an event frame: Content-Type `{other}`"),
        }
    }
}

/// A JSON object read with its keys in document order.
struct OrderedObject(Vec<(String, serde_json::Value)>);

impl<'de> Deserialize<'de> for OrderedObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OrderedObject;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<OrderedObject, A::Error> {
                let mut v = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    v.push(entry);
                }
                Ok(OrderedObject(v))
            }
        }
        d.deserialize_map(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::FrameParser;

    #[test]
    fn plain_event_headers_are_decoded_and_ordered() {
        let e = Event::from_plain(
            b"Event-Name: CHANNEL_ANSWER\nUnique-ID: u-1\n\
              Caller-Caller-ID-Name: Alice%20Smith\nVariable_x: a%3Ab%25\n\n",
        )
        .unwrap();
        assert_eq!(e.name(), "CHANNEL_ANSWER");
        assert_eq!(e.header("caller-caller-id-name"), Some("Alice Smith"));
        assert_eq!(e.header("Variable_x"), Some("a:b%"));
        let names: Vec<_> = e.headers.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "Event-Name",
                "Unique-ID",
                "Caller-Caller-ID-Name",
                "Variable_x"
            ]
        );
        assert_eq!(e.body, None);
    }

    /// A BACKGROUND_JOB frame as FreeSWITCH sends it: the outer frame's body is
    /// the event, whose own Content-Length covers the job's result.
    #[test]
    fn nested_background_job_body() {
        let result = "+OK Job done\nsecond line\n";
        let inner = format!(
            "Event-Name: BACKGROUND_JOB\nJob-UUID: 7f4de4bc-17d7-11dd-b7a0-db4edd065621\n\
             Job-Command: originate\nJob-Command-Arg: sofia/default/1005%20%26park\n\
             Content-Length: {}\n\n{result}",
            result.len()
        );
        let wire = format!(
            "Content-Type: text/event-plain\nContent-Length: {}\n\n{inner}\
             Content-Type: api/response\nContent-Length: 3\n\n+OK",
            inner.len()
        );
        let mut p = FrameParser::new();
        // Split inside the nested body to make sure the outer length rules.
        let cut = wire.find("second").unwrap();
        p.push(&wire.as_bytes()[..cut]);
        assert_eq!(p.next_frame().unwrap(), None);
        p.push(&wire.as_bytes()[cut..]);
        let frame = p.next_frame().unwrap().unwrap();
        let e = Event::from_frame(&frame).unwrap();
        assert_eq!(e.name(), "BACKGROUND_JOB");
        assert_eq!(
            e.header("Job-UUID"),
            Some("7f4de4bc-17d7-11dd-b7a0-db4edd065621")
        );
        assert_eq!(
            e.header("Job-Command-Arg"),
            Some("sofia/default/1005 &park")
        );
        assert_eq!(e.body.as_deref(), Some(result));
        let next = p.next_frame().unwrap().unwrap();
        assert_eq!(next.body_text(), "+OK");
    }

    #[test]
    fn json_event_keeps_order_and_body() {
        let e = Event::from_json(
            br#"{"Event-Name":"CUSTOM","Event-Subclass":"dialtone::dialplan_swap",
                "Z-First":"z","A-Second":"a","Count":3,"_body":"payload"}"#,
        )
        .unwrap();
        assert_eq!(e.name(), "CUSTOM");
        assert_eq!(e.subclass(), Some("dialtone::dialplan_swap"));
        let names: Vec<_> = e.headers.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "Event-Name",
                "Event-Subclass",
                "Z-First",
                "A-Second",
                "Count"
            ]
        );
        assert_eq!(e.header("Count"), Some("3"));
        assert_eq!(e.body.as_deref(), Some("payload"));
        assert!(Event::from_json(b"[1,2]").is_err());
    }

    #[test]
    fn non_event_frame_is_refused() {
        let f = Frame {
            headers: vec![("Content-Type".into(), "api/response".into())],
            body: None,
        };
        assert!(Event::from_frame(&f).is_err());
    }
}
