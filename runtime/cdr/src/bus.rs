//! Feeding the journal from the event bus.

use std::sync::Arc;

use dialtone_core::events::{Delivery, Event, EventBus, EventFilter, EventName};

use crate::journal::Journal;
use crate::record::{Cdr, Open};

/// The bus writer's queue, in events. The writer only queues records for the
/// journal's thread (it never waits on the disk), so it drains the queue as
/// fast as the switch fills it; losing events would need this process to be
/// stalled long enough for 65,536 channel creations and hangups to pile up.
pub const BUS_QUEUE: usize = 65_536;

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

/// Subscribes to CHANNEL_CREATE and CHANNEL_HANGUP_COMPLETE (now, before it
/// returns: every such event published after the call is seen) with a
/// queue of [`BUS_QUEUE`] events, and spawns a task that feeds them to the
/// journal ([`Journal::record_event`]). Must be called within a Tokio
/// runtime. The task ends when the bus is gone and its queue is drained;
/// it holds its `Arc<Journal>` until then, so at shutdown drop the bus and
/// await the task (or call [`Journal::flush`]) to have every event's record
/// committed.
///
/// If the bus reports lost events (its queue overflowed, see
/// [`BUS_QUEUE`]), the task logs an error with their number: the CDRs of
/// lost hangups are missing, and a channel whose hangup was lost stays open
/// in the journal until the next start cuts it.
pub fn spawn_bus_writer(bus: &EventBus, journal: Arc<Journal>) -> tokio::task::JoinHandle<()> {
    let mut sub = bus.subscribe(
        EventFilter::names([
            EventName::ChannelCreate,
            EventName::ChannelBridge,
            EventName::ChannelHangupComplete,
        ]),
        BUS_QUEUE,
    );
    tokio::spawn(async move {
        while let Some(d) = sub.recv().await {
            match d {
                Delivery::Event(ev) => {
                    journal.record_event(&ev);
                }
                Delivery::Lost { count } => {
                    tracing::error!(
                        lost = count,
                        "CDR writer lost channel events: their CDRs are missing or wrong"
                    );
                }
            }
        }
    })
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

    #[tokio::test]
    async fn bus_events_become_committed_cdrs() {
        let dir = tempfile::tempdir().unwrap();
        let (journal, _) = Journal::open(&dir.path().join("cdr.redb")).unwrap();
        let journal = Arc::new(journal);
        let bus = EventBus::new();
        let task = spawn_bus_writer(&bus, Arc::clone(&journal));

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
        // The bus gone, the writer drains its queue and ends: everything
        // published is queued for the journal.
        drop(bus);
        task.await.unwrap();
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
    }
}
