//! The CDR journal.
