//! The event socket.
