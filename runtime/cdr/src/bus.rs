//! Feeding the journal from the event bus.

use std::sync::Arc;

use dialtone_core::events::{Event, EventBus, EventFilter, EventName, Tap};

use crate::journal::Journal;
use crate::record::{Cdr, Open};

impl Journal {
    /// Queues the record of a CHANNEL_CREATE (an open channel) or a
    /// CHANNEL_HANGUP_COMPLETE (a CDR); returns whether `ev` was one of
    /// those with a `Unique-ID`. Never blocks.
    pub fn record_event(&self, ev: &Event) -> bool {
        match ev.name {
            EventName::ChannelCreate => Open::from_create(ev).map(|o| self.opened(o)).is_some(),
            EventName::ChannelHangupComplete => Cdr::from_hangup_complete(ev)
                .map(|c| self.closed(c))
                .is_some(),
            EventName::ChannelBridge => {
                match (ev.get("Unique-ID"), ev.get("Other-Leg-Unique-ID")) {
                    (Some(a), Some(b)) if !a.is_empty() && !b.is_empty() => {
                        self.bridged(a, b);
                        self.bridged(b, a);
                        true
                    }
                    _ => false,
                }
            }
            _ => false,
        }
    }
}

/// Feeds the journal from the bus: a [`Tap`] on CHANNEL_CREATE,
/// CHANNEL_BRIDGE and CHANNEL_HANGUP_COMPLETE that calls
/// [`Journal::record_event`] in the publisher, in sequence order (it only
/// queues for the journal's thread, so it never blocks a publisher). Every
/// such event published after the call is recorded; none can be lost to a
/// full queue. The tap holds an `Arc<Journal>` until it is removed or the
/// bus is gone; at shutdown call [`Journal::flush`] to have every event's
/// record committed.
pub fn tap_bus(bus: &EventBus, journal: Arc<Journal>) -> Tap {
    bus.tap(
        EventFilter::names([
            EventName::ChannelCreate,
            EventName::ChannelBridge,
            EventName::ChannelHangupComplete,
        ]),
        move |ev| {
            journal.record_event(ev);
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channel_event(name: EventName, uuid: &str) -> Event {
        Event::new(name)
            .header("Unique-ID", uuid.to_owned())
            .header("Channel-Name", format!("sofia/internal/{uuid}@d.test"))
            .header("Call-Direction", "inbound")
            .header("Caller-Caller-ID-Number", "1000")
            .header("Caller-Destination-Number", "2000")
            .header("Caller-Context", "default")
            .header("Caller-Source", "sofia")
            .header("Tenant", "d.test")
    }

    #[test]
    fn bus_events_become_committed_cdrs() {
        let dir = tempfile::tempdir().unwrap();
        let (journal, _) = Journal::open(&dir.path().join("cdr.redb")).unwrap();
        let journal = Arc::new(journal);
        let bus = EventBus::new();
        let tap = tap_bus(&bus, Arc::clone(&journal));

        let create_a = channel_event(EventName::ChannelCreate, "a");
        let a_created = create_a.timestamp_us;
        bus.publish(create_a);
        bus.publish(channel_event(EventName::ChannelCreate, "b"));
        bus.publish(channel_event(EventName::ChannelAnswer, "a"));
        bus.publish(
            channel_event(EventName::ChannelHangupComplete, "a")
                .header("Hangup-Cause", "NORMAL_CLEARING")
                .header("Other-Leg-Unique-ID", "b")
                .variable("duration", "0")
                .variable("billsec", "0")
                .variable("hangup_cause_q850", "16")
                .variable("sip_term_status", "200"),
        );
        // Recorded by the publisher: everything published is queued for
        // the journal already.
        journal.flush().unwrap();

        let cdrs = journal.list(0, 10).unwrap();
        assert_eq!(cdrs.len(), 1);
        let c = &cdrs[0];
        assert_eq!(c.uuid, "a");
        assert_eq!(c.other_leg_uuid.as_deref(), Some("b"));
        assert_eq!(c.hangup_cause, "NORMAL_CLEARING");
        assert_eq!((c.hangup_cause_q850, c.sip_code), (Some(16), Some(200)));
        assert_eq!(
            (c.endpoint.as_str(), c.tenant.as_str()),
            ("sofia", "d.test")
        );
        // The hangup had no start time: the CHANNEL_CREATE time is taken.
        assert_eq!(c.start_us, a_created);
        assert!(!c.cut_by_crash);
        assert_eq!(c.seq, 1);
        let stats = journal.stats();
        // b is still up.
        assert_eq!((stats.cdrs, stats.open_channels, stats.queued), (1, 1, 0));

        // Removed with its Tap: later events are not recorded.
        drop(tap);
        bus.publish(
            channel_event(EventName::ChannelHangupComplete, "b")
                .header("Hangup-Cause", "NORMAL_CLEARING")
                .variable("duration", "0")
                .variable("billsec", "0"),
        );
        journal.flush().unwrap();
        assert_eq!(journal.stats().cdrs, 1);
        assert_eq!(journal.list(0, 10).unwrap().len(), 1);
    }
}
